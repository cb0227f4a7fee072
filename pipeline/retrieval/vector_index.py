"""Top-k search over unit vectors by inner product: one interface, implementations by name.

- ``exact``: a matrix product over the stored vectors, in row chunks, so a memory-mapped
  matrix larger than memory is scanned piece by piece; exact results.
- ``hnsw`` and ``ivfpq``: FAISS (``faiss-cpu``) graph and compressed inverted-file indexes
  for large collections; approximate.

Every implementation answers ``search(queries, k, allowed)`` with (scores, rows), both
[queries, k], best first; where fewer than k rows qualify (a filter), the rest are row -1 and
score -inf.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np


class VectorIndex(abc.ABC):
    """Top-k inner-product search over the rows of a [n, dim] float32 matrix."""

    kind: str = ""

    def __init__(self, vectors: np.ndarray, **params):
        self.vectors = vectors
        self.params = params

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``allowed``: optional bool mask over rows (a metadata filter)."""

    def save(self, folder: Path) -> None:
        """Writes whatever the implementation keeps beside the vectors (nothing for exact)."""

    @classmethod
    def load(cls, folder: Path, vectors: np.ndarray, **params) -> "VectorIndex":
        return cls(vectors, **params)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores`` [q, n], sorted best first."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), np.float32), np.zeros((scores.shape[0], 0), np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)


def _pad(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.where(np.isfinite(scores), rows, -1)
    if scores.shape[1] < k:
        extra = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, extra)), constant_values=-1)
    return scores.astype(np.float32), rows.astype(np.int64)


class ExactIndex(VectorIndex):
    """Brute force: scores every row, keeps the top k. Exact, no build step.

    Args:
        vectors: [n, dim] float32, in memory or memory-mapped (``np.load(mmap_mode="r")``).
        chunk_rows: rows scored at a time (bounds the memory a search touches at once).

    Example:
        >>> index = ExactIndex(np.eye(3, dtype="float32"))
        >>> index.search(np.array([[0, 1, 0]], "float32"), k=1)[1]
        array([[1]])
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray, chunk_rows: int = 262_144, **params):
        super().__init__(vectors, chunk_rows=chunk_rows, **params)
        self.chunk_rows = int(chunk_rows)

    def search(self, queries, k, allowed=None):
        queries = np.ascontiguousarray(queries, np.float32)
        best_scores = np.full((len(queries), 0), -np.inf, np.float32)
        best_rows = np.zeros((len(queries), 0), np.int64)
        for start in range(0, len(self), self.chunk_rows):
            block = self.vectors[start : start + self.chunk_rows]
            # [rows, dim] @ [dim, q]: one query is a matrix-vector product, memory-bound.
            scores = queries @ block.T if len(queries) > 1 else (block @ queries[0])[None, :]
            if allowed is not None:
                scores = np.where(allowed[start : start + len(block)], scores, -np.inf)
            s, r = _top_k(scores, k)
            if start == 0:
                best_scores, best_rows = s, r
                continue
            merged_scores = np.concatenate([best_scores, s], axis=1)
            merged_rows = np.concatenate([best_rows, r + start], axis=1)
            top_s, at = _top_k(merged_scores, k)
            best_scores, best_rows = top_s, np.take_along_axis(merged_rows, at, axis=1)
        return _pad(best_scores, best_rows, k)


class FaissIndex(VectorIndex):
    """A FAISS index over the same vectors (inner product), built once and saved beside them.

    Args:
        vectors: [n, dim] float32.
        kind: ``hnsw`` (graph; ``m`` links per node, ``ef_construction``, ``ef_search``) or
            ``ivfpq`` (``nlist`` cells, ``pq_m`` sub-quantisers of 8 bits, ``nprobe``).
    """

    FILE = "faiss.index"

    def __init__(self, vectors, kind: str = "hnsw", m: int = 32, ef_construction: int = 80, ef_search: int = 64,
                 nlist: int | None = None, pq_m: int | None = None, nprobe: int = 16, threads: int | None = None, _built=None, **params):
        import faiss

        super().__init__(vectors, kind=kind, m=m, ef_construction=ef_construction, ef_search=ef_search, nlist=nlist, pq_m=pq_m, nprobe=nprobe, **params)
        self.kind = kind
        if threads:
            faiss.omp_set_num_threads(int(threads))
        self.faiss = faiss
        self.index = _built if _built is not None else self._build(np.ascontiguousarray(vectors, np.float32))

    def _build(self, vectors):
        faiss, p, (n, dim) = self.faiss, self.params, self.vectors.shape
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, p["m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = p["ef_construction"]
        elif self.kind == "ivfpq":
            if n < 10_000:
                raise ValueError(f"an IVF-PQ index needs at least 10,000 vectors to train its codebooks (this collection has {n}); use exact or hnsw")
            nlist = p["nlist"] or int(min(4 * np.sqrt(n), n // 39))
            pq_m = p["pq_m"] or next(m for m in (32, 16, 8, 4, 2, 1) if dim % m == 0)
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
            sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)]
            index.train(sample)
            index._quantizer = quantizer  # keep it alive as long as the index
        else:
            raise ValueError(f"unknown FAISS index kind {self.kind!r} (hnsw, ivfpq)")
        if n:
            index.add(vectors)
        return index

    def _parameters(self, allowed):
        faiss, p = self.faiss, self.params
        params = faiss.SearchParametersHNSW() if self.kind == "hnsw" else faiss.SearchParametersIVF()
        if self.kind == "hnsw":
            params.efSearch = p["ef_search"]
        else:
            params.nprobe = p["nprobe"]
        if allowed is not None:
            self._selector = faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64))
            params.sel = self._selector
        return params

    def search(self, queries, k, allowed=None):
        queries = np.ascontiguousarray(queries, np.float32)
        k_eff = min(k, len(self))
        if k_eff == 0:
            return _pad(np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64), k)
        scores, rows = self.index.search(queries, k_eff, params=self._parameters(allowed))
        scores = np.where(rows >= 0, scores, -np.inf)
        return _pad(scores, rows, k)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, np.float32))

    def save(self, folder: Path) -> None:
        self.faiss.write_index(self.index, str(Path(folder) / self.FILE))

    @classmethod
    def load(cls, folder, vectors, **params):
        import faiss

        return cls(vectors, _built=faiss.read_index(str(Path(folder) / cls.FILE)), **params)


INDEX_KINDS = ("exact", "hnsw", "ivfpq")


def build_vector_index(kind: str, vectors: np.ndarray, **params) -> VectorIndex:
    """The implementation named ``kind`` over ``vectors``."""
    if kind == "exact":
        return ExactIndex(vectors, **params)
    if kind in ("hnsw", "ivfpq"):
        return FaissIndex(vectors, kind=kind, **params)
    raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")


def load_vector_index(kind: str, folder: Path, vectors: np.ndarray, **params) -> VectorIndex:
    if kind == "exact":
        return ExactIndex.load(folder, vectors, **params)
    if kind in ("hnsw", "ivfpq"):
        return FaissIndex.load(folder, vectors, kind=kind, **params)
    raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
