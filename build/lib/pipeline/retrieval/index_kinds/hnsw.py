"""``hnsw``: a FAISS HNSW graph (approximate; no training, adds in place)."""

from __future__ import annotations

from pipeline.retrieval.index_kinds._faiss import FaissIndex
from pipeline.retrieval.vector_index import register_index_kind


@register_index_kind
class HnswIndex(FaissIndex):
    """HNSW graph over inner products.

    Args:
        vectors: [n, dim] float32.
        m: links per node.
        ef_construction: candidate list while building.
        ef_search: candidate list while searching (recall against speed).

    Example:
        >>> index = HnswIndex(vectors)               # doctest: +SKIP
        >>> scores, rows = index.search(queries, k=10)  # doctest: +SKIP
    """

    kind = "hnsw"

    def __init__(self, vectors, m: int = 32, ef_construction: int = 80, ef_search: int = 64, **params):
        super().__init__(vectors, m=m, ef_construction=ef_construction, ef_search=ef_search, **params)

    def build_structure(self, vectors):
        index = self.faiss.IndexHNSWFlat(vectors.shape[1], self.params["m"], self.faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.params["ef_construction"]
        return index

    def search_parameters(self):
        params = self.faiss.SearchParametersHNSW()
        params.efSearch = self.params["ef_search"]
        return params
