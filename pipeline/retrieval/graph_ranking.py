"""The Searcher's ranking of text queries in core TensorFlow ops, for the exported retriever.

TF Serving runs no Python, so what ``Searcher.search_texts`` does for a text query on an
exact index is written again here as graph ops, step for step:

1. words: ``naive_bayes.tokenize`` (lower-cased, letters and digits, inner apostrophes kept) as
   ``tf.strings`` ops (``tokenize_graph``);
2. the Naive Bayes stage: the query's word counts against the items' log p(w | item), plus
   the log prior, normalised over items: ``MultinomialNB.predict_log_proba``
   (``NaiveBayesGraph``);
3. candidates: the dense top ``max(MIN_CANDIDATES, 10 k)`` and the Naive Bayes top as many;
4. the fusion of ``retrieval/hybrid.py`` over those candidates (z-scores or reciprocal ranks),
   ties broken by row as a stable sort breaks them; a query with no word in the vocabulary
   is ranked by the dense score alone (``HybridRanker``).

Only core ops (StringLower, RegexReplace, StringSplit, a hash table (StringLookup), SparseTensorDenseMatMul,
TopKV2) are used, so the stock server loads them. ``graph_ranking_test`` checks each step
against the Python code it mirrors.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from pipeline.retrieval.hybrid import FUSIONS, RRF_K0
from pipeline.retrieval.naive_bayes import LOG_PROBA_DECIMALS, NaiveBayesScorer

_LETTER_OR_DIGIT = r"\p{L}\p{N}"  # Python's [^\W_] (str.isalnum) in RE2, whose \w is ASCII only


def tokenize_graph(texts: tf.Tensor) -> tf.RaggedTensor:
    """``naive_bayes.tokenize`` for a batch of strings [batch] → words [batch, (words)].

    RE2 has no lookaround, so the words are not found but everything else is blanked out:
    characters that are neither letters, digits nor apostrophes, then apostrophes that do not
    sit between two letters or digits.
    """
    text = tf.strings.lower(texts, encoding="utf-8")
    text = tf.strings.regex_replace(text, rf"[^{_LETTER_OR_DIGIT}']", " ")
    text = tf.strings.regex_replace(text, r"''+", " ")
    text = tf.strings.regex_replace(text, rf"(^|[^{_LETTER_OR_DIGIT}])'", r"\1 ")
    text = tf.strings.regex_replace(text, rf"'($|[^{_LETTER_OR_DIGIT}])", r" \1")
    return tf.strings.split(text)


class NaiveBayesGraph(tf.Module):
    """``NaiveBayesScorer.log_proba`` as graph ops, from the scorer's ``log_terms``.

    MultinomialNB's log p(w | item) is log(c + alpha) - log(N_item + alpha |V|) for a word
    counted c times in the item (N_item words in all). Split as

        log p(w | item) = unseen[item] + seen[item, w],   unseen = log alpha - log(N_item + alpha |V|)

    ``seen`` = log(c + alpha) - log alpha is zero where c = 0, so it is stored sparse (an
    item has few words) and the dense [items, vocabulary] matrix is never made. Then

        jll[q, item] = sum_w n(w, q) seen[item, w] + |q| unseen[item] + log prior[item]

    and log p(item | q) = jll - logsumexp over items, all in float64 as scikit-learn does,
    rounded as ``NaiveBayesScorer.log_proba`` rounds it.

    Args:
        scorer: a fitted ``NaiveBayesScorer`` (an index's ``naive_bayes``).
    """

    def __init__(self, scorer: NaiveBayesScorer, name: str = "naive_bayes"):
        super().__init__(name=name)
        seen, unseen, log_prior = scorer.log_terms()
        seen = seen.tocoo()  # row-major (log_terms sorts it), as a SparseTensor requires
        vocabulary_size = len(scorer.vocabulary)
        indices = np.stack([seen.row, seen.col], axis=1).astype(np.int64)
        self.items = int(seen.shape[0])
        self.vocabulary_size = vocabulary_size
        # A Keras lookup layer rather than a bare hash table: ExportArchive saves those itself.
        # Index 0 is for unknown words, so word j of the vocabulary is j + 1.
        self.words = keras.layers.StringLookup(vocabulary=list(scorer.vocabulary), num_oov_indices=1, name="nb_words")
        self.seen_indices = tf.Variable(indices.reshape(-1, 2), trainable=False, name="seen_indices")
        self.seen_values = tf.Variable(seen.data.astype(np.float64), trainable=False, name="seen_values")
        self.unseen = tf.Variable(unseen, trainable=False, name="unseen")
        self.log_prior = tf.Variable(log_prior, trainable=False, name="log_prior")

    def word_counts(self, words: tf.RaggedTensor) -> tf.Tensor:
        """Counts [batch, vocabulary] (float64) of the known words of each query."""
        ids = tf.cast(self.words(words.flat_values), tf.int64) - 1
        rows = words.value_rowids()
        known = ids >= 0
        positions = tf.stack([tf.boolean_mask(rows, known), tf.boolean_mask(ids, known)], axis=1)
        batch = tf.cast(words.nrows(), tf.int64)
        ones = tf.ones([tf.shape(positions)[0]], tf.float64)
        return tf.scatter_nd(positions, ones, tf.stack([batch, tf.constant(self.vocabulary_size, tf.int64)]))

    def log_proba(self, counts: tf.Tensor) -> tf.Tensor:
        """log p(item | query) [batch, items] from word counts [batch, vocabulary]."""
        seen = tf.SparseTensor(self.seen_indices, self.seen_values, [self.items, self.vocabulary_size])
        joint = tf.transpose(tf.sparse.sparse_dense_matmul(seen, counts, adjoint_b=True))
        joint += tf.reduce_sum(counts, axis=1, keepdims=True) * self.unseen[None, :] + self.log_prior[None, :]
        scale = tf.constant(10.0**LOG_PROBA_DECIMALS, tf.float64)  # np.round's own steps: x * 10^d, rint, / 10^d
        return tf.round((joint - tf.reduce_logsumexp(joint, axis=1, keepdims=True)) * scale) / scale


def _top_mask(scores: tf.Tensor, count: int) -> tf.Tensor:
    """[batch, n] bool: the ``count`` highest of each row (top_k keeps the lower index on a tie)."""
    top = tf.math.top_k(scores, k=count).indices
    batch = tf.shape(scores)[0]
    positions = tf.stack([tf.repeat(tf.range(batch), count), tf.reshape(top, [-1])], axis=1)
    return tf.scatter_nd(positions, tf.ones([batch * count], tf.int32), tf.shape(scores)) > 0


def _zscore(scores: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """``hybrid.zscore`` over each row's candidates: population std, a constant row gives 0."""
    weight = tf.cast(candidates, scores.dtype)
    count = tf.reduce_sum(weight, axis=1, keepdims=True)
    mean = tf.reduce_sum(scores * weight, axis=1, keepdims=True) / count
    std = tf.sqrt(tf.reduce_sum(tf.square(scores - mean) * weight, axis=1, keepdims=True) / count)
    return (scores - mean) / tf.where(std > 0, std, tf.ones_like(std))


def _ranks(scores: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """``hybrid.ranks`` among each row's candidates: 1 = highest, ties by index."""
    n = tf.shape(scores)[1]
    masked = tf.where(candidates, scores, tf.constant(-np.inf, scores.dtype))
    order = tf.math.top_k(masked, k=n).indices  # candidates first (finite), lower index first on ties
    position = tf.argsort(order, axis=1, stable=True)  # the inverse permutation: each column's place
    return tf.cast(position + 1, scores.dtype)


class HybridRanker(tf.Module):
    """Ranks an index's items for text queries as ``Searcher.search_texts`` does.

    Args:
        vectors: the index's item vectors [items, dim] (unit length).
        item_ids: their ids.
        scorer: the index's Naive Bayes stage (unused by ``ranking="dense"``).
        ranking: ``dense``, ``nb``, ``weighted`` or ``rrf`` (``hybrid.FUSIONS``).
        weight: the dense weight of a hybrid ranking.
        k: results per query.
        min_candidates: the Searcher's ``MIN_CANDIDATES``.

    Call it with the query vectors [batch, dim] and the query strings [batch]; it returns
    ``item_ids`` [batch, k] and ``scores`` [batch, k] (float32), the ranking score as
    ``SearchHit.score`` gives it.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        item_ids: list[str],
        scorer: NaiveBayesScorer | None,
        ranking: str,
        weight: float,
        k: int,
        min_candidates: int,
        name: str = "index",
    ):
        super().__init__(name=name)
        if ranking not in FUSIONS:
            raise ValueError(f"unknown ranking {ranking!r}; choose one of {', '.join(FUSIONS)}")
        self.ranking, self.weight = ranking, float(weight)
        self.k = min(int(k), len(item_ids))
        self.candidates = min(max(int(min_candidates), 10 * int(k)), len(item_ids))
        self.vectors = tf.Variable(np.asarray(vectors, np.float32), trainable=False, name="item_vectors")
        self.ids = tf.Variable(
            np.array([str(i).encode("utf-8") for i in item_ids], dtype=object),
            trainable=False,
            dtype=tf.string,
            name="item_ids",
        )
        words_known = ranking != "dense" and scorer is not None and scorer.items > 0 and scorer.vocabulary
        self.naive_bayes = NaiveBayesGraph(scorer) if words_known else None

    def __call__(self, queries: tf.Tensor, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        dense = tf.matmul(queries, self.vectors, transpose_b=True)
        scores = dense
        if self.naive_bayes is not None:
            counts = self.naive_bayes.word_counts(tokenize_graph(texts))
            has_words = tf.reduce_sum(counts, axis=1) > 0
            nb = self.naive_bayes.log_proba(counts)
            dense64 = tf.cast(dense, tf.float64)
            candidates = tf.logical_or(_top_mask(dense, self.candidates), _top_mask(nb, self.candidates))
            if self.ranking == "nb":
                fused = nb
            elif self.ranking == "weighted":
                fused = self.weight * _zscore(dense64, candidates) + (1.0 - self.weight) * _zscore(nb, candidates)
            else:
                fused = self.weight / (RRF_K0 + _ranks(dense64, candidates)) + (1.0 - self.weight) / (
                    RRF_K0 + _ranks(nb, candidates)
                )
            fused = tf.where(candidates, fused, tf.constant(-np.inf, tf.float64))
            # A query without a known word: the dense ranking (the Searcher's note says so).
            scores = tf.where(has_words[:, None], fused, dense64)
        top = tf.math.top_k(scores, k=self.k)
        return {"item_ids": tf.gather(self.ids, top.indices), "scores": tf.cast(top.values, tf.float32)}
