"""``image``: photos and pictures (JPEG, PNG, GIF, BMP), or a frozen backbone's cached features."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from pipeline.modalities.base import TowerContext
from pipeline.modalities.media import MediaModality
from pipeline.preprocessing import image_ops, media_check


class ImageModality(MediaModality):
    """Pixels resized to ``image_size`` squared, augmented in training, scaled for the backbone.
    With cached backbone features (``image_features`` in an element), a view of those instead."""

    name = "image"
    extensions = (".jpg", ".jpeg", ".png")
    media_types = ("image/jpeg", "image/png", "image/gif", "image/bmp")
    formats = media_check.IMAGE_KINDS
    noun = "an image"

    def decoded_problem(self, data, input_config):
        image = _traced_decode()(data)
        return "the image is empty" if int(tf.size(image)) == 0 else None

    def decode(self, data, input_config, training):
        return image_ops.resize_image(image_ops.decode_image(data), input_config.image_size)

    def finish(self, decoded, seed, input_config, training):
        image = image_ops.augment_image(decoded, seed, input_config.image_augment) if training else decoded
        return image_ops.preprocess_for_backbone(image, input_config.backbone)

    def input_spec(self, input_config):
        return tf.TensorSpec([input_config.image_size, input_config.image_size, 3], tf.float32)

    def load_element(self, element, out, input_config, training):
        if "image_features" not in element:
            super().load_element(element, out, input_config, training)

    def augment_element(self, element, out, seeds, input_config, training):
        if "image_features" in element and element["image_features"].shape.rank == 2:
            # Cached features of several views of the image (as is, mirrored, cropped): one per
            # epoch at random in training; otherwise the first (as is), or the first test_views.
            views = tf.shape(element["image_features"], out_type=tf.int32)[0]
            if training or input_config.test_views <= 1:
                pick = tf.random.stateless_uniform([], seeds[0], 0, views, dtype=tf.int32) if training else 0
                out["image_features"] = element["image_features"][pick]
            else:
                out["image_features"] = element["image_features"][: input_config.test_views]
        if "image" in element:
            out["image"] = self.finish(element["image"], seeds[0], input_config, training)

    def build_encoder(self, config, dim, context: TowerContext):
        from pipeline.models.image_encoder import build_image_encoder

        return build_image_encoder(config.image, dim)

    def dummy_input(self, config, context, batch):
        return np.zeros((batch, config.image.image_size, config.image.image_size, 3), "float32")


@functools.cache
def _traced_decode():
    """The decoder traced once (eager calls per file would retrace)."""
    return tf.function(image_ops.decode_image, input_signature=[tf.TensorSpec([], tf.string)])


MODALITY = ImageModality()
