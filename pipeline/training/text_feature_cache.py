"""A frozen text backbone's features of the training and dev captions, computed once and cached.

With ``text.kind = "minilm"`` the text encoder is a frozen MiniLM, mean-pooled, then a trained
head. MiniLM costs far more than the head, and its output for a caption never changes, so
training runs it once per caption (a progress bar), keeps the features on disk, and feeds the
head the features of each batch's captions, looked up by caption. Evaluation, search and
export run the whole encoder on the words, so what they see is what the head was trained on
(a test checks the cached features against the live backbone).

The cache key covers the backbone's weights (by content), the tokenizer's vocabulary and
length, and the exact list of captions.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import tensorflow as tf

from pipeline import paths
from pipeline.training.feature_cache import compute_and_cache

log = logging.getLogger(__name__)


class CachedTextFeatures:
    """Captions [batch] (strings) → their cached features [batch, dim]; used where a
    vectorizer would turn them into token ids. A caption outside the cache is an error that
    names it, never a silent zero.

    Args:
        captions: the cached captions, unique.
        features: [len(captions), dim] float32.
    """

    def __init__(self, captions: list[str], features: np.ndarray):
        if len(captions) != len(features):
            raise ValueError(f"{len(captions)} captions but {len(features)} feature rows")
        self.captions = list(captions)
        self.features = tf.constant(features, tf.float32)
        self._rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self.captions), tf.range(len(captions), dtype=tf.int64)),
            default_value=-1,
        )

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])

    def __call__(self, texts):
        rows = self._rows.lookup(tf.convert_to_tensor(texts, tf.string))
        tf.debugging.assert_non_negative(
            rows, message="a caption has no cached text features (the cache holds the training and dev captions)"
        )
        return tf.gather(self.features, rows)


def cache_path(weights_id: str, vocabulary: list[str], sequence_length: int, captions: list[str]):
    digest = hashlib.sha1()
    for part in (weights_id, str(sequence_length), *vocabulary, "\0captions", *captions):
        digest.update(part.encode() + b"\0")
    return paths.cache_dir("text-features") / f"minilm-{sequence_length}-{digest.hexdigest()[:16]}.npz"


def caption_features(
    text_backbone, vectorizer, captions: list[str], weights_id: str, batch_size: int = 256
) -> CachedTextFeatures:
    """``text_backbone`` (token ids → features) of each unique caption, from the cache or
    computed (with a progress bar) and cached."""
    captions = sorted(set(captions))
    path = cache_path(weights_id, vectorizer.get_vocabulary(), vectorizer.sequence_length, captions)
    if path.is_file():
        with np.load(path) as cached:
            log.info("text features: using the cache %s (%d captions)", path.name, len(captions))
            return CachedTextFeatures(captions, cached["features"])
    encode = tf.function(lambda ids: text_backbone(ids, training=False))
    batches = (vectorizer(tf.constant(captions[i : i + batch_size])) for i in range(0, len(captions), batch_size))
    features = compute_and_cache(path, batches, encode, len(captions), "MiniLM caption features", "caption")
    return CachedTextFeatures(captions, features)
