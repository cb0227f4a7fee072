"""``ivfpq``: a FAISS inverted file with product-quantised codes (compressed; needs 10,000+ vectors)."""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.index_kinds._faiss import FaissIndex
from pipeline.retrieval.vector_index import register_index_kind

MIN_VECTORS = 10_000


def default_nlist(n: int) -> int:
    """Inverted-file cells for ``n`` vectors: about 4·sqrt(n), with at least 39 training vectors per cell."""
    return max(1, int(min(4 * np.sqrt(n), n // 39)))


@register_index_kind
class IvfPqIndex(FaissIndex):
    """IVF-PQ over inner products: ``nlist`` cells, ``pq_m`` sub-quantisers of 8 bits.

    Args:
        vectors: [n, dim] float32, at least 10,000 (the codebooks are trained on them).
        nlist: cells (default about 4·sqrt(n), at least 39 training vectors per cell).
        pq_m: sub-quantisers (default the largest of 32, 16, 8, ... that divides dim).
        nprobe: cells visited per query.
    """

    kind = "ivfpq"

    def __init__(self, vectors, nlist: int | None = None, pq_m: int | None = None, nprobe: int = 16, **params):
        super().__init__(vectors, nlist=nlist, pq_m=pq_m, nprobe=nprobe, **params)

    def build_structure(self, vectors):
        n, dim = vectors.shape
        if n < MIN_VECTORS:
            raise ValueError(
                f"an IVF-PQ index needs at least {MIN_VECTORS:,} vectors to train its codebooks "
                f"(this collection has {n}); use exact or hnsw"
            )
        nlist = self.params["nlist"] or default_nlist(n)
        pq_m = self.params["pq_m"] or next(m for m in (32, 16, 8, 4, 2, 1) if dim % m == 0)
        quantizer = self.faiss.IndexFlatIP(dim)
        index = self.faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8, self.faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)]
        index.train(sample)
        index._quantizer = quantizer  # keep it alive as long as the index
        return index

    def search_parameters(self):
        params = self.faiss.SearchParametersIVF()
        params.nprobe = self.params["nprobe"]
        return params
