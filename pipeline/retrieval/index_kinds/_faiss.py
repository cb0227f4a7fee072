"""What the FAISS kinds share: build once, save beside the vectors, add in place, filtered search."""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from pipeline.retrieval.vector_index import VectorIndex, pad_results


class FaissIndex(VectorIndex):
    """A FAISS index over the vectors (inner product); subclasses build the structure.

    Args:
        vectors: [n, dim] float32.
        threads: FAISS's OpenMP threads (default: FAISS's own choice).
        **params: the kind's parameters, kept in ``index.json``.
    """

    files = ("faiss.index",)

    def __init__(self, vectors, threads: int | None = None, _built=None, **params):
        import faiss

        super().__init__(vectors, **params)
        if threads:
            faiss.omp_set_num_threads(int(threads))
        self.faiss = faiss
        self.index = _built if _built is not None else self._build(np.ascontiguousarray(vectors, np.float32))

    def _build(self, vectors: np.ndarray):
        index = self.build_structure(vectors)
        if len(vectors):
            index.add(vectors)
        return index

    @abc.abstractmethod
    def build_structure(self, vectors: np.ndarray):
        """The empty (trained, where it needs training) FAISS index for ``vectors``."""

    @abc.abstractmethod
    def search_parameters(self):
        """FAISS ``SearchParameters`` for a query (a filter's selector is added to them)."""

    def search(self, queries, k, allowed=None, filters=None):
        queries = np.ascontiguousarray(queries, np.float32)
        k_eff = min(k, len(self))
        if k_eff == 0:
            return pad_results(np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64), k)
        params = self.search_parameters()
        if allowed is not None:
            self._selector = self.faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64))
            params.sel = self._selector
        scores, rows = self.index.search(queries, k_eff, params=params)
        scores = np.where(rows >= 0, scores, -np.inf)
        return pad_results(scores, rows, k)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, np.float32))

    def save(self, folder: Path, metadata=None) -> None:
        self.faiss.write_index(self.index, str(Path(folder) / self.files[0]))

    @classmethod
    def load(cls, folder, vectors, **params):
        import faiss

        return cls(vectors, _built=faiss.read_index(str(Path(folder) / cls.files[0])), **params)

    @classmethod
    def extended(cls, folder, stored, new_vectors, **params):
        # New vectors go into the stored structure in place (an HNSW graph is not rebuilt).
        index = cls.load(folder, stored, **params)
        index.add(new_vectors)
        return index
