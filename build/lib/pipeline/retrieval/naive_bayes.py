"""The Naive Bayes stage: every indexed item is a class, its words are the features.

Ranks items by query likelihood with scikit-learn's ``MultinomialNB``:

    log p(item | query) = sum_w n(w, query) * log p(w | item) + log p(item) - log Z(query)
    p(w | item) = (count(w, item) + alpha) / (sum_v count(v, item) + alpha * |V|)
    p(item) = class_count(item) / sum of class counts

``predict_log_proba`` computes exactly that; ``log Z`` (the same for every item) does not
change the ranking. The parameters are saved as plain arrays (no pickle) and the model can
learn online: ``partial_fit`` adds a (query, item) pair's words to that item.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.naive_bayes import MultinomialNB

from pipeline.io_utils import atomic_path

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # graph_ranking.tokenize_graph says the same in RE2
# Log-probabilities are rounded to this many decimals: items whose likelihoods are equal in
# exact arithmetic (same length, same query words) then tie, and are ordered by row, however a
# library sums them (the exported retriever's graph sums in another order than scikit-learn).
LOG_PROBA_DECIMALS = 9


def tokenize(text: str) -> list[str]:
    """Lower-cased words, as the text encoders' standardisation splits them (punctuation is a
    separator, inner apostrophes are kept)."""
    return _WORD.findall(str(text).lower())


class NaiveBayesScorer:
    """``MultinomialNB`` over items: fit on the items' word counts, scored on the query's.

    Args:
        vocabulary: the words (features) in column order; other words are unknown.
        alpha: additive (Laplace/Lidstone) smoothing.

    Example:
        >>> nb = NaiveBayesScorer(["dog", "beach", "cat"])
        >>> nb.fit(nb.count_matrix(["a dog on the beach", "a cat"]))
        >>> nb.log_proba(["dog"]).argmax()
        0
    """

    def __init__(self, vocabulary: list[str], alpha: float = 0.1):
        self.vocabulary = list(vocabulary)
        self.alpha = float(alpha)
        self.word_index = {w: i for i, w in enumerate(self.vocabulary)}
        self.nb: MultinomialNB | None = None
        self._word_means: np.ndarray | None = None  # per word, the mean over items of log p(w | item)

    # -------------------------------------------------------------- counts

    def count_matrix(self, texts: list[str]) -> sparse.csr_matrix:
        """Term counts [len(texts), vocabulary] of known words."""
        rows, cols = [], []
        for r, text in enumerate(texts):
            for word in tokenize(text):
                j = self.word_index.get(word)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
        data = np.ones(len(rows), np.float64)
        counts = sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), len(self.vocabulary)))
        counts.sum_duplicates()
        return counts

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in tokenize(text) if w not in self.word_index]

    # -------------------------------------------------------------- fitting

    @property
    def items(self) -> int:
        return 0 if self.nb is None else len(self.nb.classes_)

    def fit(self, item_counts, class_counts=None) -> NaiveBayesScorer:
        """One row of (possibly fractional) word counts per item; ``class_counts`` (default 1
        each) are the items' prior weights."""
        item_counts = sparse.csr_matrix(item_counts, dtype=np.float64)
        n = item_counts.shape[0]
        weights = np.ones(n) if class_counts is None else np.asarray(class_counts, np.float64)
        # MultinomialNB adds weight * row to an item's counts and weight to its class count,
        # so rows divided by their weight restore the exact counts.
        rows = sparse.diags(1.0 / np.maximum(weights, 1e-12)) @ item_counts
        self.nb = MultinomialNB(alpha=self.alpha, force_alpha=True)
        if n:
            self.nb.fit(rows, np.arange(n), sample_weight=weights)
        self._fitted()
        return self

    def _fitted(self) -> None:
        # Worked out here, when the model changes, so that scoring only reads: searches run
        # in many threads at once and must not write to a scorer that a writer may be copying.
        self._word_means = self.nb.feature_log_prob_.mean(axis=0) if self.items else None

    def clone(self) -> NaiveBayesScorer:
        """An independent copy (its own arrays), for a writer to change while searches read this one."""
        counts, weights = self.state()
        twin = NaiveBayesScorer(list(self.vocabulary), self.alpha)
        return twin.fit(counts, weights) if counts.shape[0] else twin

    def partial_fit(self, queries: list[str], items) -> None:
        """Online learning: each query's words are added to its item (feedback: the user chose
        that item for that query), which also raises the item's prior."""
        self._require_fitted()
        self.nb.partial_fit(self.count_matrix(list(queries)), np.asarray(items, np.int64))
        self._fitted()

    def append_items(self, item_counts) -> None:
        """Adds items (new classes) at the end, keeping every earlier count."""
        counts, weights = self.state()
        self.fit(
            sparse.vstack([counts, sparse.csr_matrix(item_counts, dtype=np.float64)]),
            np.concatenate([weights, np.ones(item_counts.shape[0])]),
        )

    def extend_vocabulary(self, texts: list[str]) -> list[str]:
        """Adds the words of ``texts`` not yet known as new features (zero counts so far);
        returns them."""
        new = []
        for text in texts:
            for word in tokenize(text):
                if word not in self.word_index:
                    self.word_index[word] = len(self.vocabulary)
                    self.vocabulary.append(word)
                    new.append(word)
        if new and self.items:
            counts, weights = self.state()
            self.fit(sparse.hstack([counts, sparse.csr_matrix((counts.shape[0], len(new)))]).tocsr(), weights)
        return new

    def remove_items(self, keep: np.ndarray) -> None:
        """Keeps only the items where ``keep`` is true, in order."""
        counts, weights = self.state()
        self.fit(counts[np.flatnonzero(keep)], weights[keep])

    def state(self) -> tuple[sparse.csr_matrix, np.ndarray]:
        """(item word counts, item class counts): everything the model is made of."""
        if self.nb is None or not hasattr(self.nb, "feature_count_"):
            return sparse.csr_matrix((0, len(self.vocabulary))), np.zeros(0)
        return sparse.csr_matrix(self.nb.feature_count_), self.nb.class_count_.copy()

    # -------------------------------------------------------------- scoring

    def log_proba(self, queries: list[str]) -> np.ndarray:
        """log p(item | query) [len(queries), items], rounded to ``LOG_PROBA_DECIMALS``. A
        query with no known word gets the prior (every item's log p(item))."""
        self._require_fitted()
        return np.round(self.nb.predict_log_proba(self.count_matrix(list(queries))), LOG_PROBA_DECIMALS)

    def explain(self, query: str, item: int, top: int = 3) -> list[tuple[str, float]]:
        """The query words that weigh most for ``item``: each known word's contribution
        log p(w | item) - mean over items of log p(w | item), largest first."""
        self._require_fitted()
        log_p, means = self.nb.feature_log_prob_, self._word_means
        seen, out = set(), []
        for word in tokenize(query):
            j = self.word_index.get(word)
            if j is None or word in seen:
                continue
            seen.add(word)
            out.append((word, float(log_p[item, j] - means[j])))
        return sorted(out, key=lambda pair: -pair[1])[:top]

    def _require_fitted(self):
        if self.nb is None or self.items == 0:
            raise ValueError("the Naive Bayes stage has no items; build the index first")

    # -------------------------------------------------------------- saving

    def save(self, path: str | Path) -> None:
        """Arrays only: vocabulary, alpha, item word counts (sparse, CSR parts), class counts."""
        counts, weights = self.state()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    vocabulary=np.array(self.vocabulary, dtype=str),
                    alpha=np.array(self.alpha),
                    data=counts.data,
                    indices=counts.indices,
                    indptr=counts.indptr,
                    shape=np.array(counts.shape),
                    class_counts=weights,
                )
            written = NaiveBayesScorer.load(tmp)  # checked before it replaces the saved state
            if written.vocabulary != self.vocabulary or written.items != self.items:
                raise ValueError(
                    f"{path}: the Naive Bayes state written does not read back as saved; the old file is kept"
                )

    @classmethod
    def load(cls, path: str | Path) -> NaiveBayesScorer:
        with np.load(path, allow_pickle=False) as arrays:
            scorer = cls(arrays["vocabulary"].tolist(), float(arrays["alpha"]))
            counts = sparse.csr_matrix(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
            )
            if counts.shape[0]:
                scorer.fit(counts, arrays["class_counts"])
        return scorer
