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


def test_ctc_loss_against_hand_arithmetic():
    # Vocabulary {0: blank, 1: word}; equal logits give every symbol probability 1/2 per frame.
    # One frame, transcript [1]: the only path is "1", p = 1/2, loss = ln 2 (÷ 1 word).
    # Two frames, transcript [1]: paths "1 1", "_ 1", "1 _", p = 3/4, loss = -ln 0.75 (÷ 1 word).
    # One frame, transcript [1, 1]: no path fits (it needs 3 frames); that item is left out.
    one = CrossModalModel.ctc_loss(np.array([[1, 0]]), np.zeros((1, 1, 2), "float32"))
    two = CrossModalModel.ctc_loss(np.array([[1, 0]]), np.zeros((1, 2, 2), "float32"))
    mixed = CrossModalModel.ctc_loss(np.array([[1, 0], [1, 1]]), np.zeros((2, 1, 2), "float32"))
    assert float(one) == pytest.approx(np.log(2), rel=1e-4)
    assert float(two) == pytest.approx(-np.log(0.75), rel=1e-4)
    assert float(mixed) == pytest.approx(np.log(2), rel=1e-4)


def test_ctc_head_trains_and_saves_with_the_audio_encoder(tmp_path):
    import keras

    config = load_config("smoke", ["train.aux_words=0", "train.aux_ctc=1.0"])
    m = CrossModalModel(config, vocab_size=20, audio_frames=50)
    m(dummy_inputs(m))
    x = batch(m, n=4)
    x["audio_text"] = np.zeros_like(x["text"])
    x["audio_text"][:, :3] = [3, 4, 5]
    y = m(x, training=True)
    assert y["audio_ctc_logits"].shape[0] == 4 and y["audio_ctc_logits"].shape[2] == 20
    with_ctc = float(m.compute_loss(x, None, y))
    without = float(m.compute_loss({k: v for k, v in x.items() if k != "audio_text"}, None, y))
    assert with_ctc > without  # the CTC term is in the total
    m.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    m.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0)
    path = tmp_path / "w.weights.h5"
    m.save_weights(path)
    again = CrossModalModel(config, vocab_size=20, audio_frames=50)
    again(dummy_inputs(again))
    again.load_weights(path)
    np.testing.assert_allclose(again.audio_encoder(x["audio"]).numpy(), m.audio_encoder(x["audio"]).numpy(), atol=1e-5)


@pytest.mark.parametrize("audio_follows", [False, True])
def test_audio_follows_keeps_audio_pairs_off_the_text_and_image_towers(audio_follows):
    config = load_config("smoke", ["train.aux_words=0", "train.pairs=audio-text,image-audio", f"train.audio_follows={str(audio_follows).lower()}"])
    m = CrossModalModel(config, vocab_size=20, audio_frames=50)
    m(dummy_inputs(m))
    x = batch(m)
    with tf.GradientTape() as tape:
        loss = m.compute_loss(x, None, m(x, training=True))
    towers = {"text": m.text_encoder, "image": m.image_encoder, "audio": m.audio_encoder}
    grads = dict(zip(towers, tape.gradient(loss, [t.trainable_variables for t in towers.values()])))
    moved = {name: any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gs) for name, gs in grads.items()}
    assert moved["audio"]
    assert moved["text"] is not audio_follows and moved["image"] is not audio_follows
