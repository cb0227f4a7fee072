"""Audio preprocessing ops: decode (tensorflow-io), resample, crop/pad, log-mel, SpecAugment.

Every function takes and returns tensors and uses only graph-compatible ops, so it runs
eagerly and inside ``tf.data.Dataset.map`` with the same result. Random ops take an
explicit ``seed`` tensor of shape [2] (stateless RNG), which keeps parallel pipelines
deterministic.
"""

from __future__ import annotations

import tensorflow as tf

SAMPLE_RATE = 16000

_RIFF, _FLAC, _OGG = b"RIFF", b"fLaC", b"OggS"


def _le_uint(data: tf.Tensor, offset, length: int) -> tf.Tensor:
    """Little-endian unsigned integer of ``length`` bytes at ``offset`` of a string tensor."""
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8)
    weights = tf.constant([256**i for i in range(length)], tf.int64)
    return tf.reduce_sum(tf.cast(raw, tf.int64) * weights)


def _byte(data: tf.Tensor, offset) -> tf.Tensor:
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, 1), tf.uint8)[0], tf.int64)


def _wav_rate(data: tf.Tensor) -> tf.Tensor:
    """Walks the RIFF chunks to the 'fmt ' chunk and reads its sample rate."""

    total = tf.cast(tf.strings.length(data), tf.int64)

    def not_fmt(offset):
        return tf.logical_and(offset + 8 <= total, tf.strings.substr(data, offset, 4) != b"fmt ")

    def next_chunk(offset):
        size = _le_uint(data, offset + 4, 4)
        return (offset + 8 + size + size % 2,)

    (offset,) = tf.while_loop(not_fmt, next_chunk, (tf.constant(12, tf.int64),), maximum_iterations=64)
    tf.debugging.assert_equal(tf.strings.substr(data, offset, 4), b"fmt ", message="WAV file has no 'fmt ' chunk")
    return _le_uint(data, offset + 12, 4)


def _flac_rate(data: tf.Tensor) -> tf.Tensor:
    # STREAMINFO follows "fLaC" and a 4-byte block header; the rate is 20 bits at byte 18.
    return (_byte(data, 18) * 4096) + (_byte(data, 19) * 16) + (_byte(data, 20) // 16)


def _ogg_rate(data: tf.Tensor) -> tf.Tensor:
    # First page: 27-byte header, then a segment table; the Vorbis identification packet
    # ("\x01vorbis", version, channels) holds the rate 12 bytes in.
    segments = _byte(data, 26)
    return _le_uint(data, 27 + segments + 12, 4)


def audio_format(data: tf.Tensor) -> tf.Tensor:
    """0 for WAV, 1 for FLAC, 2 for OGG Vorbis, -1 for anything else (from the magic bytes)."""
    magic = tf.strings.substr(data, 0, 4)
    return tf.case(
        [
            (tf.equal(magic, _RIFF), lambda: tf.constant(0)),
            (tf.equal(magic, _FLAC), lambda: tf.constant(1)),
            (tf.equal(magic, _OGG), lambda: tf.constant(2)),
        ],
        default=lambda: tf.constant(-1),
    )


def decode_audio(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Decodes WAV (16-bit PCM), FLAC or OGG Vorbis bytes to mono float32 in [-1, 1].

    Returns ``(samples [n], sample_rate int64 scalar)``. Decoding is done by tensorflow-io.
    """
    import tensorflow_io as tfio  # imported here: loading its ops takes a while

    data = tf.convert_to_tensor(data, tf.string)
    kind = audio_format(data)
    tf.debugging.assert_non_negative(kind, message="not a WAV, FLAC or OGG Vorbis file (unknown header)")

    def wav():
        return tf.cast(tfio.audio.decode_wav(data, dtype=tf.int16), tf.float32) / 32768.0, _wav_rate(data)

    def flac():
        return tf.cast(tfio.audio.decode_flac(data, dtype=tf.int16), tf.float32) / 32768.0, _flac_rate(data)

    def ogg():
        return tf.cast(tfio.audio.decode_vorbis(data), tf.float32), _ogg_rate(data)

    samples, rate = tf.switch_case(kind, [wav, flac, ogg], default=wav)
    samples = tf.reduce_mean(tf.reshape(samples, [tf.shape(samples)[0], -1]), axis=-1)
    return samples, rate


def resample(samples: tf.Tensor, rate_in: tf.Tensor, rate_out: int = SAMPLE_RATE) -> tf.Tensor:
    """Resamples mono audio; a no-op when the rates already match."""
    import tensorflow_io as tfio

    rate_in = tf.cast(rate_in, tf.int64)
    return tf.cond(
        tf.equal(rate_in, rate_out),
        lambda: samples,
        lambda: tfio.audio.resample(samples[:, None], rate_in, rate_out)[:, 0],
    )


def decode_wav_core(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """WAV (PCM) bytes to mono float32 samples and the rate, with core TensorFlow ops only.

    What the TF Serving exports use: the stock server has no tensorflow-io ops. Same samples
    as ``decode_audio`` on 16-bit WAV.
    """
    samples, rate = tf.audio.decode_wav(tf.convert_to_tensor(data, tf.string))
    return tf.reduce_mean(samples, axis=-1), tf.cast(rate, tf.int64)


def resample_fft(samples: tf.Tensor, rate_in: tf.Tensor, rate_out: int = SAMPLE_RATE) -> tf.Tensor:
    """Band-limited resampling with core ops (the spectrum cut or zero-padded, as
    ``scipy.signal.resample``); a no-op when the rates match. For the TF Serving exports."""
    rate_in = tf.cast(rate_in, tf.int64)

    def resampled():
        n = tf.shape(samples)[0]
        m = tf.cast(tf.round(tf.cast(n, tf.float64) * rate_out / tf.cast(rate_in, tf.float64)), tf.int32)
        spectrum = tf.signal.rfft(samples, fft_length=[n])
        bins = m // 2 + 1
        spectrum = tf.pad(spectrum[:bins], [[0, tf.maximum(bins - tf.shape(spectrum)[0], 0)]])
        return tf.signal.irfft(spectrum, fft_length=[m]) * (tf.cast(m, tf.float32) / tf.cast(n, tf.float32))

    return tf.cond(tf.equal(rate_in, rate_out), lambda: tf.identity(samples), resampled)


def fixed_clip(
    samples: tf.Tensor, rate_in: tf.Tensor, seconds: float, rate_out: int = SAMPLE_RATE, resampler=None
) -> tf.Tensor:
    """The centred ``seconds`` of a clip at ``rate_out``, zero-padded when shorter.

    The crop is taken at the clip's own rate *before* resampling, so the resampler's work and
    memory are bounded by the clip length, not by the file's. At ``rate_out`` itself this is
    exactly ``crop_or_pad(samples, seconds · rate_out)``. ``resampler`` defaults to ``resample``
    (tensorflow-io); the TF Serving exports pass ``resample_fft``."""
    resampler = resampler or resample
    rate_in = tf.cast(rate_in, tf.int64)
    keep = tf.cast(tf.math.ceil(seconds * tf.cast(rate_in, tf.float64)), tf.int32)
    start = tf.maximum(tf.shape(samples)[0] - keep, 0) // 2
    return crop_or_pad(resampler(samples[start : start + keep], rate_in, rate_out), int(round(seconds * rate_out)))


def crop_start(samples: tf.Tensor, length: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Where ``crop_or_pad`` starts its crop: centred, or at random when ``seed`` is given."""
    excess = tf.maximum(tf.shape(samples)[0] - length, 0)
    if seed is None:
        return excess // 2
    return tf.random.stateless_uniform([], seed, 0, excess + 1, dtype=tf.int32)


def crop_or_pad(
    samples: tf.Tensor, length: int, seed: tf.Tensor | None = None, start: tf.Tensor | None = None
) -> tf.Tensor:
    """Fixed-length audio: a centred crop (a random one when ``seed`` is given, or the one
    starting at ``start``), zero padding."""
    if start is None:
        start = crop_start(samples, length, seed)
    cropped = samples[start : start + length]
    padded = tf.pad(cropped, [[0, length - tf.shape(cropped)[0]]])
    return tf.ensure_shape(padded, [length])


def parse_word_timings(text: str) -> list[tuple[str, float, float]]:
    """The manifest's ``audio_words`` text ("word:start:end ..." in seconds) as tuples.

    Raises ValueError naming the entry that is not of that form.
    """
    timings = []
    for entry in text.split():
        word, _, rest = entry.rpartition(":")
        word, _, start = word.rpartition(":")
        try:
            timings.append((word, float(start), float(rest)))
        except ValueError:
            raise ValueError(f"audio_words entry {entry!r} is not word:start:end (seconds)") from None
        if not word or timings[-1][2] < timings[-1][1]:
            raise ValueError(f"audio_words entry {entry!r} is not word:start:end with start <= end")
    return timings


def word_frame_labels(
    word_ids: tf.Tensor, starts: tf.Tensor, ends: tf.Tensor, frames: int, hop_seconds: float, offset_seconds=0.0
) -> tf.Tensor:
    """int32 [frames]: for each spectrogram frame, the id of the word heard at its centre, 0
    where none is. Frame f of a crop that starts ``offset_seconds`` into the clip is centred
    at offset + (f + 0.5) · hop seconds."""
    centres = tf.cast(offset_seconds, tf.float32) + (tf.range(frames, dtype=tf.float32) + 0.5) * hop_seconds
    inside = tf.logical_and(
        centres[:, None] >= tf.cast(starts, tf.float32)[None, :], centres[:, None] < tf.cast(ends, tf.float32)[None, :]
    )
    # 1 + the index of the (last) word around each centre, 0 for none; max(·, 0) because the
    # max over no words at all is the smallest int.
    which = tf.maximum(
        tf.reduce_max(tf.cast(inside, tf.int32) * tf.range(1, tf.shape(starts)[0] + 1)[None, :], axis=1), 0
    )
    ids = tf.concat([[0], tf.cast(word_ids, tf.int32)], 0)
    return tf.gather(ids, which)


def log_mel_spectrogram(
    samples: tf.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = 64,
    window: int = 400,
    stride: int = 160,
    fmin: float = 20.0,
    fmax: float = 7600.0,
) -> tf.Tensor:
    """Log-mel spectrogram [frames, n_mels] through tensorflow-io (25 ms windows, 10 ms hop at 16 kHz)."""
    import tensorflow_io as tfio

    nfft = 1 << (window - 1).bit_length()
    spectrum = tfio.audio.spectrogram(samples, nfft=nfft, window=window, stride=stride)
    mel = tfio.audio.melscale(spectrum, rate=sample_rate, mels=n_mels, fmin=fmin, fmax=fmax)
    return tf.math.log(mel + 1e-6)


def mel_shift(spectrogram: tf.Tensor, seed: tf.Tensor, max_shift: int) -> tf.Tensor:
    """Moves every frame's mel channels up or down by a random 0..``max_shift`` channels (the
    edge channel repeated): a voice pitched or shaped differently, as vocal tract length
    perturbation does, so a model heard few speakers generalises to others."""
    if max_shift <= 0:
        return spectrogram
    shift = tf.random.stateless_uniform([], seed, -max_shift, max_shift + 1, dtype=tf.int32)
    channels = tf.shape(spectrogram)[1]
    return tf.gather(spectrogram, tf.clip_by_value(tf.range(channels) - shift, 0, channels - 1), axis=1)


def spec_augment(
    spectrogram: tf.Tensor,
    seed: tf.Tensor,
    time_masks: int = 2,
    time_width: int = 20,
    freq_masks: int = 2,
    freq_width: int = 8,
) -> tf.Tensor:
    """SpecAugment-style masking: bands of time frames and mel channels set to the mean."""
    frames, mels = tf.shape(spectrogram)[0], tf.shape(spectrogram)[1]
    fill = tf.reduce_mean(spectrogram)
    keep = tf.ones_like(spectrogram, dtype=tf.bool)
    masks = [(0, time_width, frames)] * time_masks + [(1, freq_width, mels)] * freq_masks
    seeds = tf.random.experimental.stateless_split(seed, num=2 * len(masks))
    for i, (axis, width, size) in enumerate(masks):
        w = tf.random.stateless_uniform([], seeds[2 * i], 0, width + 1, dtype=tf.int32)
        start = tf.random.stateless_uniform([], seeds[2 * i + 1], 0, tf.maximum(size - w, 0) + 1, dtype=tf.int32)
        positions = tf.range(size)
        band = tf.logical_and(positions >= start, positions < start + w)
        keep = tf.logical_and(keep, tf.logical_not(band[:, None] if axis == 0 else band[None, :]))
    return tf.where(keep, spectrogram, fill)
