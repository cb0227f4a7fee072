import numpy as np
import pytest
import tensorflow as tf

from pipeline.preprocessing.wordpiece import WordPieceVectorizer, load_wordpiece_vocabulary

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "dog", "run", "##s", "##ning", "!", "'", "s", "un", "##aff", "##able"]


def tokens(vectorizer, text):
    return [VOCAB[i] for i in vectorizer(tf.constant([text])).numpy()[0] if i]


def test_greedy_longest_pieces_punctuation_and_unknown_words():
    v = WordPieceVectorizer(VOCAB, 16)
    # "runs" → run ##s; "running" → run ##ning; "dog's" → dog ' s; "cat" has no cut → [UNK];
    # "," is split off as punctuation, and is not in this vocabulary: [UNK]
    assert tokens(v, "A dog's runs, running cat!") == [
        "[CLS]", "a", "dog", "'", "s", "run", "##s", "[UNK]", "run", "##ning", "[UNK]", "!", "[SEP]"
    ]  # fmt: skip
    assert tokens(v, "unaffable") == ["[CLS]", "un", "##aff", "##able", "[SEP]"]
    # a word whose tail cannot be cut is one [UNK], not its found pieces
    assert tokens(v, "runx") == ["[CLS]", "[UNK]", "[SEP]"]


def test_lengths_padding_truncation_and_empty_text():
    v = WordPieceVectorizer(VOCAB, 5)
    out = v(tf.constant(["", "a dog runs a dog"])).numpy()
    assert out.shape == (2, 5) and out.dtype == np.int64
    assert out[0].tolist() == [2, 3, 0, 0, 0]
    assert out[1].tolist() == [2, 4, 5, 6, 3]  # cut to fit, [SEP] kept
    too_long = WordPieceVectorizer(VOCAB, 6, max_word_chars=4)
    assert tokens(too_long, "running dog") == ["[CLS]", "[UNK]", "dog", "[SEP]"]


def test_eager_equals_dataset_map():
    v = WordPieceVectorizer(VOCAB, 8)
    texts = tf.constant(["a dog runs!", "running", "unaffable dogs"])
    mapped = next(iter(tf.data.Dataset.from_tensor_slices(texts).batch(3).map(v)))
    np.testing.assert_array_equal(mapped.numpy(), v(texts).numpy())


def test_config_round_trip():
    v = WordPieceVectorizer(VOCAB, 8)
    again = WordPieceVectorizer.from_config(v.get_config())
    np.testing.assert_array_equal(again(tf.constant(["a dog runs"])).numpy(), v(tf.constant(["a dog runs"])).numpy())


def test_vocabulary_file_is_checked(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="vocab.txt: not a BERT WordPiece vocabulary"):
        load_wordpiece_vocabulary(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    assert load_wordpiece_vocabulary(tmp_path / "vocab.txt") == VOCAB
