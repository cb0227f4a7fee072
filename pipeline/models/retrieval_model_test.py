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


def reloaded(model, config, tmp_path):
    """A new model of ``config`` with ``model``'s weights, through a weights file."""
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    again = CrossModalModel(config, vocab_size=20, audio_frames=50)
    again(dummy_inputs(again))
    again.load_weights(path)
    return again


def test_compute_loss_is_the_sum_of_the_pair_losses(model):
    x = batch(model)
    y = model(x)
    total = float(model.compute_loss(x, None, y))
    expected = sum(
        float(infonce_loss(y[a], y[b], model.scale)) for a, b in (p.split("-") for p in model.experiment.train.pairs)
    )
    assert total == pytest.approx(expected, rel=1e-5)


def test_outputs_and_masked_item_embedding(model):
    x = batch(model)
    y = model(x)
    assert set(y) == {"text", "image", "audio", "item"}
    only_image = model({**x, "audio_mask": np.zeros(4, "float32")})["item"].numpy()
    other_audio = model({**x, "audio": np.zeros_like(x["audio"]), "audio_mask": np.zeros(4, "float32")})["item"].numpy()
    np.testing.assert_allclose(only_image, other_audio, atol=1e-6)  # a masked modality has no influence


def test_the_item_fuses_its_own_words_from_item_text(model):
    assert model.fused == ("text", "image", "audio")
    x = batch(model)
    words = np.random.default_rng(5).integers(1, 20, x["text"].shape)
    content_only = model(x)["item"].numpy()
    with_words = model({**x, "item_text": words, "item_text_mask": np.ones(4, "float32")})["item"].numpy()
    masked_words = model({**x, "item_text": words, "item_text_mask": np.zeros(4, "float32")})["item"].numpy()
    assert np.abs(with_words - content_only).max() > 1e-3
    np.testing.assert_allclose(masked_words, content_only, atol=1e-6)
    # The query caption ("text") is not the item's words: changing it leaves the item alone.
    other_query = model({**x, "text": words, "item_text": words, "item_text_mask": np.ones(4, "float32")})[
        "item"
    ].numpy()
    np.testing.assert_allclose(other_query, with_words, atol=1e-6)
    # The default fusion (average) by hand: the normalised mean of the three parts.
    assert model.experiment.fusion.strategy == "average"
    vectors = [
        model.text_encoder(words).numpy(),
        model.image_encoder(x["image"]).numpy(),
        model.audio_encoder(x["audio"]).numpy(),
    ]
    weights = np.full(3, 1 / 3)
    expected = sum(w * v for w, v in zip(weights, vectors))
    np.testing.assert_allclose(with_words, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_modality_dropout_hides_modalities_in_training_but_never_all(model):
    x = {
        **batch(model, n=64, seed=2),
        "item_text": np.random.default_rng(6).integers(1, 20, (64, model.experiment.text.sequence_length)),
        "item_text_mask": np.ones(64, "float32"),
    }
    out = model(x)
    full = out["item"].numpy()
    # The fusion alone in training mode (the towers' own dropout left out), the item's words
    # encoded as in inference.
    words = model.text_encoder(x["item_text"])
    original = model.text_encoder
    model.text_encoder = lambda ids, training=False: words
    try:
        trained = model.fuse(out, x, training=True).numpy()
    finally:
        model.text_encoder = original
    changed = np.abs(trained - full).max(axis=1) > 1e-4
    assert 0 < changed.mean() < 1  # some items lost a modality (dropout 0.3 of each), others kept all
    np.testing.assert_allclose(np.linalg.norm(trained, axis=1), 1.0, atol=1e-5)  # never everything hidden


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


@pytest.mark.slow
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
    again = reloaded(m, config, tmp_path)
    np.testing.assert_allclose(again.audio_encoder(x["audio"]).numpy(), m.audio_encoder(x["audio"]).numpy(), atol=1e-5)


@pytest.mark.parametrize("audio_follows", [False, True])
def test_audio_follows_keeps_audio_pairs_off_the_text_and_image_towers(audio_follows):
    config = load_config(
        "smoke",
        [
            "train.aux_words=0",
            "train.pairs=audio-text,image-audio",
            f"train.audio_follows={str(audio_follows).lower()}",
        ],
    )
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


def test_frame_word_loss_against_hand_arithmetic():
    # 4 spectrogram frames read by 2 encoder steps: step k reads frame (k + 0.5) * 4 / 2 = 1, 3.
    # Vocabulary of 2; item 0: labels at frames 1, 3 are [1, 0]; logits ln 3 vs 0 favour word 1,
    # so p(1) = 3/4, p(0) = 1/4 → losses -ln(3/4), -ln(1/4); mean over steps (ln 4 - ln 3 + ln 4) / 2.
    # Item 1 has no timings (timed = 0) and is left out of the mean.
    labels = np.array([[0, 1, 0, 0], [1, 1, 1, 1]])
    logits = np.zeros((2, 2, 2), "float32")
    logits[:, :, 1] = np.log(3.0)
    loss = CrossModalModel.frame_word_loss(labels, logits, np.array([1.0, 0.0]))
    assert float(loss) == pytest.approx((2 * np.log(4) - np.log(3)) / 2, rel=1e-5)


@pytest.mark.slow
def test_frame_word_head_trains_and_saves_with_the_audio_encoder(tmp_path):
    import keras

    config = load_config("smoke", ["train.aux_words=0", "train.aux_frame_words=1.0"])
    m = CrossModalModel(config, vocab_size=20, audio_frames=50)
    m(dummy_inputs(m))
    x = batch(m, n=4)
    x["audio_words"] = np.tile(np.repeat(np.arange(5), 10), (4, 1))  # 50 frames: words 0..4, 10 frames each
    x["audio_words_timed"] = np.ones(4, "float32")
    y = m(x, training=True)
    assert y["audio_frame_logits"].shape[0] == 4 and y["audio_frame_logits"].shape[2] == 20
    assert "audio_frame_logits" not in m(x)  # inference runs the plain encoder
    with_words = float(m.compute_loss(x, None, y))
    untimed = float(m.compute_loss({**x, "audio_words_timed": np.zeros(4, "float32")}, None, y))
    assert with_words > untimed  # the frame term is in the total, and only for timed items
    m.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    ds = tf.data.Dataset.from_tensors(x)
    before = float(CrossModalModel.frame_word_loss(x["audio_words"], m(x, training=True)["audio_frame_logits"]))
    m.fit(ds, epochs=5, verbose=0)
    after = float(CrossModalModel.frame_word_loss(x["audio_words"], m(x, training=True)["audio_frame_logits"]))
    assert after < before
    again = reloaded(m, config, tmp_path)
    np.testing.assert_allclose(again.audio_encoder(x["audio"]).numpy(), m.audio_encoder(x["audio"]).numpy(), atol=1e-5)
    frames = lambda model: model.frame_word_head(model.audio_with_sequence(x["audio"])[1]).numpy()  # noqa: E731
    np.testing.assert_allclose(frames(again), frames(m), atol=1e-5)  # the head is saved and reloaded too


def test_greedy_transcript_by_hand():
    from keras import ops

    from pipeline.models.layers import GreedyTranscript

    # Steps heard: -, red, red, -, disc, disc, red → "red disc red"; a run is one word, a
    # word again after a pause is a new word.
    logits = ops.one_hot([[0, 5, 5, 0, 7, 7, 5], [3, 3, 3, 3, 3, 3, 3]], 8)
    np.testing.assert_array_equal(np.asarray(GreedyTranscript(4)(logits)), [[5, 7, 5, 0], [3, 0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(GreedyTranscript(2)(logits)), [[5, 7], [3, 0]])  # cut to length
    layer = GreedyTranscript.from_config(GreedyTranscript(9).get_config())
    assert layer.length == 9 and np.asarray(layer(logits)).shape == (2, 9)


@pytest.mark.parametrize("readout", ["words", "both"])
def test_transcribing_readout_reads_the_heard_words_with_the_text_encoder(tmp_path, readout):
    from pipeline.models.layers import GreedyTranscript

    config = load_config("smoke", ["train.aux_words=0", "train.aux_frame_words=1.0", f"audio.readout={readout}"])
    m = CrossModalModel(config, vocab_size=20, audio_frames=50)
    m(dummy_inputs(m))
    audio = np.random.default_rng(0).random((3, 50, 16), "float32")
    pooled, sequence = m.audio_with_sequence(audio)
    heard = m.text_encoder(GreedyTranscript(config.text.sequence_length)(m.frame_word_head(sequence))).numpy()
    expected = (
        heard
        if readout == "words"
        else (pooled.numpy() + heard) / np.linalg.norm(pooled.numpy() + heard, axis=1, keepdims=True)
    )
    np.testing.assert_allclose(m.audio_encoder(audio).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(m({"audio": audio})["audio"].numpy(), expected, atol=1e-5)  # inference uses it
    again = reloaded(m, config, tmp_path)
    np.testing.assert_allclose(again.audio_encoder(audio).numpy(), expected, atol=1e-5)


def test_transcribing_readout_needs_text_and_the_frame_word_head():
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="aux_frame_words"):
        load_config("smoke", ["audio.readout=both"])
    with pytest.raises(ConfigError, match="'text' in data.modalities"):
        load_config(
            "smoke",
            [
                "audio.readout=words",
                "train.aux_frame_words=1",
                "data.modalities=image,audio",
                "train.pairs=audio-image",
            ],
        )


def test_label_positives_make_every_row_of_a_class_a_match():
    # Rows 0 and 2 share label 3, row 1 has label 5, row 3 none (-1): with positives = label
    # the loss equals InfoNCE with ids [3, 5, 3, -1 - 3] (the unlabelled row keeps its own id).
    config = load_config("smoke", ["train.aux_words=0", "train.positives=label"])
    m = CrossModalModel(config, vocab_size=20, audio_frames=50)
    m(dummy_inputs(m))
    x = batch(m)
    x["label"] = np.array([3, 5, 3, -1])
    y = m(x)
    ids = tf.constant([3, 5, 3, -4], tf.int64)
    expected = sum(float(infonce_loss(y[a], y[b], m.scale, ids)) for a, b in (p.split("-") for p in config.train.pairs))
    assert float(m.compute_loss(x, None, y)) == pytest.approx(expected, rel=1e-5)
    by_item = sum(
        float(infonce_loss(y[a], y[b], m.scale, tf.constant(x["item"])))
        for a, b in (p.split("-") for p in config.train.pairs)
    )
    assert expected != pytest.approx(by_item, rel=1e-3)  # the labels changed the targets
