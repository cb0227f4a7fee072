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

Changes cost what they change. A fitted scorer is a *base* (the arrays above, built once by
``fit``) and an *overlay*: the full counts of the items changed since (feedback, new items,
removed items). A query is scored on the base, then the overlay's items are scored again from
their own rows and replace their base values. ``with_feedback``, ``with_items`` and
``without_items`` return a new scorer sharing the base, so searches reading the old one are
never disturbed and nothing the size of the model is copied; ``consolidated`` (an index
compaction) folds the overlay into a new base.

The counts are saved as plain arrays (no pickle).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import numpy as np
from scipy import sparse

from pipeline.io_utils import atomic_path

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # graph_ranking.tokenize_graph says the same in RE2
# Log-probabilities are rounded to this many decimals: items whose likelihoods are equal in
# exact arithmetic (same length, same query words) then tie, and are ordered by row, however a
# library sums them (the exported retriever's graph sums in another order than scikit-learn).
LOG_PROBA_DECIMALS = 9
# A word whose posting list holds at least this share of the items ("a", "the") is kept as a
# dense column as well: adding a column is several times cheaper than scattering that many
# postings, and there are few such words.
DENSE_POSTING_SHARE = 1 / 8
DENSE_POSTING_MIN_ITEMS = 4096


LENGTH_TERMS_KEPT = 16


class QueryScores:
    """One query's log p(item | query) over the items, rounded to ``LOG_PROBA_DECIMALS`` where
    read: ``values(rows)``, ``top(count)`` (as a stable sort of the rounded scores would give),
    ``rounded()`` (all of them)."""

    def __init__(self, joint: np.ndarray, log_z: float):
        self.joint, self.log_z = joint, float(log_z)

    def __len__(self) -> int:
        return len(self.joint)

    def values(self, rows) -> np.ndarray:
        return np.round(self.joint[rows] - self.log_z, LOG_PROBA_DECIMALS)

    def rounded(self) -> np.ndarray:
        return self.values(slice(None))

    def top(self, count: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """The rows of the ``count`` best rounded scores (ties by row; removed and disallowed
        rows, -inf, come last), without rounding or sorting all of them: the ``count``-th best
        block maximum bounds the ``count``-th best score from below, and rounding moves a score
        by at most half a unit of the last decimal, so only scores within one unit of that bound
        can reach the top."""
        scores = self.joint if allowed is None else np.where(allowed, self.joint, -np.inf)
        n = len(scores)
        block = min(1024, n // (8 * max(count, 1)))  # several times more blocks than rows wanted
        blocks = -(-n // max(block, 1))
        if block < 16:  # few items: sorting them all is as quick
            candidates = np.arange(n)
        else:
            padded = np.full(blocks * block, -np.inf)
            padded[:n] = scores
            maxima = padded.reshape(blocks, block).max(axis=1)
            bound = np.partition(maxima, blocks - count)[blocks - count]
            if bound == -np.inf:
                candidates = np.arange(n)
            else:
                candidates = np.flatnonzero(scores >= bound - 2 * 10.0**-LOG_PROBA_DECIMALS)
        values = np.round(scores[candidates] - self.log_z, LOG_PROBA_DECIMALS)
        return candidates[np.argsort(-values, kind="stable")[:count]]


def tokenize(text: str) -> list[str]:
    """Lower-cased words, as the text encoders' standardisation splits them (punctuation is a
    separator, inner apostrophes are kept)."""
    return _WORD.findall(str(text).lower())


def _seen(counts: np.ndarray, alpha: float) -> np.ndarray:
    return np.log(counts + alpha) - np.log(alpha)


def _unseen(word_totals: np.ndarray, alpha: float, vocabulary_size: int) -> np.ndarray:
    return np.log(alpha) - np.log(word_totals + alpha * vocabulary_size)


@dataclasses.dataclass(frozen=True)
class _Base:
    """What ``fit`` builds; never changed afterwards (snapshots share it)."""

    counts: sparse.csr_matrix  # [items, base vocabulary] word counts
    class_counts: np.ndarray  # [items] prior weights
    postings: sparse.csr_matrix  # [base vocabulary, items]: seen, word by word
    dense_columns: dict  # word -> seen [items], for the words in many items
    word_totals: np.ndarray  # [items] N(item)
    log_class: np.ndarray  # [items] log class count
    # (vocabulary size, query length) -> that length's per-item terms (``_length_terms``)
    length_terms: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def items(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def build(cls, counts: sparse.csr_matrix, class_counts: np.ndarray, alpha: float) -> _Base:
        seen = counts.copy()
        seen.data = _seen(seen.data, alpha)
        postings = seen.T.tocsr()
        postings.sort_indices()
        items = counts.shape[0]
        lengths = np.diff(postings.indptr)
        dense = {}
        if items >= DENSE_POSTING_MIN_ITEMS:
            for word in np.flatnonzero(lengths >= DENSE_POSTING_SHARE * items):
                column = np.zeros(items)
                start, end = postings.indptr[word], postings.indptr[word + 1]
                column[postings.indices[start:end]] = postings.data[start:end]
                dense[int(word)] = column
        with np.errstate(divide="ignore"):
            log_class = np.log(class_counts)
        return cls(counts, class_counts, postings, dense, np.asarray(counts.sum(axis=1)).ravel(), log_class)


@dataclasses.dataclass(frozen=True)
class _Overlay:
    """The full counts and class count of each item changed since the base was built."""

    rows: dict  # item row -> (word columns, counts)
    classes: dict  # item row -> class count (0: removed)
    items: np.ndarray  # the changed rows, sorted
    seen: sparse.csr_matrix  # [changed items, vocabulary]
    word_totals: np.ndarray
    unseen: np.ndarray
    log_class: np.ndarray

    @classmethod
    def of(cls, rows: dict, classes: dict, vocabulary_size: int, alpha: float) -> _Overlay:
        items = np.array(sorted(rows), np.int64)
        lengths = [len(rows[i][0]) for i in items]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        columns = np.concatenate([rows[i][0] for i in items]) if len(items) else np.zeros(0, np.int64)
        counts = np.concatenate([rows[i][1] for i in items]) if len(items) else np.zeros(0)
        seen = sparse.csr_matrix((_seen(counts, alpha), columns, indptr), shape=(len(items), vocabulary_size))
        totals = np.bincount(np.repeat(np.arange(len(items)), lengths), weights=counts, minlength=len(items))
        with np.errstate(divide="ignore"):
            log_class = np.log(np.array([classes[i] for i in items], np.float64))
        return cls(rows, classes, items, seen, totals, _unseen(totals, alpha, vocabulary_size), log_class)


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
        self._base: _Base | None = None
        self._overlay: _Overlay | None = None
        self._items = 0
        self._total = 0.0  # sum of class counts
        self._unseen: np.ndarray | None = None  # base items' unseen for this vocabulary's size

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
        """Rows, removed ones (class count 0, until ``consolidated`` drops nothing) included."""
        return self._items

    @property
    def changed_items(self) -> int:
        """Items in the overlay: what a query scores a second time until ``consolidated``."""
        return 0 if self._overlay is None else len(self._overlay.items)

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
        counts.sort_indices()
        base = _Base.build(counts, weights, self.alpha)
        self._adopt(self._snapshot(base, _Overlay.of({}, {}, len(self.vocabulary), self.alpha), float(weights.sum())))
        return self

    def _snapshot(self, base: _Base, overlay: _Overlay, total: float, vocabulary=None) -> NaiveBayesScorer:
        twin = NaiveBayesScorer.__new__(NaiveBayesScorer)
        twin.vocabulary = self.vocabulary if vocabulary is None else vocabulary
        twin.word_index = self.word_index if vocabulary is None else {w: i for i, w in enumerate(vocabulary)}
        twin.alpha = self.alpha
        twin._base, twin._overlay, twin._total = base, overlay, total
        twin._items = max(base.items, int(overlay.items[-1]) + 1 if len(overlay.items) else 0)
        same_size = self._base is base and self._unseen is not None and vocabulary is None
        twin._unseen = self._unseen if same_size else _unseen(base.word_totals, self.alpha, len(twin.vocabulary))
        return twin

    def _adopt(self, other: NaiveBayesScorer) -> None:
        # In-place changes (fit, partial_fit, ...) for code that owns its scorer; a service
        # that searches while it writes uses the with_* methods and swaps the whole scorer.
        if other is self:
            return
        self.__dict__.clear()  # a cached _means of the old version goes too
        self.__dict__.update(other.__dict__)

    def clone(self) -> NaiveBayesScorer:
        """An independent copy: the arrays are never changed in place, so they are shared."""
        twin = NaiveBayesScorer.__new__(NaiveBayesScorer)
        twin.__dict__.update(self.__dict__)
        twin.vocabulary, twin.word_index = list(self.vocabulary), dict(self.word_index)
        return twin

    def _row(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        if item in self._overlay.rows:
            return self._overlay.rows[item]
        if item < self._base.items:
            counts = self._base.counts
            start, end = counts.indptr[item], counts.indptr[item + 1]
            return counts.indices[start:end].astype(np.int64), counts.data[start:end]
        return np.zeros(0, np.int64), np.zeros(0)

    def _class_count(self, item: int) -> float:
        if item in self._overlay.classes:
            return self._overlay.classes[item]
        return float(self._base.class_counts[item]) if item < self._base.items else 0.0

    def _changed(self, rows: dict, classes: dict, total: float, vocabulary=None) -> NaiveBayesScorer:
        size = len(self.vocabulary if vocabulary is None else vocabulary)
        merged_rows = {**self._overlay.rows, **rows}
        merged_classes = {**self._overlay.classes, **classes}
        return self._snapshot(self._base, _Overlay.of(merged_rows, merged_classes, size, self.alpha), total, vocabulary)

    def with_feedback(self, queries: list[str], items) -> NaiveBayesScorer:
        """A new scorer in which each query's words are added to its item (feedback: the user
        chose that item for that query), which also raises the item's prior by one. Costs
        O(changed items), whatever the model's size."""
        self._require_fitted()
        items = np.asarray(items, np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.items):
            raise ValueError(f"partial_fit: item rows must be 0 to {self.items - 1}, got {items.tolist()}")
        counts = self.count_matrix(list(queries))
        rows, classes = {}, {}
        for q, item in enumerate(items.tolist()):
            columns, values = rows.get(item) or self._row(item)
            start, end = counts.indptr[q], counts.indptr[q + 1]
            added = sparse.csr_matrix(
                (
                    np.concatenate([values, counts.data[start:end]]),
                    np.concatenate([columns, counts.indices[start:end]]),
                    [0, len(values) + end - start],
                ),
                shape=(1, len(self.vocabulary)),
            )
            added.sum_duplicates()
            rows[item] = (added.indices.astype(np.int64), added.data)
            classes[item] = classes.get(item, self._class_count(item)) + 1.0
        return self._changed(rows, classes, self._total + len(items))

    def partial_fit(self, queries: list[str], items) -> None:
        """``with_feedback`` in place."""
        self._adopt(self.with_feedback(queries, items))

    def with_vocabulary(self, texts: list[str]) -> tuple[NaiveBayesScorer, list[str]]:
        """A new scorer whose vocabulary also has the words of ``texts`` it did not know (zero
        counts so far), and those words."""
        vocabulary, known, new = list(self.vocabulary), set(self.word_index), []
        for text in texts:
            for word in tokenize(text):
                if word not in known:
                    known.add(word)
                    vocabulary.append(word)
                    new.append(word)
        if not new:
            return self, []
        if self._base is None:
            twin = NaiveBayesScorer(vocabulary, self.alpha)
            return twin, new
        overlay = self._overlay
        return self._snapshot(
            self._base, _Overlay.of(overlay.rows, overlay.classes, len(vocabulary), self.alpha), self._total, vocabulary
        ), new

    def extend_vocabulary(self, texts: list[str]) -> list[str]:
        """``with_vocabulary`` in place; returns the new words."""
        twin, new = self.with_vocabulary(texts)
        self._adopt(twin)
        return new

    def with_items(self, item_counts) -> NaiveBayesScorer:
        """A new scorer with items (new classes, class count 1) appended after the last row."""
        counts = sparse.csr_matrix(item_counts, dtype=np.float64)
        if counts.shape[1] != len(self.vocabulary):
            raise ValueError(f"counts have {counts.shape[1]} columns for a vocabulary of {len(self.vocabulary)} words")
        if self._base is None:
            return NaiveBayesScorer(self.vocabulary, self.alpha).fit(counts)
        counts.sum_duplicates()
        counts.eliminate_zeros()
        first = self.items
        rows = {
            first + r: (
                counts.indices[counts.indptr[r] : counts.indptr[r + 1]].astype(np.int64),
                counts.data[counts.indptr[r] : counts.indptr[r + 1]],
            )
            for r in range(counts.shape[0])
        }
        return self._changed(rows, dict.fromkeys(rows, 1.0), self._total + counts.shape[0])

    def append_items(self, item_counts) -> None:
        """``with_items`` in place."""
        self._adopt(self.with_items(item_counts))

    def without_items(self, rows) -> NaiveBayesScorer:
        """A new scorer in which ``rows`` are removed: class count 0, so p(item) = 0 and they
        score -inf, as if they were not there; rows keep their numbers until ``consolidated``
        with a ``keep`` mask drops them."""
        self._require_fitted()
        rows = sorted(set(int(r) for r in rows))
        total = self._total - sum(self._class_count(r) for r in rows)
        return self._changed({r: self._row(r) for r in rows}, dict.fromkeys(rows, 0.0), total)

    def remove_items(self, keep: np.ndarray) -> None:
        """Keeps only the items where ``keep`` is true, in order (rebuilds the base)."""
        self._adopt(self.consolidated(keep))

    def consolidated(self, keep: np.ndarray | None = None) -> NaiveBayesScorer:
        """The same model as one base (no overlay), optionally only the rows where ``keep``."""
        counts, weights = self.state()
        twin = NaiveBayesScorer(list(self.vocabulary), self.alpha)
        if keep is not None:
            rows = np.flatnonzero(keep)
            counts, weights = counts[rows], weights[rows]
        return twin.fit(counts, weights) if counts.shape[0] else twin

    def state(self) -> tuple[sparse.csr_matrix, np.ndarray]:
        """(item word counts, item class counts): everything the model is made of (new arrays)."""
        if self._base is None:
            return sparse.csr_matrix((0, len(self.vocabulary))), np.zeros(0)
        base, overlay, size = self._base, self._overlay, len(self.vocabulary)
        counts = base.counts
        if counts.shape[1] < size:
            counts = sparse.csr_matrix((counts.data, counts.indices, counts.indptr), shape=(counts.shape[0], size))
        keep = np.ones(base.items, bool)
        keep[overlay.items[overlay.items < base.items]] = False
        blank = sparse.diags(keep.astype(np.float64))
        counts = sparse.vstack([blank @ counts, sparse.csr_matrix((self.items - base.items, size))]).tocsr()
        changed = sparse.csr_matrix(
            (
                np.concatenate([overlay.rows[i][1] for i in overlay.items]) if len(overlay.items) else np.zeros(0),
                overlay.seen.indices,
                overlay.seen.indptr,
            ),
            shape=overlay.seen.shape,
        )
        placed = sparse.csr_matrix(
            (np.ones(len(overlay.items)), (overlay.items, np.arange(len(overlay.items)))),
            (self.items, len(overlay.items)),
        )
        counts = (counts + placed @ changed).tocsr()
        counts.eliminate_zeros()
        counts.sort_indices()
        weights = np.zeros(self.items)
        weights[: base.items] = base.class_counts
        weights[overlay.items] = [overlay.classes[i] for i in overlay.items]
        return counts, weights

    def log_terms(self) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
        """(seen [items, vocabulary] sparse, unseen [items], log prior [items]): the split of
        the module docstring, what ``graph_ranking.NaiveBayesGraph`` puts in the graph."""
        self._require_fitted()
        flat = self.consolidated()
        seen = flat._base.postings.T.tocsr()
        seen.sort_indices()  # row-major, columns in order: what a SparseTensor requires
        return seen, flat._unseen, flat._base.log_class - np.log(flat._total)

    # -------------------------------------------------------------- scoring

    def log_proba(self, queries: list[str]) -> np.ndarray:
        """log p(item | query) [len(queries), items], rounded to ``LOG_PROBA_DECIMALS``. A
        query with no known word gets the prior (every item's log p(item))."""
        queries = list(queries)
        out = np.empty((len(queries), self.items))
        for q, scores in enumerate(self.iter_scores(queries)):
            out[q] = scores.rounded()
        return out

    def iter_scores(self, queries: list[str]):
        """One ``QueryScores`` per query: a batch of queries over many items never holds more
        than one row, and only the values read are rounded."""
        self._require_fitted()
        counts = self.count_matrix(list(queries))
        for q in range(counts.shape[0]):
            start, end = counts.indptr[q], counts.indptr[q + 1]
            yield self._query_scores(counts.indices[start:end], counts.data[start:end], counts[q])

    def _query_scores(self, words: np.ndarray, times: np.ndarray, query_row) -> QueryScores:
        base, overlay = self._base, self._overlay
        length = float(times.sum())
        joint = np.empty(self.items)
        head = joint[: base.items]
        head[:] = self._length_terms(length)
        postings = base.postings
        for word, n in zip(words.tolist(), times.tolist()):
            if word >= postings.shape[0]:
                continue  # a word added since the base was built: only overlay items have it
            column = base.dense_columns.get(word)
            if column is not None:
                head += n * column if n != 1 else column
                continue
            start, end = postings.indptr[word], postings.indptr[word + 1]
            head[postings.indices[start:end]] += n * postings.data[start:end]
        if len(overlay.items):
            joint[overlay.items] = (
                np.asarray((overlay.seen @ query_row.T).todense()).ravel() + length * overlay.unseen + overlay.log_class
            )
        top = joint.max()
        shifted = np.subtract(joint, top)
        np.exp(shifted, out=shifted)
        # The prior's log total is the same for every item: it cancels in the normalisation.
        return QueryScores(joint, top + np.log(shifted.sum()))

    def _length_terms(self, length: float) -> np.ndarray:
        """|q| unseen + log class count over the base's items, for a query of ``length`` known
        words: the same for every query of that length, so it is kept (a few lengths, per base
        and vocabulary size)."""
        key = (len(self.vocabulary), length)
        cache = self._base.length_terms
        terms = cache.get(key)
        if terms is None:
            terms = length * self._unseen + self._base.log_class
            if len(cache) >= LENGTH_TERMS_KEPT:
                cache.pop(next(iter(cache)), None)
            cache[key] = terms
        return terms

    def explain(self, query: str, item: int, top: int = 3) -> list[tuple[str, float]]:
        """The query words that weigh most for ``item``: each known word's contribution
        log p(w | item) - mean over items of log p(w | item), largest first."""
        self._require_fitted()
        seen_means, unseen_mean = self._means
        columns, values = self._row(item)
        of_item = dict(zip(columns.tolist(), _seen(values, self.alpha).tolist()))
        unseen_item = float(np.log(self.alpha) - np.log(values.sum() + self.alpha * len(self.vocabulary)))
        seen_words, out = set(), []
        for word in tokenize(query):
            j = self.word_index.get(word)
            if j is None or word in seen_words:
                continue
            seen_words.add(word)
            log_p = of_item.get(j, 0.0) + unseen_item
            out.append((word, float(log_p - (seen_means[j] + unseen_mean))))
        return sorted(out, key=lambda pair: -pair[1])[:top]

    @functools.cached_property
    def _means(self) -> tuple[np.ndarray, float]:
        """Per word the mean over the items (removed ones aside) of seen, and the mean unseen:
        O(vocabulary + changed items) once per version, as the scorer never changes in place."""
        base, overlay, size = self._base, self._overlay, len(self.vocabulary)
        sums = np.zeros(size)
        sums[: base.postings.shape[0]] = np.asarray(base.postings.sum(axis=1)).ravel()
        unseen_sum = float(self._unseen.sum())
        live = base.items
        in_base = overlay.items[overlay.items < base.items]
        if len(in_base):
            old = base.counts[in_base]
            old.data = _seen(old.data, self.alpha)
            sums[: old.shape[1]] -= np.asarray(old.sum(axis=0)).ravel()
            unseen_sum -= float(self._unseen[in_base].sum())
            live -= len(in_base)
        alive = np.array([overlay.classes[i] > 0 for i in overlay.items], bool)
        if alive.any():
            sums += np.asarray(overlay.seen[np.flatnonzero(alive)].sum(axis=0)).ravel()
            unseen_sum += float(overlay.unseen[alive].sum())
            live += int(alive.sum())
        live = max(live, 1)
        return sums / live, unseen_sum / live

    def _require_fitted(self):
        if self._base is None or self.items == 0:
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
