"""Decision-level fusion of the dense and the Naive Bayes rankings.

Both act on the same candidates (columns) for each query (row):

- ``weighted``: each score list is z-normalised per query over the candidates, then
  ``weight * dense + (1 - weight) * nb``;
- ``rrf``: reciprocal rank fusion, ``weight / (k0 + rank_dense) + (1 - weight) / (k0 + rank_nb)``
  with ranks from 1 (Cormack et al. 2009, k0 = 60).

``weight = 1`` is the dense ranking alone, ``weight = 0`` the Naive Bayes ranking alone.
"""

from __future__ import annotations

import numpy as np

FUSIONS = ("dense", "nb", "weighted", "rrf")
RRF_K0 = 60.0


def zscore(scores: np.ndarray) -> np.ndarray:
    """Per row: (x - mean) / std over the finite entries; a constant row becomes 0."""
    finite = np.isfinite(scores)
    filled = np.where(finite, scores, np.nan)
    mean = np.nanmean(filled, axis=1, keepdims=True)
    std = np.nanstd(filled, axis=1, keepdims=True)
    z = (filled - mean) / np.where(std > 0, std, 1.0)
    return np.where(finite, z, -np.inf)


def ranks(scores: np.ndarray) -> np.ndarray:
    """Per row, the rank of each column (1 = highest score; ties broken by column order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return out


def fuse(
    dense: np.ndarray, nb: np.ndarray, method: str = "weighted", weight: float = 0.5, k0: float = RRF_K0
) -> np.ndarray:
    """Fused scores [queries, candidates] from the dense and NB scores of the same candidates."""
    if method == "dense":
        return dense
    if method == "nb":
        return nb
    if method == "weighted":
        return weight * zscore(dense) + (1.0 - weight) * zscore(nb)
    if method == "rrf":
        return weight / (k0 + ranks(dense)) + (1.0 - weight) / (k0 + ranks(nb))
    raise ValueError(f"unknown fusion {method!r}; choose one of {', '.join(FUSIONS)}")
