"""``audio``: sounds and speech (WAV, FLAC, Ogg Vorbis) as log-mel spectrograms."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from pipeline.modalities.base import TowerContext
from pipeline.modalities.media import MediaModality
from pipeline.preprocessing import audio_ops, media_check


class AudioModality(MediaModality):
    """Samples resampled to ``audio.sample_rate``, cut to ``clip_seconds`` (a random crop in
    training, the start otherwise), as a log-mel spectrogram [frames, n_mels], with SpecAugment
    in training. An item with several clips (spoken captions) has one drawn per epoch, with
    its transcript (``audio_text``) and word timings (``audio_words``)."""

    name = "audio"
    extensions = (".wav", ".flac", ".ogg")
    media_types = ("audio/wav", "audio/x-wav", "audio/flac", "audio/ogg")
    formats = media_check.AUDIO_KINDS
    noun = "a sound"
    plural = "audio"

    def decoded_problem(self, data, input_config):
        samples, rate = _traced_decode()(data)
        if int(tf.size(samples)) == 0:
            return "the audio file has no samples"
        if int(rate) <= 0:
            return "the audio header has no valid sample rate"
        return None

    def decode(self, data, input_config, training):
        """Samples at the pipeline's rate; outside training cut to the clip length (training
        crops at random later, each epoch)."""
        a = input_config.audio
        samples, rate = audio_ops.decode_audio(data)
        if not training:
            samples = audio_ops.fixed_clip(samples, rate, a.clip_seconds, a.sample_rate)
        else:
            samples = audio_ops.resample(samples, rate, a.sample_rate)
        return tf.ensure_shape(samples, [None])  # a known rank lets ragged_batch batch clips of any length

    def finish(self, decoded, seed, input_config, training):
        a = input_config.audio
        spec = audio_ops.log_mel_spectrogram(decoded, a.sample_rate, a.n_mels, a.window, a.stride)
        return tf.ensure_shape(spec, [a.frames, a.n_mels])

    def prepare(self, data, input_config, serving=False):
        if not serving:
            return super().prepare(data, input_config)
        # Core ops only: WAV decoding and an FFT resampler (clients convert FLAC or OGG to WAV).
        a = input_config.audio
        samples, rate = audio_ops.decode_wav_core(data)
        samples = audio_ops.fixed_clip(samples, rate, a.clip_seconds, a.sample_rate, resampler=audio_ops.resample_fft)
        return self.finish(samples, None, input_config, training=False)

    def input_spec(self, input_config):
        return tf.TensorSpec([input_config.audio.frames, input_config.audio.n_mels], tf.float32)

    def load_element(self, element, out, input_config, training):
        # One file is decoded here, once; from a list of clips one is drawn per epoch later.
        clip = element["audio"]
        out["audio"] = self.decode(tf.io.read_file(clip), input_config, training) if clip.shape.rank == 0 else clip

    def augment_element(self, element, out, seeds, input_config, training):
        a = input_config.audio
        if element["audio"].dtype == tf.string:  # an item's clips: one per epoch at random
            count = tf.shape(element["audio"], out_type=tf.int32)[0]
            pick = tf.random.stateless_uniform([], seeds[4], 0, count, dtype=tf.int32)
            samples = self.decode(tf.io.read_file(element["audio"][pick]), input_config, training=True)
            for key in ("audio_text", "audio_words"):
                if key in element:
                    out[key] = element[key][pick]
        else:
            samples = element["audio"]
        start = audio_ops.crop_start(samples, a.clip_samples, seeds[1]) if training else 0
        if training:
            samples = audio_ops.crop_or_pad(samples, a.clip_samples, start=start)
        if "audio_words" in out:
            ids, starts, ends = _parse_id_timings(out["audio_words"])
            offset = tf.cast(start, tf.float32) / a.sample_rate
            out["audio_words"] = audio_ops.word_frame_labels(
                ids, starts, ends, a.frames, a.stride / a.sample_rate, offset
            )
            out["audio_words_timed"] = tf.cast(tf.size(ids) > 0, tf.float32)
        spec = audio_ops.log_mel_spectrogram(samples, a.sample_rate, a.n_mels, a.window, a.stride)
        if training:
            if a.mel_shift > 0:  # its own seed, derived, so runs without it draw exactly as before
                spec = audio_ops.mel_shift(spec, tf.random.experimental.stateless_split(seeds[2], 1)[0], a.mel_shift)
            spec = audio_ops.spec_augment(spec, seeds[2], a.time_masks, a.time_width, a.freq_masks, a.freq_width)
        out["audio"] = tf.ensure_shape(spec, [a.frames, a.n_mels])

    def build_encoder(self, config, dim, context: TowerContext):
        from pipeline.models.audio_encoder import build_audio_encoder

        return build_audio_encoder(config.audio, context.audio_frames, dim)

    def dummy_input(self, config, context, batch):
        return np.zeros((batch, context.audio_frames, config.audio.n_mels), "float32")


def _parse_id_timings(text):
    """ "id:start:end ..." → (int32 ids, float32 starts, float32 ends), inside tf.data."""
    fields = tf.strings.split(tf.strings.split(text), ":").to_tensor(default_value="0", shape=[None, 3])
    return (
        tf.strings.to_number(fields[:, 0], tf.int32),
        tf.strings.to_number(fields[:, 1]),
        tf.strings.to_number(fields[:, 2]),
    )


@functools.cache
def _traced_decode():
    """The decoder traced once (eager calls per file would retrace)."""
    return tf.function(audio_ops.decode_audio, input_signature=[tf.TensorSpec([], tf.string)])


MODALITY = AudioModality()
