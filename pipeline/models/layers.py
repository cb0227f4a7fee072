"""Small serialisable layers shared by the encoders."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="pipeline")
class L2Normalize(keras.layers.Layer):
    """Scales each vector to unit length, so a dot product is a cosine similarity."""

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), self.epsilon**2))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="pipeline")
class NonZeroMask(keras.layers.Layer):
    """True where a token id is not padding (0)."""

    def call(self, ids):
        return ops.not_equal(ids, 0)


@keras.saving.register_keras_serializable(package="pipeline")
class MixScores(keras.layers.Layer):
    """w·a + (1-w)·b with a learned w = sigmoid(logit).

    With a and b unit vectors from two text models, a dot product with an image embedding
    gives w·s_a + (1-w)·s_b: the two models' similarity scores combined with a learned weight.
    """

    def __init__(self, initial_weight: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.initial_weight = initial_weight

    def build(self, input_shape):
        import math

        w = min(max(self.initial_weight, 1e-3), 1 - 1e-3)
        self.logit = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(math.log(w / (1 - w))), name="mix_logit"
        )

    def call(self, inputs):
        a, b = inputs
        w = ops.sigmoid(self.logit)
        return w * a + (1.0 - w) * b

    def get_config(self):
        return {**super().get_config(), "initial_weight": self.initial_weight}


@keras.saving.register_keras_serializable(package="pipeline")
class GreedyTranscript(keras.layers.Layer):
    """Per-step word logits [batch, steps, vocab] → token ids [batch, length]: the most likely
    word at each step, a run of the same word read once, steps with no word (id 0) dropped,
    the words moved to the front and padded with 0 (or cut) to ``length``.

    Example:
        >>> logits = ops.one_hot([[0, 5, 5, 0, 7, 7, 5]], 8)
        >>> GreedyTranscript(4)(logits)  # → [[5, 7, 5, 0]]
    """

    def __init__(self, length: int, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def call(self, logits):
        ids = ops.cast(ops.argmax(logits, axis=-1), "int32")
        steps = ops.shape(ids)[1]
        previous = ops.pad(ids[:, :-1], [[0, 0], [1, 0]])
        keep = ops.logical_and(ids != 0, ids != previous)
        position = ops.arange(steps, dtype="int32")[None, :]
        order = ops.argsort(ops.where(keep, position, position + steps), axis=1)  # kept steps first, in order
        words = ops.take_along_axis(ops.where(keep, ids, 0), order, axis=1)
        if steps >= self.length:
            return words[:, : self.length]
        return ops.pad(words, [[0, 0], [0, self.length - steps]])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.length)

    def get_config(self):
        return {**super().get_config(), "length": self.length}


def batch_norm(**kwargs) -> keras.layers.BatchNormalization:
    """BatchNormalization whose training statistics are over the global batch when several
    replicas train together (``tf.distribute``; ``strategy=multi_worker``): each replica's
    share alone would normalise differently from one process with that batch. Decided when
    the model is built, under the strategy's scope; a single process is unchanged."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync if tf.distribute.has_strategy() else 1
    return keras.layers.BatchNormalization(synchronized=replicas > 1, **kwargs)


def projection_head(
    feature_dim: int, output_dim: int, hidden: int, dropout: float, name: str, input_name: str
) -> keras.Model:
    """Frozen-backbone features [batch, feature_dim] → unit vectors [batch, output_dim]: a linear
    projection plus, with ``hidden`` > 0, a two-layer MLP branch added to it (as VSE-infinity
    does for precomputed features): the linear path keeps what already works, the MLP adds
    what a linear map of frozen features cannot express."""
    features = keras.Input((feature_dim,), name=input_name)
    x = keras.layers.Dropout(dropout, name="dropout")(features)
    projected = keras.layers.Dense(output_dim, name="projection")(x)
    if hidden > 0:
        h = keras.layers.Dense(hidden, activation="relu", name="mlp_hidden")(x)
        h = keras.layers.Dropout(dropout, name="mlp_dropout")(h)
        projected = keras.layers.Add(name="projection_plus_mlp")(
            [projected, keras.layers.Dense(output_dim, name="mlp_out")(h)]
        )
    return keras.Model(features, L2Normalize(name="l2")(projected), name=name)
