"""The Naive Bayes stage: every indexed item is a class, its words are the features.

Ranks items by query likelihood exactly as scikit-learn's ``MultinomialNB`` does (that class
stays the definition: the tests fit it on the same counts and compare):

    log p(item | query) = sum_w n(w, query) * log p(w | item) + log p(item) - log Z(query)
    p(w | item) = (count(w, item) + alpha) / (N(item) + alpha * |V|),  N(item) = sum_v count(v, item)
    p(item) = class_count(item) / sum of class counts

without its dense [items, vocabulary] arrays: log p(w | item) splits into

    seen[item, w] = log(count(w, item) + alpha) - log(alpha)       zero where count = 0: sparse
    unseen[item]  = log(alpha) - log(N(item) + alpha * |V|)          one value per item

so a query is scored from the posting lists of its words plus one term per item, and memory is
O(non-zero counts). ``log Z`` (the same for every item) does not change the ranking. The
exported retriever (``graph_ranking.NaiveBayesGraph``) computes the same split in the graph.
The counts are saved as plain arrays (no pickle), and the model learns online: ``partial_fit``
adds a (query, item) pair's words to that item.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.special import logsumexp

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
    """Multinomial Naive Bayes over items: fit on the items' word counts, scored on the query's.

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
        self._counts: sparse.csr_matrix | None = None  # [items, vocabulary] word counts
        self._class_counts: np.ndarray | None = None  # [items] prior weights
        # Derived in _fitted, when the model changes, so that scoring only reads: searches run
        # in many threads at once and must not write to a scorer that a writer may be copying.
        self._postings: sparse.csr_matrix | None = None  # [vocabulary, items]: seen, word by word
        self._unseen: np.ndarray | None = None
        self._log_prior: np.ndarray | None = None
        self._seen_means: np.ndarray | None = None  # per word, the mean over items of seen

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
        return 0 if self._counts is None else self._counts.shape[0]

    def fit(self, item_counts, class_counts=None) -> NaiveBayesScorer:
        """One row of (possibly fractional) word counts per item; ``class_counts`` (default 1
        each) are the items' prior weights."""
        counts = sparse.csr_matrix(item_counts, dtype=np.float64, copy=True)
        if counts.shape[1] != len(self.vocabulary):
            raise ValueError(f"counts have {counts.shape[1]} columns for a vocabulary of {len(self.vocabulary)} words")
        weights = np.ones(counts.shape[0]) if class_counts is None else np.array(class_counts, np.float64)
        if weights.shape != (counts.shape[0],):
            raise ValueError(f"{weights.size} class counts for {counts.shape[0]} items")
        counts.sum_duplicates()
        counts.eliminate_zeros()
        self._counts, self._class_counts = counts, weights
        self._fitted()
        return self

    def _fitted(self) -> None:
        counts, alpha, items = self._counts, self.alpha, self.items
        seen = counts.copy()
        seen.data = np.log(seen.data + alpha) - np.log(alpha)
        self._postings = seen.T.tocsr()
        words = np.asarray(counts.sum(axis=1)).ravel()
        self._unseen = np.log(alpha) - np.log(words + alpha * len(self.vocabulary))
        with np.errstate(divide="ignore"):
            self._log_prior = np.log(self._class_counts) - np.log(self._class_counts.sum()) if items else np.zeros(0)
        self._seen_means = np.asarray(seen.sum(axis=0)).ravel() / max(items, 1)

    def clone(self) -> NaiveBayesScorer:
        """An independent copy (its own arrays), for a writer to change while searches read this one."""
        twin = NaiveBayesScorer(list(self.vocabulary), self.alpha)
        return twin.fit(self._counts, self._class_counts) if self.items else twin  # fit copies

    def partial_fit(self, queries: list[str], items) -> None:
        """Online learning: each query's words are added to its item (feedback: the user chose
        that item for that query), which also raises the item's prior by one."""
        self._require_fitted()
        items = np.asarray(items, np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.items):
            raise ValueError(f"partial_fit: item rows must be 0 to {self.items - 1}, got {items.tolist()}")
        queries = list(queries)
        owner = sparse.csr_matrix((np.ones(len(queries)), (items, np.arange(len(queries)))), (self.items, len(queries)))
        self.fit(
            self._counts + owner @ self.count_matrix(queries),
            self._class_counts + np.bincount(items, minlength=self.items),
        )

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
        """(item word counts, item class counts): everything the model is made of (copies)."""
        if self._counts is None:
            return sparse.csr_matrix((0, len(self.vocabulary))), np.zeros(0)
        return self._counts.copy(), self._class_counts.copy()

    def log_terms(self) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
        """(seen [items, vocabulary] sparse, unseen [items], log prior [items]): the split of
        the module docstring, what ``graph_ranking.NaiveBayesGraph`` puts in the graph."""
        self._require_fitted()
        seen = self._postings.T.tocsr()
        seen.sort_indices()  # row-major, columns in order: what a SparseTensor requires
        return seen, self._unseen, self._log_prior

    # -------------------------------------------------------------- scoring

    def log_proba(self, queries: list[str]) -> np.ndarray:
        """log p(item | query) [len(queries), items], rounded to ``LOG_PROBA_DECIMALS``. A
        query with no known word gets the prior (every item's log p(item))."""
        self._require_fitted()
        counts = self.count_matrix(list(queries))
        joint = (counts @ self._postings).toarray()  # the posting lists of the query's words only
        joint += np.asarray(counts.sum(axis=1)) * self._unseen[None, :] + self._log_prior[None, :]
        return np.round(joint - logsumexp(joint, axis=1, keepdims=True), LOG_PROBA_DECIMALS)

    def explain(self, query: str, item: int, top: int = 3) -> list[tuple[str, float]]:
        """The query words that weigh most for ``item``: each known word's contribution
        log p(w | item) - mean over items of log p(w | item), largest first."""
        self._require_fitted()
        unseen_mean = float(self._unseen.mean())
        seen, out = set(), []
        for word in tokenize(query):
            j = self.word_index.get(word)
            if j is None or word in seen:
                continue
            seen.add(word)
            log_p = self._postings[j, item] + self._unseen[item]
            out.append((word, float(log_p - (self._seen_means[j] + unseen_mean))))
        return sorted(out, key=lambda pair: -pair[1])[:top]

    def _require_fitted(self):
        if self.items == 0:
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
