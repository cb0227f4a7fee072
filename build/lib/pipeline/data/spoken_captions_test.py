"""Spoken captions: which captions are spoken, the TTS cache (a second build synthesises
nothing), and the manifest the pipeline reads."""

import pandas as pd
import soundfile as sf

from pipeline.data.adapters import load_dataset
from pipeline.data.spoken_captions import SpeechRequest, TtsCache, build_spoken_flickr8k, spoken_requests
from tests.helpers import write_flickr8k_folder


def test_voices_are_varied_and_fixed_by_the_key():
    voices = {SpeechRequest(f"img{i}.jpg#0", "a dog runs").voice() for i in range(20)}
    assert len(voices) > 10  # names, rates and pitches differ across captions
    assert SpeechRequest("img1.jpg#0", "a dog runs").voice() == SpeechRequest("img1.jpg#0", "other words").voice()
    assert SpeechRequest("img1.jpg#0", "x", seed=1).voice() != SpeechRequest("img1.jpg#0", "x", seed=0).voice()


def test_the_first_captions_of_training_images_and_every_other_caption_are_spoken():
    frame = pd.DataFrame(
        {
            "item_id": ["a", "a", "a", "b", "b"],
            "split": ["train", "train", "train", "dev", "dev"],
            "text": ["1", "2", "3", "4", "5"],
        }
    )
    assert [(row, r.key) for row, r in spoken_requests(frame, train_spoken=2)] == [
        (0, "a#0"),
        (1, "a#1"),
        (3, "b#0"),
        (4, "b#1"),
    ]


def test_a_second_build_synthesises_nothing_and_the_manifest_reads(tmp_path):
    flickr = write_flickr8k_folder(
        tmp_path / "flickr8k",
        {
            "train": {
                "t1.jpg": ((200, 0, 0), ["a red dog runs", "a dog", "red"]),
                "t2.jpg": ((0, 200, 0), ["green grass", "grass"]),
            },
            "dev": {"d1.jpg": ((0, 0, 200), ["a blue sky", "the sky is blue"])},
        },
    )
    cache = TtsCache(tmp_path / "tts")
    out, first = build_spoken_flickr8k(tmp_path / "spoken", flickr, cache, train_spoken=1, workers=1)
    assert (first.synthesized, first.cached, first.failed) == (4, 0, [])  # t1#0, t2#0, d1#0, d1#1
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "tts").rglob("*.wav")}
    _, second = build_spoken_flickr8k(tmp_path / "spoken", flickr, cache, train_spoken=1, workers=1)
    assert (second.synthesized, second.cached) == (0, 4)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "tts").rglob("*.wav")} == mtimes
    frame = load_dataset(out).frame
    spoken = frame[frame["audio"] != ""]
    assert sorted(spoken["text"]) == ["a blue sky", "a red dog runs", "green grass", "the sky is blue"]
    for row in spoken.itertuples():
        samples, rate = sf.read(row.audio)
        assert rate == 16000 and len(samples) > 0.3 * rate
        heard = [w.split(":")[0] for w in row.audio_words.split()]
        assert heard and set(heard) <= set(row.text.split())  # eSpeak's word events, words of the caption
