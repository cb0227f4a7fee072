import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import load_config
from pipeline.models.losses import infonce_loss
from pipeline.models.retrieval_model import CrossModalModel, dummy_inputs


@pytest.fixture(scope="module")
def model():
    config = load_config("smoke", ["train.aux_words=0"])
    m = CrossModalModel(config, vocab_size=20, audio_frames=50)
    m(dummy_inputs(m))
    return m


def batch(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = dummy_inputs(model, n)
    x["text"] = rng.integers(1, 20, x["text"].shape)
    x["image"] = rng.random(x["image"].shape, "float32")
    x["audio"] = rng.random(x["audio"].shape, "float32")
    x["item"] = np.arange(n)
    return x


def test_compute_loss_is_the_sum_of_the_pair_losses(model):
    x = batch(model)
    y = model(x)
    total = float(model.compute_loss(x, None, y))
    expected = sum(float(infonce_loss(y[a], y[b], model.scale)) for a, b in (p.split("-") for p in model.experiment.train.pairs))
    assert total == pytest.approx(expected, rel=1e-5)


def test_outputs_and_masked_item_embedding(model):
    x = batch(model)
    y = model(x)
    assert set(y) == {"text", "image", "audio", "item"}
    only_image = model({**x, "audio_mask": np.zeros(4, "float32")})["item"].numpy()
    other_audio = model({**x, "audio": np.zeros_like(x["audio"]), "audio_mask": np.zeros(4, "float32")})["item"].numpy()
    np.testing.assert_allclose(only_image, other_audio, atol=1e-6)  # a masked modality has no influence


def test_one_training_step_lowers_the_loss_on_that_batch(model):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    x = batch(model, n=8, seed=1)
    ds = tf.data.Dataset.from_tensors(x)
    first = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
    for _ in range(5):
        model.fit(ds, epochs=1, verbose=0)
    assert model.evaluate(ds, verbose=0, return_dict=True)["loss"] < first
