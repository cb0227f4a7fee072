"""Spoken digits, handwritten digits and digit words: a three-way dataset from FSDD and MNIST.

Each Free Spoken Digit Dataset recording becomes one item: its audio, a handwritten image of
the same digit from MNIST (a different image for every item) and the digit as a word
("seven"). Relevance is class-level (column ``label``: the digit), so train it with
``train.positives = "label"`` (the ``digits`` config does).

The split is by speaker, so the test speaker is never heard in training. The dev split
(early stopping only) is the last ``dev_takes`` takes of each digit by every other speaker, so
all four other voices train; or, with ``dev_speaker``, a second held-out speaker. Training
images come from MNIST's training set and dev/test images from its test set, so no image is
seen twice either.

FSDD has few speakers, so by default the training split also has ``tts_voices`` synthetic
speakers: eSpeak NG saying each digit word in varied voices (voice, variant, rate, pitch;
cached under saved_models/cache/tts, so a rebuild synthesises nothing), band-limited to
FSDD's 8 kHz. They only ever train: dev and test are real recordings.

Layout of the output folder:

    dataset.json   format, version, the speakers of each split, counts
    manifest.csv   item_id, split, text, image, audio, label, speaker, meta_mnist, meta_voice
    images/<item>.png (28×28 grey), audio/<recording>.wav (FSDD's own files and the
    synthetic ones, 8 kHz)

Example:
    >>> build_spoken_digits(Path("data/digits"), fsdd=Path("../shared/datasets/fsdd"),
    ...                     mnist=Path("../shared/datasets/mnist/mnist.npz"))
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.adapters.fsdd_adapter import DIGIT_WORDS, PATTERN, recordings_dir
from pipeline.data.dataset_info import built_version
from pipeline.io_utils import atomic_path
from pipeline.progress import progress
from pipeline.modalities.names import AUDIO, IMAGE

log = logging.getLogger(__name__)

DATASET_NAME = "digits"
VERSION = 3
TEST_SPEAKER = "theo"
DEV_TAKES = 5
TTS_VOICES = 60
SYNTHETIC_SPEAKER = "espeak"  # speaker name prefix of the synthetic voices


class DigitsDataError(ValueError):
    """The FSDD or MNIST input cannot make the dataset; the message says what to fix."""


def speaker_splits(speakers: list[str], test_speaker: str, dev_speaker: str | None = None) -> dict[str, str]:
    """{speaker: split}: ``test_speaker`` → test, ``dev_speaker`` (if any) → dev, every other → train."""
    for role, name in (("test", test_speaker), ("dev", dev_speaker)):
        if name is not None and name not in speakers:
            raise DigitsDataError(
                f"{role} speaker {name!r} is not among the recordings' speakers: {', '.join(sorted(speakers))}"
            )
    if test_speaker == dev_speaker:
        raise DigitsDataError(f"the test and dev speakers must differ (both {test_speaker!r})")
    if len(set(speakers) - {test_speaker, dev_speaker}) < 1:
        raise DigitsDataError("no speaker is left for training")
    return {s: "test" if s == test_speaker else "dev" if s == dev_speaker else "train" for s in speakers}


def recording_splits(
    recordings: pd.DataFrame, test_speaker: str, dev_speaker: str | None = None, dev_takes: int = DEV_TAKES
) -> pd.Series:
    """The split of each recording: by speaker, and without a dev speaker the last
    ``dev_takes`` takes of each digit by each training speaker are dev."""
    by_speaker = recordings["speaker"].map(
        speaker_splits(sorted(set(recordings["speaker"])), test_speaker, dev_speaker)
    )
    if dev_speaker is None:
        last = recordings.groupby(["speaker", "digit"])["take"].rank(method="first", ascending=False)
        by_speaker = by_speaker.where(~((by_speaker == "train") & (last <= dev_takes)), "dev")
    return by_speaker


def read_recordings(fsdd: Path) -> pd.DataFrame:
    """One row per ``{digit}_{speaker}_{take}.wav``: file, digit, speaker, take (others skipped, logged)."""
    folder = recordings_dir(Path(fsdd))
    if not folder.is_dir():
        raise DigitsDataError(f"{fsdd}: no FSDD recordings folder (expected {{digit}}_{{speaker}}_{{take}}.wav files)")
    rows, skipped = [], []
    for path in sorted(folder.glob("*.wav")):
        match = PATTERN.match(path.name)
        if match is None:
            skipped.append(path.name)
            continue
        rows.append({"file": path, "digit": int(match[1]), "speaker": match[2], "take": int(match[3])})
    if skipped:
        log.warning(
            "%d file(s) in %s are not named {digit}_{speaker}_{take}.wav and were skipped, e.g. %s",
            len(skipped),
            folder,
            skipped[0],
        )
    if not rows:
        raise DigitsDataError(f"{folder}: no {{digit}}_{{speaker}}_{{take}}.wav recordings")
    return pd.DataFrame(rows)


def read_mnist(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, digits), "test": (...)} from an ``mnist.npz`` in the keras.datasets layout."""
    path = Path(path)
    if not path.is_file():
        raise DigitsDataError(
            f"{path}: no such file (MNIST in the keras.datasets layout: x_train, y_train, x_test, y_test)"
        )
    with np.load(path) as data:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
        if missing:
            raise DigitsDataError(f"{path}: missing array(s) {', '.join(missing)}")
        return {"train": (data["x_train"], data["y_train"]), "test": (data["x_test"], data["y_test"])}


def assign_images(recordings: pd.DataFrame, split_of: pd.Series, mnist: dict, seed: int) -> np.ndarray:
    """For each recording, the index of a distinct MNIST image of its digit: from MNIST's
    training set for the train split, from its test set for dev and test."""
    rng = np.random.default_rng(seed)
    chosen = np.full(len(recordings), -1, np.int64)
    for source, wanted in (("train", split_of == "train"), ("test", split_of != "train")):
        _, digits = mnist[source]
        for digit in range(10):
            rows = np.where(wanted & (recordings["digit"] == digit))[0]
            pool = np.where(digits == digit)[0]
            if len(pool) < len(rows):
                raise DigitsDataError(f"MNIST {source} has {len(pool)} images of {digit}, {len(rows)} are needed")
            chosen[rows] = rng.choice(pool, size=len(rows), replace=False)
    return chosen


def synthetic_recordings(digits: list[int], voices: int, cache, seed: int = 0) -> pd.DataFrame:
    """eSpeak NG saying each of ``digits`` in ``voices`` voices (synthesised into ``cache``
    where not there yet): rows like ``read_recordings``'s, speaker ``espeak<k>``, plus the
    voice. A word eSpeak cannot speak is logged and left out."""
    from pipeline.data.spoken_captions import SpeechRequest, synthesize

    requests = [
        (digit, k, SpeechRequest(f"digits/{digit}/{k}", DIGIT_WORDS[digit], seed))
        for digit in digits
        for k in range(voices)
    ]
    synthesize([r for *_, r in requests], cache, workers=2)
    rows = []
    for digit, k, request in requests:
        if cache.has(request):
            voice = request.voice()
            rows.append(
                {
                    "file": cache.wav_path(request),
                    "digit": digit,
                    "speaker": f"{SYNTHETIC_SPEAKER}{k}",
                    "take": 0,
                    "voice": f"{voice.name} rate {voice.rate} pitch {voice.pitch}",
                }
            )
    return pd.DataFrame(rows, columns=["file", "digit", "speaker", "take", "voice"])


def _write_8k(source: Path, target: Path) -> None:
    """A 16 kHz synthetic clip as FSDD's 8 kHz PCM WAV (nothing above 4 kHz, as in the recordings)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    samples, rate = sf.read(source, dtype="float32")
    sf.write(target, resample_poly(samples, 8000, rate), 8000, subtype="PCM_16", format="WAV")


def build_spoken_digits(
    out: Path,
    fsdd: Path,
    mnist: Path,
    test_speaker: str = TEST_SPEAKER,
    dev_speaker: str | None = None,
    seed: int = 0,
    dev_takes: int = DEV_TAKES,
    tts_voices: int = 0,
    tts_cache=None,
) -> Path:
    """Writes the dataset folder ``out`` (atomically: a half-built folder is never left under
    its name). ``tts_voices`` > 0 adds that many synthetic speakers to the training split
    (``tts_cache``: a ``spoken_captions.TtsCache``, by default the project's)."""
    from PIL import Image

    if tts_voices < 0:
        raise DigitsDataError(f"the number of synthetic voices (--tts-voices) must be 0 or more, got {tts_voices}")
    recordings = read_recordings(fsdd)
    splits = recording_splits(recordings, test_speaker, dev_speaker, dev_takes)
    recordings["voice"] = ""
    if tts_voices > 0:
        from pipeline.data.spoken_captions import TtsCache

        synthetic = synthetic_recordings(
            sorted(set(recordings["digit"])),
            tts_voices,
            tts_cache if tts_cache is not None else TtsCache.default(),
            seed,
        )
        recordings = pd.concat([recordings, synthetic], ignore_index=True)
        splits = pd.concat([splits, pd.Series(["train"] * len(synthetic))], ignore_index=True)  # never dev or test
    images = read_mnist(mnist)
    chosen = assign_images(recordings, splits, images, seed)
    records = []
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / AUDIO).mkdir()
        bar = progress(total=len(recordings), desc="spoken digits", unit="item")
        for row, image_index, split in zip(recordings.itertuples(), chosen, splits):
            source = "train" if split == "train" else "test"
            item_id = row.file.stem
            if row.voice:  # synthetic: named like a recording, {digit}_{speaker}_{take}
                item_id = f"{row.digit}_{row.speaker}_{row.take}"
                _write_8k(row.file, tmp / AUDIO / f"{item_id}.wav")
            else:
                shutil.copyfile(row.file, tmp / AUDIO / row.file.name)
            Image.fromarray(images[source][0][image_index]).save(tmp / "images" / f"{item_id}.png")
            records.append(
                {
                    "item_id": item_id,
                    "split": split,
                    "text": DIGIT_WORDS[row.digit],
                    IMAGE: f"images/{item_id}.png",
                    AUDIO: f"audio/{item_id}.wav",
                    "label": str(row.digit),
                    "speaker": row.speaker,
                    "meta_mnist": f"{source}:{image_index}",
                    "meta_voice": row.voice,
                }
            )
            bar.update(1)
        bar.close()
        frame = pd.DataFrame.from_records(records)
        frame.to_csv(tmp / "manifest.csv", index=False)
        real = frame["meta_voice"] == ""
        info = {
            "format": "manifest",
            "dataset": DATASET_NAME,
            "version": VERSION,
            "seed": seed,
            "speakers": {
                split: sorted(set(frame.loc[(frame["split"] == split) & real, "speaker"]))
                for split in ("train", "dev", "test")
            },
            "synthetic_voices": int(frame.loc[~real, "speaker"].nunique()),
            "dev": f"speaker {dev_speaker}"
            if dev_speaker
            else f"the last {dev_takes} takes of each digit by each training speaker",
            "items": {split: int((frame["split"] == split).sum()) for split in ("train", "dev", "test")},
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info(
        "spoken digits: %s items in %s (test speaker %s; dev: %s; %d synthetic voices in training)",
        len(frame),
        out,
        test_speaker,
        info["dev"],
        info["synthetic_voices"],
    )
    return out


def dataset_version(root: Path) -> int | None:
    return built_version(root, DATASET_NAME)


def speaker_folder(recordings: Path, speaker: str, out: Path) -> Path:
    """A recordings folder holding one speaker's FSDD files only (links where possible), for
    evaluating on a speaker a run never heard."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", speaker):
        raise DigitsDataError(f"not a speaker name: {speaker!r}")
    files = [p for p in sorted(recordings_dir(Path(recordings)).glob(f"*_{speaker}_*.wav"))]
    if not files:
        raise DigitsDataError(f"{recordings}: no recordings of speaker {speaker!r}")
    target = Path(out) / "recordings"
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        link = target / path.name
        if not link.exists():
            try:
                link.symlink_to(path.resolve())
            except OSError:
                shutil.copyfile(path, link)
    return Path(out)
