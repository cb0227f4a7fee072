import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipeline.preprocessing import image_ops


def encoded(fmt: str, size=(48, 32)) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def in_map(fn, *inputs):
    return next(iter(tf.data.Dataset.from_tensors(tuple(inputs)).map(lambda *x: fn(*x))))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_eager_equals_map(fmt):
    data = tf.constant(encoded(fmt))
    eager = image_ops.decode_image(data)
    assert eager.shape == (32, 48, 3) and eager.dtype == tf.uint8
    np.testing.assert_array_equal(eager.numpy(), in_map(image_ops.decode_image, data).numpy())


def test_decode_png_is_lossless():
    data = encoded("PNG")
    np.testing.assert_array_equal(
        image_ops.decode_image(tf.constant(data)).numpy(), np.asarray(Image.open(io.BytesIO(data)))
    )


def test_decode_garbage_raises():
    with pytest.raises(tf.errors.InvalidArgumentError):
        image_ops.decode_image(tf.constant(b"not an image"))


def test_resize_constant_image_stays_constant():
    image = tf.fill([30, 50, 3], tf.constant(77, tf.uint8))
    out = image_ops.resize_image(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == tf.uint8
    assert np.all(out.numpy() == 77)
    np.testing.assert_array_equal(out.numpy(), in_map(lambda x: image_ops.resize_image(x, 16), image).numpy())


def test_backbone_scaling():
    x = tf.constant([[[0, 127.5, 255]]], tf.float32)
    np.testing.assert_allclose(image_ops.preprocess_for_backbone(x, "mobilenet_v2").numpy(), [[[-1, 0, 1]]])
    np.testing.assert_allclose(image_ops.preprocess_for_backbone(x, "scratch").numpy(), [[[0, 0.5, 1]]])
    with pytest.raises(ValueError, match="Unknown backbone 'vgg99'"):
        image_ops.preprocess_for_backbone(x, "vgg99")


def test_augment_deterministic_per_seed_and_same_in_map():
    image = image_ops.decode_image(tf.constant(encoded("PNG", (64, 64))))
    seed = tf.constant([1, 2], tf.int64)
    config = image_ops.ImageAugmentConfig(flip=True)
    a = image_ops.augment_image(image, seed, config)
    assert a.shape == image.shape and a.dtype == tf.uint8
    np.testing.assert_array_equal(a.numpy(), image_ops.augment_image(image, seed, config).numpy())
    np.testing.assert_array_equal(
        a.numpy(), in_map(lambda x, s: image_ops.augment_image(x, s, config), image, seed).numpy()
    )
    b = image_ops.augment_image(image, tf.constant([9, 9], tf.int64), config)
    assert not np.array_equal(a.numpy(), b.numpy())


def test_augment_off_is_identity():
    image = image_ops.decode_image(tf.constant(encoded("PNG")))
    off = image_ops.ImageAugmentConfig(crop_min_area=1.0, flip=False, brightness=0, contrast=0, saturation=0)
    np.testing.assert_array_equal(
        image_ops.augment_image(image, tf.constant([1, 2], tf.int64), off).numpy(), image.numpy()
    )
