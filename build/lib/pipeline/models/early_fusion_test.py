"""Early fusion: shapes, config round trip, save → load → allclose, a training step, its loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import TextConfig
from pipeline.models.early_fusion import EarlyFusionRetrieval, build_early_fusion_encoder
from pipeline.models.losses import infonce_loss
from pipeline.models.text_encoder import build_text_encoder


def make_model(positives="label"):
    text = build_text_encoder(
        TextConfig(kind="conv", embedding_dim=8, conv_filters=8, kernel_sizes=(1,), sequence_length=4), 12, 16
    )
    item = build_early_fusion_encoder((8, 8, 3), (10, 6), 16, hidden=32)
    return EarlyFusionRetrieval(text, item, temperature=0.1, positives=positives)


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "text": rng.integers(1, 12, (n, 4)),
        "image": rng.random((n, 8, 8, 3), "float32"),
        "audio": rng.random((n, 10, 6), "float32"),
        "item": np.arange(n),
        "label": np.array([0, 1, 0, 1, 2, -1])[:n],
    }


def test_shapes_and_unit_vectors():
    out = make_model()(batch())
    assert out["text"].shape == (6, 16) and out["item"].shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(out["item"], axis=1), 1.0, rtol=1e-5)


def test_config_round_trip_and_save_load_allclose(tmp_path):
    model = make_model()
    x = batch()
    expected = model(x)["item"].numpy()
    clone = EarlyFusionRetrieval.from_config(model.get_config())
    assert (clone.temperature, clone.positives) == (0.1, "label")
    path = tmp_path / "early.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again(x)["item"].numpy(), expected, atol=1e-6)


def test_loss_uses_label_positives():
    model = make_model()
    x = batch()
    y = model(x)
    ids = tf.constant([0, 1, 0, 1, 2, -6], tf.int64)  # the unlabelled row (item 5) keeps -1 - 5
    assert float(model.compute_loss(x, None, y)) == pytest.approx(
        float(infonce_loss(y["text"], y["item"], 10.0, ids)), rel=1e-6
    )
    with pytest.raises(ValueError, match="positives"):
        EarlyFusionRetrieval(model.text_encoder, model.item_encoder, positives="class")


def test_one_training_step_lowers_the_loss():
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    ds = tf.data.Dataset.from_tensors(batch())
    first = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
    model.fit(ds, epochs=5, verbose=0)
    assert model.evaluate(ds, verbose=0, return_dict=True)["loss"] < first
