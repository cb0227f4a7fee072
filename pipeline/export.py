"""SavedModel export of each encoder in TF Serving's layout: ``saved_models/<name>/<version>/``.

Each export's ``serving_default`` signature takes raw inputs (text strings; encoded image
bytes; encoded audio bytes) and returns ``{"embedding": [batch, dim]}`` unit vectors. Versions
count up; an existing version is never overwritten.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import tensorflow as tf

from pipeline import paths
from pipeline.io_utils import atomic_path
from pipeline.preprocessing import audio_ops, image_ops

log = logging.getLogger(__name__)


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _write(name: str, archive: keras.export.ExportArchive, root: Path | None) -> Path:
    model_dir = (root or paths.models_dir()) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / str(next_version(model_dir))
    with atomic_path(target) as tmp:
        archive.write_out(str(tmp), verbose=False)
    log.info("exported %s to %s", name, target)
    return target


def text_archive(model, vectorizer) -> keras.export.ExportArchive:
    archive = keras.export.ExportArchive()
    if not vectorizer.built:  # a vectorizer restored from vocab.txt is built on its first call
        vectorizer(tf.constant([""]))
    archive.track(model.text_encoder)
    archive.track(vectorizer)

    def serve(text):
        return {"embedding": model.text_encoder(vectorizer(text), training=False)}

    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    return archive


def image_archive(model, config) -> keras.export.ExportArchive:
    archive = keras.export.ExportArchive()
    archive.track(model.image_encoder)
    size, backbone = config.image.image_size, config.image.backbone

    def prepare(data):
        return image_ops.preprocess_for_backbone(image_ops.resize_image(image_ops.decode_image(data), size), backbone)

    def serve(image_bytes):
        pixels = tf.map_fn(prepare, image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return {"embedding": model.encode_image(pixels)}

    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    return archive


def audio_archive(model, input_config) -> keras.export.ExportArchive:
    archive = keras.export.ExportArchive()
    archive.track(model.audio_encoder)
    a = input_config.audio

    def prepare(data):
        samples, rate = audio_ops.decode_audio(data)
        samples = audio_ops.crop_or_pad(audio_ops.resample(samples, rate, a.sample_rate), a.clip_samples)
        return audio_ops.log_mel_spectrogram(samples, a.sample_rate, a.n_mels, a.window, a.stride)

    def serve(audio_bytes):
        spec = tf.map_fn(prepare, audio_bytes, fn_output_signature=tf.TensorSpec([a.frames, a.n_mels], tf.float32))
        return {"embedding": model.audio_encoder(spec, training=False)}

    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="audio_bytes")])
    return archive


def export_encoders(model, vectorizer, config, root: Path | None = None) -> dict[str, Path]:
    """Exports every encoder the model has; returns {name: version folder}."""
    from pipeline.run_artifacts import input_config_for

    out = {}
    modalities = config.data.modalities
    if "text" in modalities:
        out["text_encoder"] = _write("text_encoder", text_archive(model, vectorizer), root)
    if "image" in modalities:
        out["image_encoder"] = _write("image_encoder", image_archive(model, config), root)
    if "audio" in modalities:
        out["audio_encoder"] = _write("audio_encoder", audio_archive(model, input_config_for(config)), root)
    return out
