"""Warm start: an encoder's weights taken from another run (``audio.init_from``).

Layers are matched by name and copied when every weight has the same shape, so a run
trained on other audio (spoken digits, spoken captions) can start the audio encoder of a
new one even when its clips are longer: the convolutions and the recurrent layer do not
depend on the number of frames.
"""

from __future__ import annotations

import logging

import keras

log = logging.getLogger(__name__)


class WarmStartError(ValueError):
    """Nothing could be copied; the message says why."""


def copy_matching_layers(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies the weights of ``source``'s layers into ``target``'s layers of the same name
    and shapes; returns the names copied."""
    copied = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        if [w.shape for w in other.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(other.get_weights())
            copied.append(layer.name)
    return copied


def warm_start_audio_encoder(model, run: str) -> list[str]:
    """Initialises ``model.audio_encoder`` from the audio encoder of ``run`` (a run folder or
    its name under saved_models/runs)."""
    from pipeline.inference import Encoder

    source = Encoder.from_run(run).model
    if getattr(source, "audio_encoder", None) is None:
        raise WarmStartError(f"audio.init_from = {run}: that run has no audio encoder")
    # With a transcribing readout, audio_encoder wraps the pooled one; the convolutions live there.
    source_encoder = getattr(source, "pooled_audio_encoder", source.audio_encoder)
    target = getattr(model, "pooled_audio_encoder", model.audio_encoder)
    copied = copy_matching_layers(source_encoder, target)
    total = sum(1 for layer in target.layers if layer.weights)
    if not copied:
        raise WarmStartError(
            f"audio.init_from = {run}: no layer of its audio encoder matches this one's names and shapes "
            f"(compare audio.filters, n_mels, recurrent and embedding_dim)"
        )
    log.info("audio encoder: %d of %d layers initialised from %s (%s)", len(copied), total, run, ", ".join(copied))
    return copied
