"""Offline text-to-speech with eSpeak NG (the ``espeakng-loader`` package), driven via ctypes.

eSpeak keeps global state in its C library, so one ``Speaker`` per process; the dataset
builder runs one in each worker process.
"""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
POS_CHARACTER = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_END, EVENT_MSG_TERMINATED = 0, 1, 5, 6

VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "f5")


class _Event(ctypes.Structure):
    """eSpeak NG's ``espeak_EVENT`` (speak_lib.h); ``id`` is a union of int, pointer and char[8]."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in bytes of the UTF-8 text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the speech
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclasses.dataclass(frozen=True)
class WordTiming:
    """One spoken word and when it is heard, in seconds from the start of the speech."""

    word: str
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class Voice:
    """Args: name: an eSpeak voice with a variant ("en-us+f3"); rate: words per minute;
    pitch: 0-99 (50 is normal); pitch_range: 0-99."""

    name: str = "en-us"
    rate: int = 165
    pitch: int = 50
    pitch_range: int = 50

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Voice":
        name = f"{VOICES[int(rng.integers(len(VOICES)))]}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
        return cls(name, int(rng.integers(150, 215)), int(rng.integers(30, 75)), int(rng.integers(30, 80)))


class Speaker:
    """Synthesises speech as int16 samples at ``sample_rate`` (22,050 Hz, eSpeak's own rate).

    Example:
        >>> speaker = Speaker()
        >>> samples = speaker.say("a red circle above a blue square")
    """

    def __init__(self):
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise (espeakng-loader's data folder missing?)")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int]] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        if events:
            i = 0
            while events[i].type != EVENT_LIST_TERMINATED:
                e = events[i]
                self._events.append((e.type, e.text_position, e.length, e.audio_position))
                i += 1
        return 0

    def say(self, text: str, voice: Voice = Voice(), seed: int | None = None) -> np.ndarray:
        """``seed`` seeds eSpeak NG's own random numbers (otherwise drawn from the clock at
        start-up), which some voices use."""
        if seed is not None:
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice '{voice.name}'")
        self._lib.espeak_SetParameter(ESPEAK_RATE, voice.rate, 0)
        self._lib.espeak_SetParameter(ESPEAK_PITCH, voice.pitch, 0)
        self._lib.espeak_SetParameter(ESPEAK_RANGE, voice.pitch_range, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, 0, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise RuntimeError(f"eSpeak NG produced no audio for {text!r} (status {status})")
        return np.concatenate(self._chunks)

    def say_with_words(
        self, text: str, voice: Voice = Voice(), seed: int | None = None
    ) -> tuple[np.ndarray, list[WordTiming]]:
        """Like ``say``, plus when each word is heard (eSpeak's word events). A word lasts until
        the next word or clause end; eSpeak sometimes folds a short word ("a") into its
        neighbour, so a word of the text may have no timing of its own."""
        samples = self.say(text, voice, seed)
        data = text.encode("utf-8")
        marks = sorted(
            (ms, kind, pos, length)
            for kind, pos, length, ms in self._events
            if kind in (EVENT_WORD, EVENT_END, EVENT_MSG_TERMINATED)
        )
        total_ms = 1000.0 * len(samples) / self.sample_rate
        words = []
        for k, (ms, kind, pos, length) in enumerate(marks):
            if kind != EVENT_WORD or length <= 0:
                continue
            end = next((m[0] for m in marks[k + 1 :] if m[0] > ms), total_ms)
            word = data[pos - 1 : pos - 1 + length].decode("utf-8", "replace")
            words.append(WordTiming(word, ms / 1000.0, min(end, total_ms) / 1000.0))
        return samples, words


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 samples at ``rate`` → float32 at 16 kHz (polyphase resampling)."""
    from math import gcd

    from scipy.signal import resample_poly

    x = samples.astype(np.float32) / 32768.0
    if rate == 16000:
        return x
    g = gcd(16000, rate)
    return resample_poly(x, 16000 // g, rate // g).astype(np.float32)
