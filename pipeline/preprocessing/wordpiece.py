"""BERT's uncased WordPiece tokenizer in core TensorFlow ops, so it runs inside tf.data and
inside an exported SavedModel (TF Serving has no tensorflow-text).

Same steps as BERT's ``BasicTokenizer`` + ``WordpieceTokenizer``: lower case, punctuation split
off as words of its own, white space split, then each word cut greedily into the longest
vocabulary pieces from the left ("##" marks a piece inside a word); a word with no such cut is
``[UNK]``. Two simplifications, harmless for English captions: accents are not stripped (an
accented word becomes other pieces or ``[UNK]``), and a word longer than ``max_word_chars``
characters is ``[UNK]`` (BERT's limit is 100).
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

# BERT counts every ASCII non-alphanumeric printable as punctuation, and Unicode's P classes.
_PUNCTUATION = r"([\p{P}!-/:-@\[-`{-~])"


def load_wordpiece_vocabulary(path: str | Path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if token not in lines:
            raise ValueError(f"{path}: not a BERT WordPiece vocabulary (no {token})")
    if lines[0] != "[PAD]":
        raise ValueError(f"{path}: the padding token [PAD] must be id 0")
    return lines


@keras.saving.register_keras_serializable(package="pipeline")
class WordPieceVectorizer(keras.layers.Layer):
    """Strings [batch] → WordPiece ids [batch, sequence_length]: ``[CLS]`` pieces ``[SEP]``, cut
    to fit, padded with 0 (``[PAD]``).

    Args:
        vocabulary: the WordPiece vocabulary, id = position; must start with ``[PAD]``.
        sequence_length: output length, the two markers included.
        max_word_chars: longer words are ``[UNK]``.

    Example:
        >>> vectorizer = WordPieceVectorizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "dog", "##s"], 6)
        >>> vectorizer(tf.constant(["A dogs!"])).numpy()
        array([[2, 4, 5, 6, 1, 3]])
    """

    def __init__(self, vocabulary: list[str], sequence_length: int, max_word_chars: int = 32, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("name", "text_vectorizer")
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.sequence_length = sequence_length
        self.max_word_chars = max_word_chars
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.unk_id, self.cls_id, self.sep_id = ids["[UNK]"], ids["[CLS]"], ids["[SEP]"]
        # A StringLookup (not a bare tf.lookup table) so that Keras' ExportArchive saves it with
        # the layer; index 0 is its out-of-vocabulary bucket, so a piece's id is its index - 1.
        self._lookup = keras.layers.StringLookup(
            vocabulary=self.vocabulary, num_oov_indices=1, oov_token="[wordpiece-oov]", name="pieces"
        )
        self.built = True

    def get_vocabulary(self) -> list[str]:
        return list(self.vocabulary)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.sequence_length)

    def _words(self, text):
        text = tf.strings.lower(text)
        text = tf.strings.regex_replace(text, _PUNCTUATION, r" \1 ")
        return tf.strings.split(text)  # ragged [batch, (words)]

    def _pieces(self, words):
        """Flat words [n] → ids [n, rounds], -1 after a word's last piece."""
        n = tf.shape(words)[0]
        lengths = tf.strings.length(words, unit="UTF8_CHAR")
        too_long = lengths > self.max_word_chars
        candidates = tf.range(1, self.max_word_chars + 1)  # prefix lengths tried each round

        def round_(i, remaining, unknown, pieces):
            left = tf.strings.length(remaining, unit="UTF8_CHAR")
            active = (left > 0) & ~unknown
            marker = tf.where(i > 0, "##", "")
            prefixes = tf.strings.substr(
                tf.tile(remaining[:, None], [1, self.max_word_chars]),
                tf.zeros([n, self.max_word_chars], tf.int32),
                tf.tile(candidates[None, :], [n, 1]),
                unit="UTF8_CHAR",
            )
            found = tf.cast(self._lookup(marker + prefixes), tf.int64) - 1
            usable = (found >= 0) & (candidates[None, :] <= left[:, None])
            # The longest usable prefix: the last True column (0 when none).
            longest = tf.reduce_max(tf.where(usable, candidates[None, :], 0), axis=1)
            unknown = unknown | (active & (longest == 0))
            take = active & (longest > 0)
            piece = tf.gather(found, tf.maximum(longest - 1, 0), batch_dims=1)
            pieces = pieces.write(i, tf.where(take, piece, -1))
            remaining = tf.where(take, tf.strings.substr(remaining, longest, left, unit="UTF8_CHAR"), remaining)
            return i + 1, remaining, unknown, pieces

        def more(i, remaining, unknown, pieces):
            left = tf.strings.length(remaining, unit="UTF8_CHAR")
            return (i < self.max_word_chars) & tf.reduce_any((left > 0) & ~unknown)

        pieces = tf.TensorArray(tf.int64, size=0, dynamic_size=True, element_shape=[None])
        _, _, unknown, pieces = tf.while_loop(
            more, round_, (tf.constant(0), tf.where(too_long, "", words), too_long, pieces)
        )
        # [n, rounds + 1]: the extra -1 column gives a first column even when no round ran.
        stacked = tf.concat(
            [tf.reshape(tf.transpose(pieces.stack()), [n, -1]), tf.fill([n, 1], tf.constant(-1, tf.int64))], 1
        )
        # An unknown word is one [UNK] (BERT drops the pieces it had found).
        first = tf.where(unknown[:, None], tf.cast(self.unk_id, tf.int64), stacked[:, :1])
        rest = tf.where(unknown[:, None], tf.constant(-1, tf.int64), stacked[:, 1:])
        return tf.concat([first, rest], axis=1)

    def call(self, text):
        text = tf.convert_to_tensor(text, tf.string)
        words = self._words(tf.reshape(text, [-1]))
        flat = self._pieces(words.flat_values)
        per_word = tf.RaggedTensor.from_row_splits(flat, words.row_splits)  # [batch, (words), rounds]
        ids = per_word.merge_dims(1, 2)
        ids = tf.ragged.boolean_mask(ids, ids >= 0)[:, : self.sequence_length - 2]
        batch = tf.shape(ids.row_splits)[0] - 1
        cls = tf.fill([batch, 1], tf.cast(self.cls_id, tf.int64))
        sep = tf.fill([batch, 1], tf.cast(self.sep_id, tf.int64))
        ids = tf.concat([cls, ids, sep], axis=1)
        return ids.to_tensor(default_value=0, shape=[batch, self.sequence_length])

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary": self.vocabulary,
            "sequence_length": self.sequence_length,
            "max_word_chars": self.max_word_chars,
        }
