import numpy as np
import pytest
import tensorflow as tf

from pipeline.preprocessing import audio_ops
from tests.helpers import corrupt, tone, truncate, write_audio


def in_map(fn, *inputs):
    """Runs ``fn`` inside tf.data.Dataset.map on one element."""
    ds = tf.data.Dataset.from_tensors(tuple(inputs)).map(lambda *x: fn(*x))
    return next(iter(ds))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_decode_formats_and_rates(tmp_path, suffix, rate):
    source = tone(0.25, rate, channels=2)
    path = write_audio(tmp_path / f"a{suffix}", source, rate)
    samples, got_rate = audio_ops.decode_audio(tf.io.read_file(str(path)))
    assert int(got_rate) == rate
    assert samples.shape == (len(source),)
    tolerance = 0.05 if suffix == ".ogg" else 1e-3  # vorbis is lossy
    np.testing.assert_allclose(samples.numpy(), source.mean(axis=1), atol=tolerance)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_decode_eager_equals_map(tmp_path, suffix):
    data = tf.io.read_file(str(write_audio(tmp_path / f"a{suffix}", tone(0.2, 8000), 8000)))
    eager = audio_ops.decode_audio(data)
    mapped = in_map(audio_ops.decode_audio, data)
    np.testing.assert_array_equal(eager[0].numpy(), mapped[0].numpy())
    assert int(eager[1]) == int(mapped[1]) == 8000


def _wav_with_list_chunk(plain: bytes, before_fmt: bool) -> bytes:
    fmt_chunk, rest = plain[12:36], plain[36:]
    extra = b"LIST" + (6).to_bytes(4, "little") + b"INFOab"
    body = extra + fmt_chunk + rest if before_fmt else fmt_chunk + extra + rest
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body


def test_wav_with_metadata_chunk_after_fmt(tmp_path):
    # ffmpeg writes a 'LIST' chunk between 'fmt ' and 'data'.
    plain = write_audio(tmp_path / "a.wav", tone(0.1, 22050), 22050).read_bytes()
    samples, rate = audio_ops.decode_audio(tf.constant(_wav_with_list_chunk(plain, before_fmt=False)))
    assert int(rate) == 22050 and samples.shape == (2205,)


def test_wav_with_chunk_before_fmt_fails_loudly(tmp_path):
    # tensorflow-io's WAV decoder rejects chunks before 'fmt '; it must be an error, not a wrong rate.
    plain = write_audio(tmp_path / "a.wav", tone(0.1, 22050), 22050).read_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match="LIST"):
        audio_ops.decode_audio(tf.constant(_wav_with_list_chunk(plain, before_fmt=True)))


def test_garbage_and_truncated_files_raise(tmp_path):
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a WAV, FLAC or OGG"):
        audio_ops.decode_audio(tf.constant(corrupt(tmp_path / "x.wav").read_bytes()))
    cut = truncate(write_audio(tmp_path / "t.flac", tone(1.0, 16000), 16000), keep=0.01)
    with pytest.raises(tf.errors.OpError):
        audio_ops.decode_audio(tf.io.read_file(str(cut)))


def test_resample_length_and_pitch():
    x = tf.constant(tone(1.0, 8000, freq=500.0))
    y = audio_ops.resample(x, tf.constant(8000, tf.int64), 16000).numpy()
    assert abs(len(y) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 500.0) < 5.0  # same tone, new rate
    same = audio_ops.resample(x, tf.constant(16000, tf.int64), 16000)
    np.testing.assert_array_equal(same.numpy(), x.numpy())
    np.testing.assert_allclose(
        in_map(lambda v, r: audio_ops.resample(v, r, 16000), x, tf.constant(8000, tf.int64)).numpy(), y, atol=1e-6
    )


@pytest.mark.parametrize("rate", [8000, 16000])
def test_core_wav_decode_equals_tensorflow_io(tmp_path, rate):
    data = tf.io.read_file(str(write_audio(tmp_path / "a.wav", tone(0.25, rate, channels=2), rate)))
    samples, got_rate = audio_ops.decode_wav_core(data)
    expected, expected_rate = audio_ops.decode_audio(data)
    assert int(got_rate) == int(expected_rate) == rate
    np.testing.assert_allclose(samples.numpy(), expected.numpy(), atol=1e-6)
    mapped, _ = in_map(audio_ops.decode_wav_core, data)
    np.testing.assert_allclose(mapped.numpy(), samples.numpy())
    with pytest.raises(tf.errors.InvalidArgumentError):  # FLAC is not WAV: a clear op error, not garbage
        audio_ops.decode_wav_core(tf.io.read_file(str(write_audio(tmp_path / "a.flac", tone(0.25, rate), rate))))


def test_fft_resampling_keeps_the_tone_and_matches_scipy():
    from scipy import signal

    x = tone(1.0, 8000, freq=500.0)
    y = audio_ops.resample_fft(tf.constant(x), tf.constant(8000, tf.int64), 16000).numpy()
    assert len(y) == 16000
    # scipy.signal.resample does the same spectrum cut/pad, in float64
    np.testing.assert_allclose(y, signal.resample(x, 16000), atol=1e-4)
    t = np.arange(16000) / 16000
    np.testing.assert_allclose(y[100:-100], 0.5 * np.sin(2 * np.pi * 500.0 * t[100:-100]), atol=1e-3)
    down = audio_ops.resample_fft(
        tf.constant(tone(1.0, 22050, freq=300.0)), tf.constant(22050, tf.int64), 16000
    ).numpy()
    assert len(down) == 16000
    np.testing.assert_allclose(down, signal.resample(tone(1.0, 22050, freq=300.0), 16000), atol=1e-4)
    same = audio_ops.resample_fft(tf.constant(x), tf.constant(16000, tf.int64), 16000)
    np.testing.assert_array_equal(same.numpy(), x)
    mapped = in_map(lambda v, r: audio_ops.resample_fft(v, r, 16000), tf.constant(x), tf.constant(8000, tf.int64))
    np.testing.assert_allclose(mapped.numpy(), y, atol=1e-6)


def test_crop_or_pad():
    x = tf.range(10, dtype=tf.float32)
    np.testing.assert_array_equal(audio_ops.crop_or_pad(x, 4).numpy(), [3, 4, 5, 6])  # centred: (10-4)//2 = 3
    np.testing.assert_array_equal(audio_ops.crop_or_pad(x[:3], 5).numpy(), [0, 1, 2, 0, 0])
    seed = tf.constant([1, 2], tf.int64)
    a = audio_ops.crop_or_pad(x, 4, seed).numpy()
    np.testing.assert_array_equal(a, in_map(lambda v, s: audio_ops.crop_or_pad(v, 4, s), x, seed).numpy())
    assert a[1] - a[0] == 1 and 0 <= a[0] <= 6  # a contiguous window


def test_log_mel_matches_numpy_reference_energy_and_map():
    x = tf.constant(tone(1.0, 16000, freq=1000.0))
    mel = audio_ops.log_mel_spectrogram(x)
    assert mel.shape == (100, 64)  # ceil(16000 / 160) frames
    np.testing.assert_allclose(in_map(audio_ops.log_mel_spectrogram, x).numpy(), mel.numpy(), rtol=1e-5, atol=1e-5)

    # A 1 kHz tone puts its energy in the mel band whose centre is nearest 1 kHz.
    def hz_to_mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = np.linspace(hz_to_mel(20), hz_to_mel(7600), 66)
    centres = 700 * (10 ** (edges[1:-1] / 2595) - 1)
    loudest = int(np.argmax(mel.numpy()[50]))
    assert abs(loudest - int(np.argmin(np.abs(centres - 1000.0)))) <= 1


def test_spec_augment_masks_bands_deterministically():
    spec = tf.random.stateless_normal([100, 64], seed=[0, 1])
    seed = tf.constant([3, 4], tf.int64)
    a = audio_ops.spec_augment(spec, seed, time_masks=2, time_width=10, freq_masks=1, freq_width=5)
    np.testing.assert_array_equal(a.numpy(), audio_ops.spec_augment(spec, seed, 2, 10, 1, 5).numpy())
    np.testing.assert_array_equal(
        a.numpy(), in_map(lambda s, z: audio_ops.spec_augment(s, z, 2, 10, 1, 5), spec, seed).numpy()
    )
    changed = a.numpy() != spec.numpy()
    # Masked cells form whole rows (time) or whole columns (frequency).
    rows, cols = changed.all(axis=1), changed.all(axis=0)
    assert np.array_equal(changed, rows[:, None] | cols[None, :])
    assert rows.sum() <= 20 and cols.sum() <= 5
    other = audio_ops.spec_augment(spec, tf.constant([5, 6], tf.int64), 2, 10, 1, 5)
    assert not np.array_equal(a.numpy(), other.numpy())


def test_crop_start_is_the_start_crop_or_pad_uses():
    x = tf.range(10, dtype=tf.float32)
    seed = tf.constant([3, 4], tf.int64)
    start = int(audio_ops.crop_start(x, 4, seed))
    np.testing.assert_array_equal(audio_ops.crop_or_pad(x, 4, seed).numpy(), x.numpy()[start : start + 4])
    assert int(audio_ops.crop_start(x[:3], 5, seed)) == 0  # nothing to crop from a short clip


def test_parse_word_timings_and_bad_entries():
    assert audio_ops.parse_word_timings("a:0.1:0.2 red:0.2:0.45") == [("a", 0.1, 0.2), ("red", 0.2, 0.45)]
    assert audio_ops.parse_word_timings("") == []
    for bad in ("red:0.2", "red:x:0.3", "red:0.5:0.2", ":0.1:0.2"):
        with pytest.raises(ValueError, match="word:start:end"):
            audio_ops.parse_word_timings(bad)


def test_word_frame_labels_by_hand_eager_and_in_map():
    # Words 5 in [0.1, 0.2) s and 7 in [0.2, 0.5) s; 0.1 s hops put frame centres at
    # 0.05, 0.15, 0.25, ... → labels 0, 5, 7, 7, 7, 0, 0, 0. A crop starting 0.1 s in shifts
    # every centre by 0.1 s → 5, 7, 7, 7, 0, ...
    ids, starts, ends = tf.constant([5, 7]), tf.constant([0.1, 0.2]), tf.constant([0.2, 0.5])
    np.testing.assert_array_equal(
        audio_ops.word_frame_labels(ids, starts, ends, 8, 0.1).numpy(), [0, 5, 7, 7, 7, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        audio_ops.word_frame_labels(ids, starts, ends, 8, 0.1, 0.1).numpy(), [5, 7, 7, 7, 0, 0, 0, 0]
    )
    mapped = in_map(lambda i, s, e: audio_ops.word_frame_labels(i, s, e, 8, 0.1), ids, starts, ends)
    np.testing.assert_array_equal(mapped.numpy(), [0, 5, 7, 7, 7, 0, 0, 0])
    none = audio_ops.word_frame_labels(
        tf.constant([], tf.int32), tf.constant([], tf.float32), tf.constant([], tf.float32), 4, 0.1
    )
    np.testing.assert_array_equal(none.numpy(), [0, 0, 0, 0])


def test_mel_shift_moves_channels_by_hand_eagerly_and_in_map():
    # Channels [0, 1, 2, 3] in every frame; a shift of +1 gives [0, 0, 1, 2] (edge repeated),
    # -1 gives [1, 2, 3, 3]. Over many seeds every shift in [-1, 1] appears and nothing else.
    spec = tf.tile(tf.range(4, dtype=tf.float32)[None, :], [3, 1])
    seen = set()
    for s in range(30):
        out = audio_ops.mel_shift(spec, tf.constant([s, 0]), 1).numpy()
        assert (out == out[0]).all()
        seen.add(tuple(out[0]))
    assert seen == {(0, 0, 1, 2), (0, 1, 2, 3), (1, 2, 3, 3)}
    mapped = tf.data.Dataset.from_tensors(spec).map(lambda x: audio_ops.mel_shift(x, tf.constant([3, 0]), 1))
    np.testing.assert_array_equal(next(iter(mapped)).numpy(), audio_ops.mel_shift(spec, tf.constant([3, 0]), 1).numpy())
    np.testing.assert_array_equal(audio_ops.mel_shift(spec, tf.constant([3, 0]), 0).numpy(), spec.numpy())


def test_fixed_clip_crops_at_the_clip_rate_before_resampling_eagerly_and_in_tf_data():
    x = tf.constant(np.arange(100, dtype=np.float32))
    # At the output rate it is crop_or_pad: ceil(0.005 s * 8000) = 40 samples, centred: start (100 - 40) // 2 = 30.
    np.testing.assert_array_equal(
        audio_ops.fixed_clip(x, tf.constant(8000, tf.int64), 0.005, 8000).numpy(), np.arange(30, 70)
    )
    np.testing.assert_array_equal(
        audio_ops.fixed_clip(x[:10], tf.constant(8000, tf.int64), 0.005, 8000).numpy(),
        np.concatenate([np.arange(10), np.zeros(30)]),
    )  # shorter: padded after
    # At another rate: the centred 0.5 s of a 3 s clip at 8 kHz (4000 samples from 10000) is resampled alone.
    long = tf.constant(tone(3.0, 8000, freq=500.0) * np.linspace(0.1, 1.0, 24000, dtype=np.float32))
    clipped = audio_ops.fixed_clip(long, tf.constant(8000, tf.int64), 0.5, 16000)
    expected = audio_ops.resample(long[10000:14000], tf.constant(8000, tf.int64), 16000)
    assert clipped.shape == (8000,)
    np.testing.assert_allclose(clipped.numpy(), audio_ops.crop_or_pad(expected, 8000).numpy(), atol=1e-6)
    mapped = in_map(lambda v, r: audio_ops.fixed_clip(v, r, 0.5, 16000), long, tf.constant(8000, tf.int64))
    np.testing.assert_allclose(mapped.numpy(), clipped.numpy(), atol=1e-6)
    fft = audio_ops.fixed_clip(long, tf.constant(8000, tf.int64), 0.5, 16000, resampler=audio_ops.resample_fft)
    np.testing.assert_allclose(
        fft.numpy(), audio_ops.resample_fft(long[10000:14000], tf.constant(8000, tf.int64), 16000).numpy(), atol=1e-5
    )
