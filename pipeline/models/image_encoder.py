"""Image encoder: a keras.applications backbone (or a small CNN) and a projection head.

The encoder is two named models, ``image_backbone`` (pixels → features) and ``image_head``
(features → unit vector), composed into ``image_encoder``. With a frozen backbone the
trainer computes backbone features once, caches them, and trains the head alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import keras
from keras import ops

from pipeline import paths
from pipeline.config import ImageConfig
from pipeline.modalities.names import IMAGE
from pipeline.models import efficientnet_lite
from pipeline.models.layers import batch_norm, projection_head
from pipeline.preprocessing.image_ops import view_pixels

log = logging.getLogger(__name__)

# keras.applications constructors and the file names Keras caches their no-top weights under.
APPLICATIONS = {
    "mobilenet_v2": ("MobileNetV2", ["mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"]),
    "efficientnet_b0": ("EfficientNetB0", ["efficientnetb0_notop.h5"]),
    "resnet50": ("ResNet50", ["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]),
}
MOBILENET_SIZES = (224, 192, 160, 128, 96)
APPLICATION_SIZE = 224  # the size a keras.applications part of a composite backbone runs at
# The keras.applications parts a composite backbone can hold: their input scaling as a Rescaling
# (scale, offset), the same as preprocess_for_backbone applies to them alone.
COMPOSITE_SCALING = {"mobilenet_v2": (1.0 / 127.5, -1.0), "efficientnet_b0": (1.0, 0.0)}


def find_imagenet_weights(backbone: str) -> Path | None:
    """The cached ImageNet weights file for ``backbone``, looked up without any download."""
    _, patterns = APPLICATIONS[backbone]
    homes = [Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))]
    shared = paths.shared_keras_home()
    if shared is not None:
        homes.append(shared)
    for home in homes:
        for pattern in patterns:
            for size in MOBILENET_SIZES if "{size}" in pattern else (None,):
                candidate = home / "models" / pattern.format(size=size)
                if candidate.is_file():
                    return candidate
    return None


def backbone_parts(backbone: str) -> tuple[str, ...]:
    """The backbones a name stands for: "efficientnet_lite2+mobilenet_v2" is two, their pooled
    features concatenated (an ensemble of frozen backbones)."""
    return tuple(backbone.split("+"))


def is_composite(config: ImageConfig) -> bool:
    """Several backbones, or one EfficientNet-Lite: models that take pixels in [0, 255] and
    scale them themselves."""
    parts = backbone_parts(config.backbone)
    return len(parts) > 1 or parts[0] in efficientnet_lite.VARIANTS


def weights_files(config: ImageConfig) -> list[Path]:
    """Every weights file the backbone loads (what the feature cache's key hashes)."""
    if not is_composite(config):
        found = resolve_weights(config)
        return [found] if found else []
    files = []
    for part in backbone_parts(config.backbone):
        if part in efficientnet_lite.VARIANTS:
            files.append(efficientnet_lite.weights_file(part))
        else:
            files += weights_files(dataclasses.replace(config, backbone=part))
    return files


def resolve_weights(config: ImageConfig) -> Path | None:
    """The weights file to load, or None for random weights (with a warning saying what to do)."""
    if config.backbone == "scratch" or config.weights in ("none", ""):
        return None
    if config.weights == "imagenet":
        found = find_imagenet_weights(config.backbone)
        if found is None:
            log.warning(
                "No ImageNet weights for %s in the Keras cache ($KERAS_HOME/models or ~/.keras/models) or "
                "../shared/keras/models: using RANDOM weights, which makes a frozen backbone useless. Put the "
                "weights file there or pass --set image.weights=PATH (or use image.backbone=scratch).",
                config.backbone,
            )
        return found
    path = Path(config.weights)
    if not path.is_file():
        raise FileNotFoundError(f"image.weights={config.weights}: no such file")
    return path


def _scratch_backbone(config: ImageConfig) -> keras.Model:
    """A small CNN trained from scratch. Its features are the coarse spatial grid, since
    captions talk about where things are, plus a global max pool of the same maps: what is
    in the picture wherever it is, learned from every position at once rather than per grid
    cell (without it, shapes were barely learned at all)."""
    inputs = keras.Input((config.image_size, config.image_size, 3), name=IMAGE)
    x = inputs
    for i, filters in enumerate(config.scratch_filters):
        for j in range(config.scratch_convs_per_block):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv{j}")(x)
            x = batch_norm(name=f"block{i}_bn{j}")(x)
            x = keras.layers.ReLU(name=f"block{i}_relu{j}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    features = []
    if config.scratch_grid:
        grid = x
        if config.scratch_grid_channels:
            # A full grid (4x4x256 = 4,096 features) outweighs the global pool in the head and
            # was learned as "what colour sits where" at the cost of shape; a narrow one keeps
            # the positions and leaves what the things are to the global pool.
            grid = keras.layers.Conv2D(config.scratch_grid_channels, 1, name="grid_reduce")(grid)
        features.append(keras.layers.Flatten(name="flatten")(grid))
    if config.scratch_global_pool:
        features.append(keras.layers.GlobalMaxPooling2D(name="global_max")(x))
    x = features[0] if len(features) == 1 else keras.layers.Concatenate(name="features")(features)
    return keras.Model(inputs, x, name="image_backbone")


def _application_base(config: ImageConfig) -> keras.Model:
    """The keras.applications model without its top, with its weights loaded."""
    constructor = getattr(keras.applications, APPLICATIONS[config.backbone][0])
    base = constructor(include_top=False, weights=None, input_shape=(config.image_size, config.image_size, 3))
    weights = resolve_weights(config)
    if weights is not None:
        base.load_weights(str(weights))
        log.info("loaded %s weights from %s", config.backbone, weights)
    return base


def _application_backbone(config: ImageConfig) -> keras.Model:
    base = _application_base(config)
    base.trainable = config.trainable_layers > 0
    if config.trainable_layers > 0:
        for layer in base.layers[: -config.trainable_layers]:
            layer.trainable = False
        for layer in base.layers:  # batch-norm statistics stay frozen when fine-tuning
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    inputs = keras.Input((config.image_size, config.image_size, 3), name=IMAGE)
    maps = base(inputs, training=False)
    features = keras.layers.GlobalAveragePooling2D(name="gap")(maps)
    if config.pooling == "avg_max":
        # The max keeps a small object's response that the average over 7x7 cells dilutes.
        features = keras.layers.Concatenate(name="gap_gmp")(
            [features, keras.layers.GlobalMaxPooling2D(name="gmp")(maps)]
        )
    return keras.Model(inputs, features, name="image_backbone")


def _composite_backbone(config: ImageConfig) -> keras.Model:
    """Pixels in [0, 255] → each part's average-pooled features, concatenated. An
    EfficientNet-Lite part runs at ``image_size``; a keras.applications part at its own size
    (224), resized and scaled inside the model, so one set of pixels feeds them all."""
    inputs = keras.Input((config.image_size, config.image_size, 3), name=IMAGE)
    pooled = []
    for part in backbone_parts(config.backbone):
        if part in efficientnet_lite.VARIANTS:
            maps = efficientnet_lite.build_efficientnet_lite(part, config.image_size)(inputs)
            log.info("loaded %s weights from %s", part, efficientnet_lite.weights_file(part))
        elif part in COMPOSITE_SCALING:
            size = APPLICATION_SIZE
            x = (
                keras.layers.Resizing(size, size, name=f"{part}_resize")(inputs)
                if config.image_size != size
                else inputs
            )
            scale, offset = COMPOSITE_SCALING[part]
            x = keras.layers.Rescaling(scale, offset, name=f"{part}_scale")(x)
            maps = _application_base(dataclasses.replace(config, backbone=part, image_size=size))(x, training=False)
        else:
            raise ValueError(f"unknown image backbone {part!r} in {config.backbone!r}")
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"{part}_gap")(maps))
    features = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="features")(pooled)
    model = keras.Model(inputs, features, name="image_backbone")
    model.trainable = False
    return model


def build_image_backbone(config: ImageConfig) -> keras.Model:
    if config.backbone == "scratch":
        return _scratch_backbone(config)
    if is_composite(config):
        return _composite_backbone(config)
    if config.backbone not in APPLICATIONS:
        raise ValueError(f"unknown image backbone {config.backbone!r}; known: scratch, {', '.join(APPLICATIONS)}")
    return _application_backbone(config)


def build_image_head(config: ImageConfig, feature_dim: int, output_dim: int) -> keras.Model:
    return projection_head(feature_dim, output_dim, config.head_hidden, config.dropout, "image_head", "image_features")


def build_image_encoder(config: ImageConfig, output_dim: int) -> keras.Model:
    """A ``keras.Model`` named "image_encoder": preprocessed images → unit vectors.

    Args:
        config: backbone, weights, input size, fine-tuning depth.
        output_dim: size of the shared embedding space.

    Example:
        >>> encoder = build_image_encoder(ImageConfig(backbone="scratch", image_size=32), 16)
        >>> encoder(np.zeros((2, 32, 32, 3), "float32")).shape
        TensorShape([2, 16])
    """
    backbone = build_image_backbone(config)
    head = build_image_head(config, backbone.output.shape[-1], output_dim)
    inputs = keras.Input((config.image_size, config.image_size, 3), name=IMAGE)
    return keras.Model(inputs, head(backbone(inputs)), name="image_encoder")


def backbone_is_frozen(config: ImageConfig) -> bool:
    return config.backbone != "scratch" and config.trainable_layers == 0


def average_views(vectors):
    """[batch, views, dim] unit vectors of each view → [batch, dim]: their mean, renormalised."""
    mean = ops.mean(vectors, axis=1)
    return mean / ops.maximum(ops.norm(mean, axis=-1, keepdims=True), 1e-12)


def embed_image_features(image_head, features, training=False):
    """Cached backbone features [batch, dim] or, with several views, [batch, views, dim] → unit vectors."""
    if len(features.shape) == 2:
        return image_head(features, training=training)
    batch, views = ops.shape(features)[0], ops.shape(features)[1]
    flat = image_head(ops.reshape(features, (-1, features.shape[-1])), training=training)
    return average_views(ops.reshape(flat, (batch, views, -1)))


def embed_image_views(image_encoder, pixels, views=("plain",), training=False):
    """Preprocessed images → unit vectors, averaged over ``views`` (see image_ops.view_names):
    test-time augmentation, one backbone pass per view."""
    if tuple(views) == ("plain",):
        return image_encoder(pixels, training=training)
    return average_views(ops.stack([image_encoder(view_pixels(pixels, v), training=training) for v in views], axis=1))
