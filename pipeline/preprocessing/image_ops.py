"""Image preprocessing ops: decode, resize, backbone preprocessing, augmentation.

Graph-compatible, so each runs eagerly and inside ``tf.data.Dataset.map`` alike.
Augmentation uses stateless random ops driven by an explicit ``seed`` of shape [2].
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


def decode_image(data: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """JPEG/PNG/BMP/GIF bytes → uint8 [height, width, channels] (first frame of an animation)."""
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    return tf.ensure_shape(image, [None, None, channels])


def resize_image(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes to size×size (bilinear, antialiased) and returns uint8."""
    resized = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _scale_minus_one_one(x):
    return x / 127.5 - 1.0


def _scale_zero_one(x):
    return x / 255.0


def _identity(x):
    return x


def _caffe(x):  # ResNet/VGG: BGR, ImageNet mean subtracted
    return x[..., ::-1] - tf.constant([103.939, 116.779, 123.68])


# The input scaling each backbone was trained with (keras.applications conventions).
BACKBONE_PREPROCESSING = {
    "mobilenet_v2": _scale_minus_one_one,
    "mobilenet_v3": _identity,  # MobileNetV3 rescales inside the model
    "efficientnet_b0": _identity,
    "resnet50": _caffe,
    "scratch": _scale_zero_one,
}


def preprocess_for_backbone(image: tf.Tensor, backbone: str) -> tf.Tensor:
    """uint8 or float image in [0, 255] → float32 scaled as ``backbone`` expects."""
    if "+" in backbone or backbone.startswith("efficientnet_lite"):
        return tf.cast(image, tf.float32)  # composite and EfficientNet-Lite backbones scale pixels themselves
    try:
        fn = BACKBONE_PREPROCESSING[backbone]
    except KeyError:
        raise ValueError(
            f"Unknown backbone '{backbone}'. Known: {', '.join(sorted(BACKBONE_PREPROCESSING))}, "
            "efficientnet_lite0/1/2, or several joined with '+'."
        ) from None
    return fn(tf.cast(image, tf.float32))


@dataclasses.dataclass(frozen=True)
class ImageAugmentConfig:
    """Training-time image augmentation.

    Args:
        crop_min_area: smallest fraction of the image a random crop keeps (1.0 = no crop).
        flip: random horizontal flips. Off by default: captions that say "left of" would lie.
        brightness: maximum brightness change, in [0, 1] units of the pixel range.
        contrast: maximum relative contrast change.
        saturation: maximum relative saturation change.
    """

    crop_min_area: float = 0.8
    flip: bool = False
    brightness: float = 0.1
    contrast: float = 0.15
    saturation: float = 0.15


def augment_image(image: tf.Tensor, seed: tf.Tensor, config: ImageAugmentConfig = ImageAugmentConfig()) -> tf.Tensor:
    """Random crop (resized back), optional flip and colour jitter; uint8 in, uint8 out, same size."""
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    x = tf.cast(image, tf.float32) / 255.0
    if config.crop_min_area < 1.0:
        scale = tf.sqrt(tf.random.stateless_uniform([], seeds[0], config.crop_min_area, 1.0))
        crop_h = tf.cast(tf.cast(height, tf.float32) * scale, tf.int32)
        crop_w = tf.cast(tf.cast(width, tf.float32) * scale, tf.int32)
        x = tf.image.stateless_random_crop(x, [crop_h, crop_w, tf.shape(x)[2]], seeds[1])
        x = tf.image.resize(x, [height, width], method="bilinear")
    if config.flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[2])
    if config.brightness > 0:
        x = tf.image.stateless_random_brightness(x, config.brightness, seeds[3])
    if config.contrast > 0:
        x = tf.image.stateless_random_contrast(x, 1 - config.contrast, 1 + config.contrast, seeds[4])
    if config.saturation > 0:
        x = tf.image.stateless_random_saturation(x, 1 - config.saturation, 1 + config.saturation, seeds[5])
    return tf.cast(tf.clip_by_value(tf.round(x * 255.0), 0, 255), tf.uint8)


# ---------------------------------------------------------------- views

# Fixed crops (y1, x1, y2, x2 as fractions) for extra cached views: the four corners and the
# centre of the image at 80% of its side, each resized back to the input size.
CROP_BOXES = (
    (0.0, 0.0, 0.8, 0.8),
    (0.2, 0.2, 1.0, 1.0),
    (0.0, 0.2, 0.8, 1.0),
    (0.2, 0.0, 1.0, 0.8),
    (0.1, 0.1, 0.9, 0.9),
)


def view_names(image_config) -> tuple[str, ...]:
    """The cached views of each image a config trains on: as is ("plain"), mirrored ("flip"),
    and ``feature_crops`` crops ("crop0", ...), every other one mirrored ("crop1-mirrored")
    when flips are on."""
    views = ["plain"] + (["flip"] if image_config.feature_flip else [])
    for k in range(image_config.feature_crops):
        views.append(f"crop{k}-mirrored" if image_config.feature_flip and k % 2 == 1 else f"crop{k}")
    return tuple(views)


def view_pixels(pixels: tf.Tensor, view: str) -> tf.Tensor:
    """The view named ``view`` (see ``view_names``) of a batch of images [batch, h, w, 3];
    works eagerly and inside tf.data."""
    if view == "plain":
        return pixels
    if view == "flip":
        return tf.image.flip_left_right(pixels)
    crop, mirrored = view.removesuffix("-mirrored"), view.endswith("-mirrored")
    k = int(crop.removeprefix("crop"))
    size = tf.shape(pixels)[1:3]
    boxes = tf.tile(tf.constant([CROP_BOXES[k % len(CROP_BOXES)]], tf.float32), [tf.shape(pixels)[0], 1])
    cropped = tf.image.crop_and_resize(pixels, boxes, tf.range(tf.shape(pixels)[0]), size)
    return tf.image.flip_left_right(cropped) if mirrored else cropped


def test_view_names(image_config) -> tuple[str, ...]:
    """The views whose embeddings are averaged when an image is embedded for evaluation and
    search (test-time augmentation): the first ``test_views`` of ``view_names``."""
    return view_names(image_config)[: max(1, image_config.test_views)]
