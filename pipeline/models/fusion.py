"""The Dense fusion network: the embeddings an item has → one item embedding."""

from __future__ import annotations

import keras
from keras import ops

from pipeline.config import FusionConfig
from pipeline.models.layers import L2Normalize


@keras.saving.register_keras_serializable(package="pipeline")
class MaskedFusion(keras.layers.Layer):
    """Merges per-modality unit vectors, ignoring the modalities an item lacks.

    Args:
        strategy: ``average`` (mean of present embeddings), ``weighted`` (learned softmax
            weights, renormalised over present modalities), ``concat_dense`` (embeddings
            with absent ones zeroed, plus the mask itself → Dense ReLU → Dense) or ``gated``
            (attention: each present embedding weighted by a softmax over a learned score of
            that embedding, Dense ReLU → Dense → one logit, plus a learned bias per
            modality; so the weights differ from item to item).
        modalities: number of modalities merged.
        hidden: width of concat_dense's hidden layer.
        output_dim: embedding size.

    Inputs: ``(embeddings [batch, modalities, dim], mask [batch, modalities])``; an item with
    no modality at all gets a zero vector.
    """

    def __init__(self, strategy: str, modalities: int, hidden: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.strategy, self.modalities, self.hidden, self.output_dim = strategy, modalities, hidden, output_dim
        if strategy == "concat_dense":
            self.dense_hidden = keras.layers.Dense(hidden, activation="relu", name="hidden")
            self.dense_out = keras.layers.Dense(output_dim, name="out")
        elif strategy == "gated":
            self.dense_hidden = keras.layers.Dense(hidden, activation="relu", name="gate_hidden")
            self.dense_out = keras.layers.Dense(1, kernel_initializer="zeros", name="gate_logit")  # starts as average
        elif strategy not in ("average", "weighted"):
            raise ValueError(f"unknown fusion strategy {strategy!r}")
        self.l2 = L2Normalize()

    def build(self, input_shape):
        if self.strategy in ("weighted", "gated"):
            self.logits = self.add_weight(shape=(self.modalities,), initializer="zeros", name="modality_logits")
        if self.strategy == "concat_dense":
            self.dense_hidden.build((None, self.modalities * (self.output_dim + 1)))
            self.dense_out.build((None, self.hidden))
        if self.strategy == "gated":
            self.dense_hidden.build((None, self.modalities, self.output_dim))
            self.dense_out.build((None, self.modalities, self.hidden))

    def call(self, inputs):
        embeddings, mask = inputs
        mask = ops.cast(mask, embeddings.dtype)
        present = ops.max(mask, axis=-1, keepdims=True)
        if self.strategy == "concat_dense":
            flat = ops.reshape(embeddings * mask[..., None], (-1, self.modalities * self.output_dim))
            fused = self.dense_out(self.dense_hidden(ops.concatenate([flat, mask], axis=-1)))
        else:
            if self.strategy == "average":
                weights = mask
            else:
                logits = self.logits[None, :]
                if self.strategy == "gated":
                    logits = logits + self.dense_out(self.dense_hidden(embeddings))[..., 0]
                # Softmax over the present modalities (the max subtracted for overflow).
                logits = ops.where(mask > 0, logits, -1e9)
                weights = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True)) * mask
            weights = weights / ops.maximum(ops.sum(weights, axis=-1, keepdims=True), 1e-9)
            fused = ops.sum(embeddings * weights[..., None], axis=1)
        return self.l2(fused) * present

    def get_config(self):
        return {
            **super().get_config(),
            "strategy": self.strategy,
            "modalities": self.modalities,
            "hidden": self.hidden,
            "output_dim": self.output_dim,
        }


def build_fusion(config: FusionConfig, modalities: tuple[str, ...], output_dim: int) -> keras.Model:
    """A ``keras.Model`` named "fusion": {modality: [batch, dim]}, {modality + "_mask": [batch]} → [batch, dim].

    Example:
        >>> fusion = build_fusion(FusionConfig(strategy="average"), (IMAGE, AUDIO), 8)
        >>> fusion({IMAGE: a, AUDIO: b, f"{IMAGE}_mask": m1, f"{AUDIO}_mask": m2})
    """
    inputs, stack, masks = {}, [], []
    for m in modalities:
        inputs[m] = keras.Input((output_dim,), name=m)
        inputs[f"{m}_mask"] = keras.Input((), name=f"{m}_mask")
        stack.append(keras.layers.Reshape((1, output_dim), name=f"{m}_row")(inputs[m]))
        masks.append(keras.layers.Reshape((1,), name=f"{m}_mask_row")(inputs[f"{m}_mask"]))
    embeddings = stack[0] if len(stack) == 1 else keras.layers.Concatenate(axis=1, name="stack")(stack)
    mask = masks[0] if len(masks) == 1 else keras.layers.Concatenate(axis=1, name="mask")(masks)
    out = MaskedFusion(config.strategy, len(modalities), config.hidden, output_dim, name="merge")([embeddings, mask])
    return keras.Model(inputs, out, name="fusion")
