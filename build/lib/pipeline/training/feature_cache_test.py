"""The frozen-backbone feature cache: computed once, keyed by what changes them, mirrored view."""

import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline.config import ImageConfig
from pipeline.data.input_pipeline import InputConfig
from pipeline.data.manifest import Manifest
from pipeline.preprocessing.image_ops import view_names, view_pixels
from pipeline.training.feature_cache import backbone_features, cache_path
from tests.helpers import write_image


def tiny_backbone() -> keras.Model:
    # Features: the mean of the left half and of the right half of each channel, so a mirrored
    # image's features are the same numbers with the halves swapped.
    pixels = keras.Input((8, 8, 3))
    left = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (0, 4)))(pixels))
    right = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (4, 0)))(pixels))
    return keras.Model(pixels, keras.layers.Concatenate()([left, right]))


class Exploding:
    def __call__(self, *args, **kwargs):
        raise AssertionError("the cache should have been used")


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    names = []
    for i in range(3):
        write_image(tmp_path / f"p{i}.png", size=(8, 8), colour=tuple(int(c) for c in rng.integers(0, 255, 3)))
        names.append(f"p{i}.png")
    frame = pd.DataFrame({"item_id": names, "split": "train", "text": "x", "image": names, "audio": "", "label": ""})
    return Manifest(root=tmp_path, frame=frame, format="manifest"), names


def test_features_are_computed_once_then_read_from_the_cache(images):
    manifest, names = images
    image_config = ImageConfig(backbone="mobilenet_v2", weights="none", image_size=8)
    input_config = InputConfig(modalities=("image",), image_size=8, backbone="mobilenet_v2")
    order, first = backbone_features(tiny_backbone(), image_config, input_config, manifest, names[::-1])
    assert order == sorted(names) and first.shape == (3, 6)
    assert cache_path(image_config, manifest, names).is_file()
    _, again = backbone_features(Exploding(), image_config, input_config, manifest, names)
    np.testing.assert_array_equal(again, first)
    # Another pooling (or size, backbone, weights, image list) is another cache entry.
    other = ImageConfig(backbone="mobilenet_v2", weights="none", image_size=8, pooling="avg_max")
    assert cache_path(other, manifest, names) != cache_path(image_config, manifest, names)
    assert cache_path(image_config, manifest, names[:2]) != cache_path(image_config, manifest, names)


def test_flip_adds_the_mirrored_view(images):
    manifest, names = images
    image_config = ImageConfig(backbone="mobilenet_v2", weights="none", image_size=8, feature_flip=True)
    input_config = InputConfig(modalities=("image",), image_size=8, backbone="mobilenet_v2")
    _, views = backbone_features(tiny_backbone(), image_config, input_config, manifest, names, views=("plain", "flip"))
    assert views.shape == (3, 2, 6)
    # Mirrored: the left half's means are the right half's (and the other way round).
    np.testing.assert_allclose(views[:, 1, :3], views[:, 0, 3:], atol=1e-5)
    np.testing.assert_allclose(views[:, 1, 3:], views[:, 0, :3], atol=1e-5)


def test_crop_views_are_fixed_crops_resized_back():
    pixels = tf.reshape(tf.range(2 * 10 * 10 * 3, dtype=tf.float32), (2, 10, 10, 3))
    assert view_names(ImageConfig(feature_flip=True, feature_crops=2)) == ("plain", "flip", "crop0", "crop1-mirrored")
    assert view_names(ImageConfig(feature_crops=2)) == ("plain", "crop0", "crop1")
    top_left = view_pixels(pixels, "crop0").numpy()
    assert top_left.shape == (2, 10, 10, 3)
    # crop0 spans rows and columns 0 .. 0.8·(10-1) = 7.2: its first pixel is the image's first.
    np.testing.assert_allclose(top_left[:, 0, 0], pixels.numpy()[:, 0, 0])
    np.testing.assert_allclose(
        top_left[:, -1, -1],
        pixels.numpy()[:, 7, 7] + 0.2 * (pixels.numpy()[:, 8, 8] - pixels.numpy()[:, 7, 7]),
        rtol=1e-5,
    )
    # crop1 (bottom right) is mirrored when flips are on, and the same crop otherwise.
    np.testing.assert_allclose(
        view_pixels(pixels, "crop1-mirrored").numpy(), view_pixels(pixels, "crop1").numpy()[:, :, ::-1]
    )
    assert tf.data.Dataset.from_tensors(pixels).map(lambda p: view_pixels(p, "crop1")).get_single_element().shape == (
        2,
        10,
        10,
        3,
    )


def test_the_weights_are_keyed_by_content_not_by_path_or_mtime(images, tmp_path):
    # A fresh machine copies the same weights file with a new mtime (or to a new folder): the
    # cache must still be found. Other bytes are another entry.
    manifest, names = images
    first, second = tmp_path / "a" / "w.h5", tmp_path / "b" / "w.h5"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"same weights")
    os.utime(second, ns=(1, 1))

    def key(path):
        return cache_path(ImageConfig(backbone="mobilenet_v2", weights=str(path), image_size=8), manifest, names)

    assert key(first) == key(second)
    second.write_bytes(b"other weights")
    assert key(first) != key(second)


def test_a_manifest_naming_the_same_photos_by_absolute_path_shares_the_cache(images, tmp_path):
    # The spoken-Flickr8k manifest lives elsewhere and names Flickr8k's photos by absolute
    # path: same photos, same cache entry, rows matched to the right names.
    manifest, names = images
    image_config = ImageConfig(backbone="mobilenet_v2", weights="none", image_size=8)
    input_config = InputConfig(modalities=("image",), image_size=8, backbone="mobilenet_v2")
    order, first = backbone_features(tiny_backbone(), image_config, input_config, manifest, names)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    absolute = [str(tmp_path / n) for n in names]
    other = Manifest(root=elsewhere, frame=manifest.frame.assign(image=absolute), format="manifest")
    assert cache_path(image_config, other, absolute) == cache_path(image_config, manifest, names)
    other_order, again = backbone_features(Exploding(), image_config, input_config, other, absolute[::-1])
    assert other_order == [str(tmp_path / n) for n in order]
    np.testing.assert_array_equal(again, first)
