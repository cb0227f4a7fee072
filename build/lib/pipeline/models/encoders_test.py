"""Shapes, config round trips, save → load → allclose and one training step for every encoder."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import AudioConfig, FusionConfig, ImageConfig, TextConfig
from pipeline.models.audio_encoder import build_audio_encoder
from pipeline.models.fusion import build_fusion
from pipeline.models.image_encoder import build_image_encoder, find_imagenet_weights, resolve_weights
from pipeline.models.text_encoder import build_text_encoder

TEXT = TextConfig(sequence_length=8, embedding_dim=8, conv_filters=8, kernel_sizes=(2, 3), lstm_units=8)
RNG = np.random.default_rng(0)
TOKENS = RNG.integers(1, 30, (4, 8)).astype("int64")
TOKENS[:, 6:] = 0  # padding


def encoders():
    yield from (
        (f"text-{kind}", build_text_encoder(TextConfig(**{**TEXT.__dict__, "kind": kind}), 30, 16), TOKENS)
        for kind in ("conv", "lstm", "conv_lstm", "serial", "parallel", "mixed")
    )
    yield (
        "text-lstm-mean",
        build_text_encoder(TextConfig(**{**TEXT.__dict__, "kind": "lstm", "lstm_pooling": "mean"}), 30, 16),
        TOKENS,
    )
    yield (
        "image-scratch",
        build_image_encoder(ImageConfig(image_size=32, scratch_filters=(4, 8)), 16),
        RNG.random((4, 32, 32, 3), "float32"),
    )
    yield (
        "image-scratch-grid3",
        build_image_encoder(ImageConfig(image_size=32, scratch_filters=(4, 8), scratch_grid_channels=3), 16),
        RNG.random((4, 32, 32, 3), "float32"),
    )
    yield (
        "image-mobilenet",
        build_image_encoder(ImageConfig(backbone="mobilenet_v2", weights="none", image_size=32), 16),
        RNG.random((4, 32, 32, 3), "float32"),
    )
    yield (
        "audio",
        build_audio_encoder(AudioConfig(n_mels=8, filters=(8, 8), first_stride=2, recurrent_units=4), 40, 16),
        RNG.random((4, 40, 8), "float32"),
    )


keras.utils.set_random_seed(
    0
)  # random-weight encoders: the same weights every run (an unseeded MobileNet once gave a near-zero output)
CASES = list(encoders())


@pytest.mark.parametrize("name,model,x", CASES, ids=[c[0] for c in CASES])
def test_shape_unit_norm_and_name(name, model, x):
    y = model(x).numpy()
    assert y.shape == (4, 16)
    if "mixed" not in name:  # mixed combines two unit vectors: its norm is at most 1
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-4)
    assert model.name in ("text_encoder", "image_encoder", "audio_encoder")


@pytest.mark.parametrize("name,model,x", CASES, ids=[c[0] for c in CASES])
def test_config_round_trip(name, model, x):
    clone = keras.Model.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("name,model,x", CASES, ids=[c[0] for c in CASES])
def test_save_load_allclose(name, model, x, tmp_path):
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("name,model,x", CASES, ids=[c[0] for c in CASES])
def test_one_training_step_changes_weights(name, model, x):
    target = np.roll(model(x).numpy(), 1, axis=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.train_on_batch(x, target)
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert any(changed)


def test_lstm_mean_pooling_averages_the_words_only():
    model = build_text_encoder(TextConfig(**{**TEXT.__dict__, "kind": "lstm", "lstm_pooling": "mean"}), 30, 16)
    sequence = keras.Model(model.input, model.get_layer("bilstm").output)(TOKENS).numpy()  # [4, 8, 16]
    pooled = keras.Model(model.input, model.get_layer("lstm_mean").output)(TOKENS).numpy()
    np.testing.assert_allclose(pooled, sequence[:, :6].mean(axis=1), atol=1e-5)  # the last 2 steps are padding


def test_mixed_combines_two_towers_with_a_learned_weight():
    model = build_text_encoder(TextConfig(**{**TEXT.__dict__, "kind": "mixed"}), 30, 16)
    mix = model.get_layer("mix")
    conv = keras.Model(model.input, model.get_layer("conv_l2").output)(TOKENS).numpy()
    lstm = keras.Model(model.input, model.get_layer("lstm_l2").output)(TOKENS).numpy()
    w = float(keras.ops.sigmoid(mix.logit))
    assert w == pytest.approx(0.5)
    np.testing.assert_allclose(model(TOKENS).numpy(), w * conv + (1 - w) * lstm, atol=1e-6)


def test_glove_encoder_reloads_without_the_matrix(tmp_path):
    # A run trained from GloVe is reopened from its weights alone: the model built for them
    # must have GloVe's 50-wide embedding even though no matrix is passed (it had 8 once).
    config = TextConfig(**{**TEXT.__dict__, "glove": True})
    trained = build_text_encoder(config, 30, 16, embedding_matrix=RNG.random((30, 50), "float32"))
    trained.save_weights(tmp_path / "text.weights.h5")
    reopened = build_text_encoder(config, 30, 16)
    reopened.load_weights(tmp_path / "text.weights.h5")
    np.testing.assert_allclose(reopened(TOKENS).numpy(), trained(TOKENS).numpy(), atol=1e-6)


def test_fusion_average_masks_missing_modalities():
    fusion = build_fusion(FusionConfig(strategy="average"), ("image", "audio"), 2)
    image, audio = np.array([[1.0, 0.0]] * 3, "float32"), np.array([[0.0, 1.0]] * 3, "float32")
    out = fusion(
        {
            "image": image,
            "audio": audio,
            "image_mask": np.array([1.0, 1.0, 0.0]),
            "audio_mask": np.array([0.0, 1.0, 0.0]),
        }
    ).numpy()
    # row 0: image only → (1, 0); row 1: mean (0.5, 0.5) normalised → (0.7071, 0.7071); row 2: nothing → zeros
    np.testing.assert_allclose(out, [[1, 0], [0.70710678, 0.70710678], [0, 0]], atol=1e-6)


def test_fusion_weighted_uses_softmax_of_learned_logits():
    fusion = build_fusion(FusionConfig(strategy="weighted"), ("image", "audio"), 2)
    fusion.get_layer("merge").logits.assign([np.log(3.0), 0.0])  # weights 3/4 and 1/4
    out = fusion(
        {
            "image": np.array([[1.0, 0.0]], "float32"),
            "audio": np.array([[0.0, 1.0]], "float32"),
            "image_mask": np.ones(1),
            "audio_mask": np.ones(1),
        }
    ).numpy()
    np.testing.assert_allclose(out, [[0.75, 0.25] / np.hypot(0.75, 0.25)], atol=1e-6)


def test_fusion_concat_dense_ignores_masked_embeddings():
    fusion = build_fusion(FusionConfig(strategy="concat_dense", hidden=8), ("image", "audio"), 4)
    image = RNG.random((2, 4), "float32")
    masks = {"image_mask": np.ones(2), "audio_mask": np.zeros(2)}
    a = fusion({"image": image, "audio": RNG.random((2, 4), "float32"), **masks}).numpy()
    b = fusion({"image": image, "audio": RNG.random((2, 4), "float32"), **masks}).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)  # the absent audio's values do not leak in


def test_fusion_gated_weights_each_item_by_its_own_embeddings():
    fusion = build_fusion(FusionConfig(strategy="gated", hidden=4), ("text", "image"), 2)
    merge = fusion.get_layer("merge")
    text, image = np.array([[1.0, 0.0], [1.0, 0.0]], "float32"), np.array([[0.0, 1.0], [0.0, -1.0]], "float32")
    inputs = {"text": text, "image": image, "text_mask": np.ones(2), "image_mask": np.ones(2)}
    # The gate's last layer starts at zero: the average, (0.5, ±0.5) normalised.
    np.testing.assert_allclose(fusion(inputs).numpy(), [[0.70710678, 0.70710678], [0.70710678, -0.70710678]], atol=1e-6)
    # Hidden = ReLU(x): units 0, 1 read the embedding's two values; the logit is 2 * unit 1
    # minus unit 0 plus ln 3 for text. Row 0: text logit ln3 - 1, image 2 → weights e^(ln3-1), e^2.
    merge.dense_hidden.set_weights([np.array([[1, 0, 0, 0], [0, 1, 0, 0]], "float32"), np.zeros(4, "float32")])
    merge.dense_out.set_weights([np.array([[-1], [2], [0], [0]], "float32"), np.zeros(1, "float32")])
    merge.logits.assign([np.log(3.0), 0.0])
    w_text, w_image = 3 * np.exp(-1.0), np.exp(2.0)
    row0 = np.array([w_text, w_image]) / (w_text + w_image)
    # Row 1: the image (0, -1) has ReLU units 0, 0: logit 0; text as in row 0.
    w1 = np.array([3 * np.exp(-1.0), 1.0]) / (3 * np.exp(-1.0) + 1.0)
    row1 = np.array([w1[0], -w1[1]])
    expected = np.stack([row0 / np.linalg.norm(row0), row1 / np.linalg.norm(row1)])
    np.testing.assert_allclose(fusion(inputs).numpy(), expected, atol=1e-5)
    # A masked modality gets no weight, whatever its score.
    only_text = fusion({**inputs, "image_mask": np.zeros(2)}).numpy()
    np.testing.assert_allclose(only_text, text, atol=1e-6)


@pytest.mark.parametrize("strategy", ["average", "weighted", "concat_dense", "gated"])
def test_fusion_config_round_trip_and_save_load(strategy, tmp_path):
    fusion = build_fusion(FusionConfig(strategy=strategy, hidden=8), ("text", "image", "audio"), 4)
    x = {m: RNG.random((3, 4), "float32") for m in ("text", "image", "audio")}
    x.update(
        {
            "text_mask": np.array([1.0, 0.0, 0.0]),
            "image_mask": np.array([1.0, 1.0, 0.0]),
            "audio_mask": np.array([0.0, 1.0, 0.0]),
        }
    )
    merge = fusion.get_layer("merge")
    assert type(merge).from_config(merge.get_config()).get_config() == merge.get_config()
    fusion.save(tmp_path / "fusion.keras")
    reopened = keras.saving.load_model(tmp_path / "fusion.keras")
    out = fusion(x).numpy()
    np.testing.assert_allclose(reopened(x).numpy(), out, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[2], 0.0)  # no modality: a zero vector


def test_imagenet_weights_found_in_keras_cache_or_warned(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("PIPELINE_SHARED_DIR", str(tmp_path / "no-shared"))
    with caplog.at_level(logging.WARNING):
        assert resolve_weights(ImageConfig(backbone="mobilenet_v2")) is None
    assert "RANDOM weights" in caplog.text and "--set image.weights=PATH" in caplog.text
    (tmp_path / "models").mkdir()
    weights = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    weights.write_bytes(b"")
    assert find_imagenet_weights("mobilenet_v2") == weights
    with pytest.raises(FileNotFoundError, match="image.weights=/nope.h5"):
        resolve_weights(ImageConfig(backbone="mobilenet_v2", weights="/nope.h5"))


@pytest.mark.parametrize(
    "grid,channels,width",
    [
        (True, 0, 8 * 8 * 8 + 8),  # 32 px, two 2x pools: an 8x8 grid of 8 channels, flattened, plus the global max's 8
        (True, 3, 8 * 8 * 3 + 8),  # the grid reduced to 3 channels first
        (False, 0, 8),  # the global max alone
    ],
)
def test_scratch_backbone_feature_width(grid, channels, width):
    from pipeline.models.image_encoder import build_image_backbone

    backbone = build_image_backbone(
        ImageConfig(image_size=32, scratch_filters=(4, 8), scratch_grid=grid, scratch_grid_channels=channels)
    )
    assert backbone(RNG.random((2, 32, 32, 3), "float32")).shape == (2, width)


def test_scratch_backbone_needs_some_features():
    from pipeline.config import ConfigError, ExperimentConfig

    with pytest.raises(ConfigError, match="would have no features"):
        ExperimentConfig(image=ImageConfig(scratch_grid=False, scratch_global_pool=False)).validate()
    with pytest.raises(ConfigError, match="scratch_grid_channels must be 0"):
        ExperimentConfig(image=ImageConfig(scratch_grid_channels=-1)).validate()


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown image backbone 'vgg99'"):
        build_image_encoder(ImageConfig(backbone="vgg99"), 8)


def test_encoders_run_inside_tf_function():
    model = build_text_encoder(TEXT, 30, 16)
    np.testing.assert_allclose(tf.function(model)(TOKENS).numpy(), model(TOKENS).numpy(), atol=1e-6)


def test_test_time_views_average_the_unit_vectors_of_each_view():
    from pipeline.models.image_encoder import embed_image_features, embed_image_views

    config = ImageConfig(image_size=32, scratch_filters=(4, 8))
    encoder = build_image_encoder(config, 16)
    head = encoder.get_layer("image_head")
    pixels = RNG.random((3, 32, 32, 3), "float32")
    plain, mirrored = encoder(pixels).numpy(), encoder(pixels[:, :, ::-1]).numpy()
    expected = (plain + mirrored) / np.linalg.norm(plain + mirrored, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(embed_image_views(encoder, pixels, ("plain", "flip"))), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(embed_image_views(encoder, pixels)), plain, atol=1e-6)

    features = RNG.random((3, 2, int(head.input.shape[-1])), "float32")
    a, b = head(features[:, 0]).numpy(), head(features[:, 1]).numpy()
    np.testing.assert_allclose(
        np.asarray(embed_image_features(head, features)),
        (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True),
        atol=1e-5,
    )
    np.testing.assert_allclose(np.asarray(embed_image_features(head, features[:, 0])), a, atol=1e-6)


def test_test_views_must_exist():
    from pipeline.config import ConfigError, load_config

    assert load_config("smoke", ["image.feature_flip=true", "image.test_views=2"]).image.test_views == 2
    with pytest.raises(ConfigError, match="image.test_views takes 1 to 1"):
        load_config("smoke", ["image.test_views=2"])
