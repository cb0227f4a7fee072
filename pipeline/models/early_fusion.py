"""Early fusion: one network on an item's raw inputs together, the baseline for late fusion.

Late fusion (``fusion.py``) encodes each modality on its own and merges the embeddings.
Early fusion joins the raw inputs first: the image's pixels and the clip's log-mel frames,
each average-pooled to a coarser grid and flattened, are concatenated into one vector that a
Dense stack maps into the shared space. ``EarlyFusionRetrieval`` trains it against a text
encoder with the same InfoNCE loss as the main model.
"""

from __future__ import annotations

import keras
from keras import ops

from pipeline.modalities.names import AUDIO, IMAGE
from pipeline.models.layers import L2Normalize
from pipeline.models.losses import infonce_loss


def build_early_fusion_encoder(
    image_shape: tuple[int, int, int],
    audio_shape: tuple[int, int],
    output_dim: int,
    hidden: int = 512,
    image_pool: int = 2,
    audio_pool: int = 2,
    dropout: float = 0.1,
) -> keras.Model:
    """A ``keras.Model`` named "early_fusion_encoder": {IMAGE: [b, H, W, C], AUDIO: [b, frames, mels]} → unit vectors.

    Args:
        image_shape: (H, W, C) of the pixels; audio_shape: (frames, n_mels) of the log-mel input.
        output_dim: size of the shared space; hidden: width of the two Dense layers.
        image_pool, audio_pool: average-pooling factors applied before flattening (coarser
            inputs, fewer weights); dropout: after each hidden layer.

    Example:
        >>> encoder = build_early_fusion_encoder((32, 32, 3), (100, 64), 16, hidden=32)
        >>> encoder({IMAGE: np.zeros((2, 32, 32, 3)), AUDIO: np.zeros((2, 100, 64))}).shape
        TensorShape([2, 16])
    """
    image = keras.Input(image_shape, name=IMAGE)
    audio = keras.Input(audio_shape, name=AUDIO)
    pixels = keras.layers.Flatten(name="image_flat")(
        keras.layers.AveragePooling2D(image_pool, name="image_pool")(image)
    )
    spec = keras.layers.BatchNormalization(name="audio_norm")(audio)  # log-mels are not centred like pixels
    frames = keras.layers.Flatten(name="audio_flat")(keras.layers.AveragePooling1D(audio_pool, name="audio_pool")(spec))
    x = keras.layers.Concatenate(name="joint_input")([pixels, frames])
    for i in range(2):
        x = keras.layers.Dense(hidden, activation="relu", name=f"dense{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
    x = keras.layers.Dense(output_dim, name="projection")(x)
    return keras.Model({IMAGE: image, AUDIO: audio}, L2Normalize(name="l2")(x), name="early_fusion_encoder")


@keras.saving.register_keras_serializable(package="pipeline")
class EarlyFusionRetrieval(keras.Model):
    """A text encoder and an early-fusion item encoder trained into one space.

    Args:
        text_encoder: token ids → unit vectors (``build_text_encoder``).
        item_encoder: pixels and log-mels (``IMAGE``, ``AUDIO``) → unit vectors (``build_early_fusion_encoder``).
        temperature: of the InfoNCE softmax (fixed).
        positives: "item" (an item's own caption) or "label" (any row of the same class).

    Example:
        >>> model = EarlyFusionRetrieval(text_encoder, item_encoder, positives="label")
        >>> model.compile(optimizer="adam"); model.fit(dataset)  # batches of text, image, audio, item, label
    """

    def __init__(
        self,
        text_encoder: keras.Model,
        item_encoder: keras.Model,
        temperature: float = 0.07,
        positives: str = "item",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if positives not in ("item", "label"):
            raise ValueError(f"positives must be 'item' or 'label', not {positives!r}")
        self.text_encoder, self.item_encoder = text_encoder, item_encoder
        self.temperature, self.positives = float(temperature), positives

    def call(self, inputs, training=False):
        return {
            "text": self.text_encoder(inputs["text"], training=training),
            "item": self.item_encoder({IMAGE: inputs[IMAGE], AUDIO: inputs[AUDIO]}, training=training),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        ids = x.get("item")
        if ids is not None and self.positives == "label" and "label" in x:
            ids = ops.where(x["label"] >= 0, x["label"], -1 - ids)
        return infonce_loss(y_pred["text"], y_pred["item"], 1.0 / self.temperature, ids)

    def get_config(self):
        return {
            **super().get_config(),
            "text_encoder": keras.saving.serialize_keras_object(self.text_encoder),
            "item_encoder": keras.saving.serialize_keras_object(self.item_encoder),
            "temperature": self.temperature,
            "positives": self.positives,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        text = keras.saving.deserialize_keras_object(config.pop("text_encoder"))
        item = keras.saving.deserialize_keras_object(config.pop("item_encoder"))
        return cls(text, item, **config)
