"""Text encoders over token ids: Conv1D, LSTM, their fusions (conv_lstm, serial, parallel,
mixed), and a frozen pretrained MiniLM with a trained head (minilm)."""

from __future__ import annotations

import keras
import numpy as np

from pipeline.config import TextConfig
from pipeline.models.layers import L2Normalize, MixScores, NonZeroMask, projection_head
from pipeline.preprocessing.text_ops import GLOVE_DIM


def _embedding(config: TextConfig, vocab_size: int, embedding_matrix: np.ndarray | None, name: str):
    if embedding_matrix is not None:
        if embedding_matrix.shape[0] != vocab_size:
            raise ValueError(f"embedding matrix has {embedding_matrix.shape[0]} rows, the vocabulary {vocab_size}")
        dim = embedding_matrix.shape[1]
        init = keras.initializers.Constant(embedding_matrix)
    else:
        # A GloVe model reopened from its weights has no matrix here, but keeps GloVe's width.
        dim, init = (GLOVE_DIM if config.glove else config.embedding_dim), "uniform"
    return keras.layers.Embedding(vocab_size, dim, embeddings_initializer=init, name=name)


def _conv_features(x, config: TextConfig, prefix: str, pool: bool = True):
    """One Conv1D branch per kernel size; max-pooled over time (or kept as a sequence)."""
    branches = []
    for k in config.kernel_sizes:
        h = keras.layers.Conv1D(config.conv_filters, k, padding="same", activation="relu", name=f"{prefix}conv{k}")(x)
        branches.append(keras.layers.GlobalMaxPooling1D(name=f"{prefix}maxpool{k}")(h) if pool else h)
    return branches[0] if len(branches) == 1 else keras.layers.Concatenate(name=f"{prefix}concat")(branches)


def _lstm_features(x, mask, config: TextConfig, prefix: str):
    """The (Bi)LSTM's final state, or with ``lstm_pooling="mean"`` the mean of its outputs over
    the caption's words (padding masked out)."""
    pooled = config.lstm_pooling == "mean"
    lstm = keras.layers.LSTM(config.lstm_units, return_sequences=pooled, name=f"{prefix}lstm")
    if config.bidirectional:
        lstm = keras.layers.Bidirectional(lstm, name=f"{prefix}bilstm")
    h = lstm(x, mask=mask)
    return keras.layers.GlobalAveragePooling1D(name=f"{prefix}lstm_mean")(h, mask=mask) if pooled else h


def _project(features, config: TextConfig, dim: int, prefix: str):
    h = keras.layers.Dropout(config.dropout, name=f"{prefix}dropout")(features)
    h = keras.layers.Dense(dim, name=f"{prefix}projection")(h)
    return L2Normalize(name=f"{prefix}l2")(h)


def build_text_encoder(
    config: TextConfig, vocab_size: int, output_dim: int, embedding_matrix: np.ndarray | None = None
) -> keras.Model:
    """A ``keras.Model`` named "text_encoder": token ids [batch, length] → unit vectors [batch, output_dim].

    Args:
        config: ``config.kind`` picks the architecture: ``conv`` (Embedding → Conv1D per kernel
            size → GlobalMaxPooling1D), ``lstm`` (Embedding → (Bi)LSTM), ``serial`` (Conv1D
            features fed to the LSTM), ``conv_lstm`` (Conv1D features → (Bi)LSTM, whose output
            is concatenated with the Conv1D max pool: a residual path), ``parallel`` (both, concatenated before the projection),
            ``mixed`` (a conv and an lstm model whose embeddings, hence similarity scores,
            are combined with a learned weight), ``minilm`` (all-MiniLM-L6-v2, frozen, over
            WordPiece ids, mean-pooled: ``text_backbone``; then a trained ``text_head``).
        vocab_size: rows of the embedding table (TextVectorization's vocabulary size).
        output_dim: size of the shared embedding space.
        embedding_matrix: optional initial embeddings (GloVe), [vocab_size, dim].

    Example:
        >>> encoder = build_text_encoder(TextConfig(kind="conv"), vocab_size=100, output_dim=32)
        >>> encoder(np.array([[5, 7, 0, 0]])).shape
        TensorShape([1, 32])
    """
    ids = keras.Input(shape=(config.sequence_length,), dtype="int64", name="token_ids")
    if config.kind == "minilm":
        from pipeline.models.minilm import HIDDEN, build_text_backbone

        head = projection_head(HIDDEN, output_dim, config.head_hidden, config.dropout, "text_head", "text_features")
        return keras.Model(ids, head(build_text_backbone(config.sequence_length)(ids)), name="text_encoder")
    mask = NonZeroMask(name="mask")(ids)
    kind = config.kind

    def tower(prefix: str, tower_kind: str):
        x = _embedding(config, vocab_size, embedding_matrix, f"{prefix}embedding")(ids)
        x = keras.layers.SpatialDropout1D(config.dropout, name=f"{prefix}embedding_dropout")(x)
        if tower_kind == "conv":
            features = _conv_features(x, config, prefix)
        elif tower_kind == "lstm":
            features = _lstm_features(x, mask, config, prefix)
        elif tower_kind == "serial":
            sequence = _conv_features(x, config, prefix, pool=False)
            features = _lstm_features(sequence, mask, config, prefix)
        elif tower_kind == "conv_lstm":
            # The LSTM reads the Conv1D n-gram features in order; their max pool joins its
            # output as a residual path, so word order is added to the conv features, not
            # traded for them.
            sequence = _conv_features(x, config, prefix, pool=False)
            conv_pooled = keras.layers.GlobalMaxPooling1D(name=f"{prefix}conv_maxpool")(sequence)
            features = keras.layers.Concatenate(name=f"{prefix}conv_lstm")(
                [conv_pooled, _lstm_features(sequence, mask, config, prefix)]
            )
        elif tower_kind == "parallel":
            features = keras.layers.Concatenate(name=f"{prefix}parallel")(
                [_conv_features(x, config, prefix), _lstm_features(x, mask, config, prefix)]
            )
        else:
            raise ValueError(f"unknown text encoder kind {tower_kind!r}")
        return _project(features, config, output_dim, prefix)

    if kind == "mixed":
        out = MixScores(name="mix")([tower("conv_", "conv"), tower("lstm_", "lstm")])
    else:
        out = tower("", kind)
    return keras.Model(ids, out, name="text_encoder")
