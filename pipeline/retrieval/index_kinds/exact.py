"""``exact``: brute-force top-k, in row chunks (a memory-mapped matrix is scanned piece by piece)."""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.vector_index import VectorIndex, pad_results, register_index_kind, top_k


@register_index_kind
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
    files = ()

    def __init__(self, vectors: np.ndarray, chunk_rows: int = 262_144, **params):
        super().__init__(vectors, chunk_rows=chunk_rows, **params)
        self.chunk_rows = int(chunk_rows)

    def search(self, queries, k, allowed=None, filters=None):
        queries = np.ascontiguousarray(queries, np.float32)
        best_scores = np.full((len(queries), 0), -np.inf, np.float32)
        best_rows = np.zeros((len(queries), 0), np.int64)
        for start in range(0, len(self), self.chunk_rows):
            block = self.vectors[start : start + self.chunk_rows]
            # [rows, dim] @ [dim, q]: one query is a matrix-vector product, memory-bound.
            scores = queries @ block.T if len(queries) > 1 else (block @ queries[0])[None, :]
            if allowed is not None:
                scores = np.where(allowed[start : start + len(block)], scores, -np.inf)
            s, r = top_k(scores, k)
            if start == 0:
                best_scores, best_rows = s, r
                continue
            merged_scores = np.concatenate([best_scores, s], axis=1)
            merged_rows = np.concatenate([best_rows, r + start], axis=1)
            top_s, at = top_k(merged_scores, k)
            best_scores, best_rows = top_s, np.take_along_axis(merged_rows, at, axis=1)
        return pad_results(best_scores, best_rows, k)
