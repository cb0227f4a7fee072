"""The spoken-digits builder: the speaker split, class-matched images, bad inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.data.adapters import load_dataset
from pipeline.data.spoken_captions import TtsCache
from pipeline.data.spoken_digits import (
    VERSION,
    DigitsDataError,
    build_spoken_digits,
    dataset_version,
    speaker_folder,
    speaker_splits,
)
from tests.helpers import tone, write_audio

SPEAKERS = ("ann", "bob", "cat", "dan")


@pytest.fixture
def sources(tmp_path):
    for speaker in SPEAKERS:
        for digit in (1, 7):
            for take in range(3):
                write_audio(
                    tmp_path / "fsdd" / "recordings" / f"{digit}_{speaker}_{take}.wav",
                    tone(0.2, 8000, 300 + 50 * digit),
                    8000,
                )
    (tmp_path / "fsdd" / "recordings" / "README.wav").write_bytes(b"not a recording")  # badly named: skipped
    # MNIST stand-in: each image's pixels are filled with its index, so the builder's choice
    # can be traced back; digits alternate 1, 7 (training set) and 7, 1 (test set).
    x_train = np.stack([np.full((28, 28), i, np.uint8) for i in range(40)])
    x_test = np.stack([np.full((28, 28), 100 + i, np.uint8) for i in range(40)])
    y_train, y_test = np.tile([1, 7], 20), np.tile([7, 1], 20)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return tmp_path / "fsdd", tmp_path / "mnist.npz"


def test_the_test_speaker_is_never_heard_in_training_and_images_match_the_digit(sources, tmp_path):
    # Without a dev speaker, dev is the last take of each digit by each other speaker (dev_takes=1).
    out = build_spoken_digits(tmp_path / "digits", *sources, test_speaker="ann", dev_takes=1)
    frame = load_dataset(out).frame
    assert len(frame) == 4 * 2 * 3
    assert set(frame.loc[frame["split"] == "test", "speaker"]) == {"ann"}
    assert "ann" not in set(frame.loc[frame["split"] != "test", "speaker"])
    dev = frame[frame["split"] == "dev"]
    assert sorted(dev["item_id"]) == sorted(f"{d}_{s}_2" for d in (1, 7) for s in ("bob", "cat", "dan"))
    _, _, y_train, y_test = (np.load(sources[1])[k] for k in ("x_train", "x_test", "y_train", "y_test"))
    pixels = []
    for row in frame.itertuples():
        value = int(np.asarray(Image.open(out / row.image))[0, 0])
        digits = y_train if value < 100 else y_test
        assert digits[value % 100] == int(row.label)  # the image shows the recording's digit
        assert (value < 100) == (row.split == "train")  # dev/test images come from MNIST's test set
        assert row.text == {"1": "one", "7": "seven"}[row.label]
        pixels.append(value)
    assert len(set(pixels)) == len(pixels)  # no image used twice
    info = json.loads((out / "dataset.json").read_text())
    assert (
        info["speakers"] == {"train": ["bob", "cat", "dan"], "dev": ["bob", "cat", "dan"], "test": ["ann"]}
        and dataset_version(out) == VERSION
    )
    assert info["synthetic_voices"] == 0 and set(frame["meta_voice"]) == {""}


def test_synthetic_voices_only_train_and_a_rebuild_synthesises_nothing(sources, tmp_path):
    import soundfile as sf

    cache = TtsCache(tmp_path / "tts")
    out = build_spoken_digits(
        tmp_path / "digits", *sources, test_speaker="ann", dev_takes=1, tts_voices=2, tts_cache=cache
    )
    frame = load_dataset(out).frame
    synthetic = frame[frame["meta_voice"] != ""]
    # The digits of the recordings (1 and 7), each in two voices: training only, never dev or test.
    assert sorted(synthetic["item_id"]) == ["1_espeak0_0", "1_espeak1_0", "7_espeak0_0", "7_espeak1_0"]
    assert set(synthetic["split"]) == {"train"} and set(frame.loc[frame["split"] == "test", "speaker"]) == {"ann"}
    assert len(frame) == 4 * 2 * 3 + 4
    _, _, y_train, _ = (np.load(sources[1])[k] for k in ("x_train", "x_test", "y_train", "y_test"))
    for row in synthetic.itertuples():
        samples, rate = sf.read(out / row.audio)
        assert rate == 8000 and len(samples) > 0.1 * rate and np.abs(samples).max() > 0.1  # FSDD's rate, a spoken word
        assert row.text == {"1": "one", "7": "seven"}[row.label]
        assert y_train[int(np.asarray(Image.open(out / row.image))[0, 0])] == int(
            row.label
        )  # a training image of the digit
    info = json.loads((out / "dataset.json").read_text())
    assert info["synthetic_voices"] == 2 and info["speakers"]["train"] == ["bob", "cat", "dan"]
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "tts").rglob("*.wav")}
    assert len(mtimes) == 4
    build_spoken_digits(tmp_path / "again", *sources, test_speaker="ann", dev_takes=1, tts_voices=2, tts_cache=cache)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "tts").rglob("*.wav")} == mtimes  # nothing synthesised again
    with pytest.raises(DigitsDataError, match="must be 0 or more, got -1"):
        build_spoken_digits(tmp_path / "negative", *sources, tts_voices=-1)


def test_a_dev_speaker_is_held_out_too(sources, tmp_path):
    frame = load_dataset(
        build_spoken_digits(tmp_path / "digits", *sources, test_speaker="ann", dev_speaker="bob")
    ).frame
    assert frame.groupby("split")["speaker"].agg(set).to_dict() == {
        "test": {"ann"},
        "dev": {"bob"},
        "train": {"cat", "dan"},
    }


def test_bad_speakers_and_missing_sources_are_refused(sources, tmp_path):
    with pytest.raises(DigitsDataError, match="'zed' is not among"):
        speaker_splits(list(SPEAKERS), "zed", "bob")
    with pytest.raises(DigitsDataError, match="must differ"):
        speaker_splits(list(SPEAKERS), "bob", "bob")
    with pytest.raises(DigitsDataError, match="no speaker is left"):
        speaker_splits(["a", "b"], "a", "b")
    with pytest.raises(DigitsDataError, match="mnist.npz: no such file"):
        build_spoken_digits(tmp_path / "x", sources[0], tmp_path / "missing" / "mnist.npz", "ann", "bob")
    assert not (tmp_path / "x").exists()  # nothing half-built


def test_a_speaker_folder_holds_that_speaker_only_and_reads_as_fsdd(sources, tmp_path):
    folder = speaker_folder(sources[0], "cat", tmp_path / "cat")
    manifest = load_dataset(folder)
    assert manifest.format == "fsdd" and set(manifest.frame["speaker"]) == {"cat"} and len(manifest.frame) == 6
