"""Spoken captions from eSpeak NG, cached on disk, and the spoken Flickr8k dataset built on them.

Each (caption, voice) is synthesised once: a 16 kHz WAV and its word timings are stored under
``saved_models/cache/tts/<xx>/<sha1>.wav`` (and ``.words``), keyed by the text, the voice and
the synthesis version, so a second build synthesises nothing. Voices vary by caption: an
eSpeak voice and variant, speaking rate and pitch drawn from a generator seeded by the
caption's key, so the same caption always gets the same voice.

``build_spoken_flickr8k`` writes ``data/flickr8k-spoken/manifest.csv``: every Flickr8k caption
of the train and dev splits, the photo (its path in the shared folder) and, for the first
``train_spoken`` captions of each training photo (all five by default; training draws one
of them per epoch) and every dev caption, the spoken caption (path in the cache) with its
word timings (column ``audio_words``). All 35,000 take about 3 GB as 16 kHz WAV.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.dataset_info import built_version
from pipeline.io_utils import atomic_path, write_text_atomic
from pipeline.progress import progress
from pipeline.modalities.names import AUDIO, IMAGE

log = logging.getLogger(__name__)

SYNTHESIS_VERSION = 1  # bump when the synthesis changes, so old cache entries are not reused
DATASET_NAME = "flickr8k-spoken"
DATASET_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SpeechRequest:
    """One caption to speak. Args: key: names the caption (its voice is drawn from it);
    text: the words; seed: varies every voice at once."""

    key: str
    text: str
    seed: int = 0

    def voice(self):
        from pipeline.data.synthetic.speech import Voice

        digest = hashlib.sha1(f"{self.seed}:{self.key}".encode()).digest()
        return Voice.sample(np.random.default_rng(int.from_bytes(digest[:8], "little")))


class TtsCache:
    """Where a request's WAV and word timings live; a request is cached when both exist.

    Example:
        >>> cache = TtsCache.default()  # saved_models/cache/tts
        >>> cache.wav_path(SpeechRequest("img.jpg#0", "a dog runs")).name
        '3f…e1.wav'
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def default(cls) -> "TtsCache":
        """The project's cache, saved_models/cache/tts."""
        from pipeline import paths

        return cls(paths.cache_dir("tts"))

    def _stem(self, request: SpeechRequest) -> Path:
        voice = request.voice()
        key = f"{SYNTHESIS_VERSION}\0{request.text}\0{voice.name}\0{voice.rate}\0{voice.pitch}\0{voice.pitch_range}"
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / digest

    def wav_path(self, request: SpeechRequest) -> Path:
        return self._stem(request).with_suffix(".wav")

    def words_path(self, request: SpeechRequest) -> Path:
        return self._stem(request).with_suffix(".words")

    def has(self, request: SpeechRequest) -> bool:
        return self.wav_path(request).is_file() and self.words_path(request).is_file()

    def word_timings(self, request: SpeechRequest) -> str:
        return self.words_path(request).read_text(encoding="utf-8").strip()


@dataclasses.dataclass
class SynthesisStats:
    synthesized: int
    cached: int
    failed: list[tuple[str, str]]  # (key, why)


_SPEAKER = None


def _init_worker():
    global _SPEAKER
    from pipeline.data.synthetic.speech import Speaker

    _SPEAKER = Speaker()


def _synthesize_one(task) -> tuple[str, str | None]:
    """Speaks one request into the cache (WAV, then the timings: ``has`` needs both)."""
    import soundfile as sf

    from pipeline.data.synthetic.build import format_word_timings
    from pipeline.data.synthetic.speech import to_16k

    root, request = task
    cache = TtsCache(Path(root))
    try:
        samples, words = _SPEAKER.say_with_words(request.text, request.voice())
    except (RuntimeError, ValueError) as error:
        return request.key, str(error)
    speech = to_16k(samples, _SPEAKER.sample_rate)
    speech = speech / (np.abs(speech).max() + 1e-6) * 0.8
    wav = cache.wav_path(request)
    wav.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(wav) as tmp:
        sf.write(tmp, speech, 16000, subtype="PCM_16", format="WAV")
    write_text_atomic(cache.words_path(request), format_word_timings(words) + "\n")
    return request.key, None


def synthesize(requests: list[SpeechRequest], cache: TtsCache, workers: int = 2) -> SynthesisStats:
    """Speaks every request not in ``cache`` yet, with a progress bar; a caption eSpeak cannot
    speak is counted in ``failed`` and logged, not fatal."""
    missing = [r for r in requests if not cache.has(r)]
    failed: list[tuple[str, str]] = []
    if missing:
        bar = progress(total=len(missing), desc="speaking captions (eSpeak NG)", unit="caption")
        context = multiprocessing.get_context("spawn")  # eSpeak and TF dislike fork
        with context.Pool(max(workers, 1), initializer=_init_worker) as pool:
            for key, error in pool.imap_unordered(
                _synthesize_one, [(str(cache.root), r) for r in missing], chunksize=32
            ):
                if error:
                    failed.append((key, error))
                bar.update(1)
        bar.close()
    if failed:
        log.warning("%d caption(s) could not be spoken and have no audio, e.g. %s: %s", len(failed), *failed[0])
    return SynthesisStats(len(missing) - len(failed), len(requests) - len(missing), failed)


def spoken_requests(frame: pd.DataFrame, train_spoken: int, seed: int = 0) -> list[tuple[int, SpeechRequest]]:
    """(row, request) for the captions to speak: the first ``train_spoken`` captions of each
    training image and every caption of the other splits."""
    chosen = []
    rank = frame.groupby("item_id").cumcount()
    for row, (item, split, text, k) in enumerate(zip(frame["item_id"], frame["split"], frame["text"], rank)):
        if split != "train" or k < train_spoken:
            chosen.append((row, SpeechRequest(f"{item}#{k}", text, seed)))
    return chosen


def dataset_version(root: Path) -> int | None:
    return built_version(root, DATASET_NAME)


def build_spoken_flickr8k(
    out: Path, flickr8k: Path, cache: TtsCache, train_spoken: int = 5, seed: int = 0, workers: int | None = None
) -> tuple[Path, SynthesisStats]:
    """Writes the spoken-Flickr8k manifest folder ``out`` (speech synthesised into ``cache``)."""
    from pipeline.data.adapters import load_dataset

    manifest = load_dataset(flickr8k, "flickr8k")
    frame = manifest.frame[manifest.frame["split"].isin(["train", "dev"])].reset_index(drop=True)
    frame = frame[frame["text"].str.strip() != ""].reset_index(drop=True)
    chosen = spoken_requests(frame, train_spoken, seed)
    stats = synthesize([r for _, r in chosen], cache, workers or max(os.cpu_count() or 1, 1))
    audio, words = [""] * len(frame), [""] * len(frame)
    for row, request in chosen:
        if cache.has(request):
            audio[row], words[row] = str(cache.wav_path(request)), cache.word_timings(request)
    root = Path(manifest.root).resolve()
    table = pd.DataFrame(
        {
            "item_id": frame["item_id"],
            "split": frame["split"],
            "text": frame["text"],
            IMAGE: [str(root / p) for p in frame[IMAGE]],
            AUDIO: audio,
            "label": "",
            "audio_words": words,
        }
    )
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        table.to_csv(tmp / "manifest.csv", index=False)
        info = {
            "dataset": DATASET_NAME,
            "version": DATASET_VERSION,
            "seed": seed,
            "train_spoken": train_spoken,
            "flickr8k": str(root),
            "cache": str(cache.root.resolve()),
            "spoken": int(sum(bool(a) for a in audio)),
            "failed": len(stats.failed),
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info(
        "spoken Flickr8k: %d captions, %d spoken (%d synthesised now, %d from the cache, %d failed) in %s",
        len(table),
        info["spoken"],
        stats.synthesized,
        stats.cached,
        len(stats.failed),
        out,
    )
    return Path(out), stats
