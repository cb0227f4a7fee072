"""Audio encoder: log-mel spectrogram → Conv1D blocks over time (→ BiGRU) → pooling → projection."""

from __future__ import annotations

import keras

from pipeline.config import AudioConfig
from pipeline.models.layers import L2Normalize, batch_norm


def sequence_layer_name(config: AudioConfig) -> str:
    """The layer whose output is the encoder's frame sequence (before pooling)."""
    return "bigru" if config.recurrent == "gru" else f"block{len(config.filters) - 1}_pool"


def build_audio_encoder(config: AudioConfig, frames: int, output_dim: int) -> keras.Model:
    """A ``keras.Model`` named "audio_encoder": log-mel [batch, frames, n_mels] → unit vectors.

    Args:
        config: convolution widths, kernel size, optional recurrent layer, dropout.
        frames: time frames per clip (from the feature settings).
        output_dim: size of the shared embedding space.

    Example:
        >>> encoder = build_audio_encoder(AudioConfig(n_mels=16, filters=(8,), recurrent=""), 50, 12)
        >>> encoder(np.zeros((3, 50, 16), "float32")).shape
        TensorShape([3, 12])
    """
    spec = keras.Input((frames, config.n_mels), name="log_mel")
    x = batch_norm(name="input_norm")(spec)
    for i, filters in enumerate(config.filters):
        stride = config.first_stride if i == 0 else 1  # a strided first block halves the work of the rest
        x = keras.layers.Conv1D(
            filters, config.kernel_size, strides=stride, padding="same", use_bias=False, name=f"block{i}_conv"
        )(x)
        x = batch_norm(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling1D(2, name=f"block{i}_pool")(x)
    if config.recurrent == "gru":
        x = keras.layers.Bidirectional(keras.layers.GRU(config.recurrent_units, return_sequences=True), name="bigru")(x)
    pooled = keras.layers.Concatenate(name="pool")(
        [keras.layers.GlobalMaxPooling1D(name="maxpool")(x), keras.layers.GlobalAveragePooling1D(name="avgpool")(x)]
    )
    h = keras.layers.Dropout(config.dropout, name="dropout")(pooled)
    h = keras.layers.Dense(output_dim, name="projection")(h)
    return keras.Model(spec, L2Normalize(name="l2")(h), name="audio_encoder")
