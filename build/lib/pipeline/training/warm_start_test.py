"""Warm start: layers copied by name where every weight shape matches."""

import numpy as np

from pipeline.config import AudioConfig
from pipeline.models.audio_encoder import build_audio_encoder
from pipeline.training.warm_start import copy_matching_layers


def test_a_longer_clip_encoder_takes_every_layer_of_a_shorter_one():
    # Same widths, 100 vs 500 frames: nothing depends on the frame count, so all layers copy.
    config = AudioConfig(n_mels=16, filters=(8, 8), recurrent="gru", recurrent_units=4)
    short, long = build_audio_encoder(config, 100, 12), build_audio_encoder(config, 500, 12)
    copied = copy_matching_layers(short, long)
    assert copied == [layer.name for layer in long.layers if layer.weights]
    for name in copied:
        for a, b in zip(short.get_layer(name).get_weights(), long.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_layers_of_another_shape_are_left_alone():
    # Another projection size: the projection keeps its own weights, the rest is copied.
    config = AudioConfig(n_mels=16, filters=(8,), recurrent="")
    source, target = build_audio_encoder(config, 50, 12), build_audio_encoder(config, 50, 6)
    before = target.get_layer("projection").get_weights()[0].copy()
    copied = copy_matching_layers(source, target)
    assert "projection" not in copied and "block0_conv" in copied
    np.testing.assert_array_equal(target.get_layer("projection").get_weights()[0], before)
