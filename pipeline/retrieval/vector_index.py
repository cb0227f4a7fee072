"""Top-k search over unit vectors by inner product: one interface, implementations by name.

Each kind is one module in ``pipeline/retrieval/index_kinds/`` that registers its class with
``@register_index_kind``; the folder is scanned the first time a kind is looked up, so adding
a kind is one file (and its test). The kinds shipped:

- ``exact``: a matrix product over the stored vectors, in row chunks; exact results.
- ``hnsw`` and ``ivfpq``: FAISS (``faiss-cpu``) graph and compressed inverted-file indexes
  for large collections; approximate.
- ``milvus``: a Milvus collection (Milvus Lite in the index folder, or a server), with the
  metadata filters run inside Milvus.

Every implementation answers ``search(queries, k, allowed)`` with (scores, rows), both
[queries, k], best first; where fewer than k rows qualify (a filter), the rest are row -1 and
score -inf.
"""

from __future__ import annotations

import abc
import functools
import importlib
import pkgutil
from pathlib import Path

import numpy as np


class BackendUnavailable(RuntimeError):
    """The service an index kind searches in (a Milvus server) cannot be reached or failed;
    the message names it and says what to do."""


class VectorIndex(abc.ABC):
    """Top-k inner-product search over the rows of a [n, dim] float32 matrix.

    A kind declares:
        kind: its name (``index --kind``).
        supports_add / supports_remove: whether ``index add`` / ``index remove`` work on it.
        files: what it writes beside the vectors (named when a stored index is damaged).
    """

    kind: str = ""
    supports_add: bool = True
    supports_remove: bool = True
    files: tuple[str, ...] = ()
    # True: the structure takes added and removed rows in place (``insert``, ``delete``), so a
    # search asks it for every row; False: it holds the base's rows, and an index's added rows
    # are scored beside it until a compaction builds it again.
    live_changes: bool = False

    def __init__(self, vectors: np.ndarray, **params):
        self.vectors = vectors
        self.params = params

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @abc.abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, filters: dict[str, str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``allowed``: optional bool mask over rows (a metadata filter); ``filters``: the same
        filter as ``column=value`` pairs, for a kind that evaluates it itself."""

    def save(self, folder: Path, metadata=None) -> None:
        """Writes whatever the implementation keeps beside the vectors (nothing by default);
        ``metadata`` (the index's metadata frame) is there for a kind that filters on it."""
        return None

    def health(self) -> str | None:
        """None when the index can be searched, else what is wrong (the service's /healthz)."""
        return None

    def close(self) -> None:
        """Releases connections (before the folder is renamed, or when the index is replaced)."""
        return None

    def moved(self, folder: Path) -> None:
        """The folder this index was saved in now lives at ``folder`` (a version was published)."""
        return None

    def insert(self, first_row: int, vectors: np.ndarray, metadata) -> None:
        """Rows ``first_row``... (``vectors``, ``metadata``) added in place; idempotent (a
        change is applied again when an index is opened). Only for ``live_changes`` kinds."""
        raise NotImplementedError(f"index kind {self.kind} does not change in place")

    def delete(self, rows: np.ndarray) -> None:
        """``rows`` removed in place; idempotent. Only for ``live_changes`` kinds."""
        raise NotImplementedError(f"index kind {self.kind} does not change in place")

    def verify(self, rows: int) -> None:
        """Raises when the structure does not hold ``rows`` rows (checked once an index's
        changes are replayed); by default the base's rows are all it holds, as checked at load."""
        return None

    @classmethod
    def preflight(cls, params: dict) -> None:
        """Raises (``BackendUnavailable``, ``ValueError``) before any work when ``params`` cannot
        give a usable index: a build does not embed a whole collection to fail at the end."""
        return None

    @classmethod
    def dropped(cls, folder: Path, params: dict) -> None:
        """The version stored in ``folder`` with ``params`` was replaced by a new one."""
        return None

    @classmethod
    def load(cls, folder: Path, vectors: np.ndarray, **params) -> VectorIndex:
        return cls(vectors, **params)

    @classmethod
    def extended(cls, folder: Path, stored: np.ndarray, new_vectors: np.ndarray, **params) -> VectorIndex:
        """The index over ``stored`` (old rows then ``new_vectors``); by default built afresh."""
        return cls(stored, **params)


_KINDS: dict[str, type[VectorIndex]] = {}


def register_index_kind(cls: type[VectorIndex]) -> type[VectorIndex]:
    """Class decorator: makes ``cls`` available as ``index --kind <cls.kind>``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} must set `kind` to register")
    if _KINDS.get(cls.kind, cls) is not cls:
        raise ValueError(f"index kind {cls.kind!r} is registered twice ({_KINDS[cls.kind].__name__}, {cls.__name__})")
    _KINDS[cls.kind] = cls
    return cls


@functools.cache
def _import_kind_modules() -> None:
    """Imports every module of ``index_kinds/`` once: each registers its kind."""
    from pipeline.retrieval import index_kinds as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def index_kinds() -> dict[str, type[VectorIndex]]:
    """Every registered kind by name (``index_kinds/`` is scanned on first use)."""
    _import_kind_modules()
    return dict(sorted(_KINDS.items()))


def index_kind(kind: str) -> type[VectorIndex]:
    kinds = index_kinds()
    if kind not in kinds:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(kinds)}")
    return kinds[kind]


def build_vector_index(kind: str, vectors: np.ndarray, **params) -> VectorIndex:
    """The implementation named ``kind`` over ``vectors``."""
    return index_kind(kind)(vectors, **params)


def load_vector_index(kind: str, folder: Path, vectors: np.ndarray, **params) -> VectorIndex:
    return index_kind(kind).load(folder, vectors, **params)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores`` [q, n], sorted best first; equal scores in
    column order (``np.argsort(-scores, kind="stable")[:, :k]``), so items with the same vector
    are answered the same way whatever else the index holds."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), np.float32), np.zeros((scores.shape[0], 0), np.int64)
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    )
    part_scores = np.take_along_axis(scores, part, axis=1)
    if k < scores.shape[1]:
        kth = part_scores.min(axis=1)
        for q in np.flatnonzero((scores == kth[:, None]).sum(axis=1) > (part_scores == kth[:, None]).sum(axis=1)):
            # More columns tie with the k-th score than the partition kept: keep the first ones.
            above = part[q][part_scores[q] > kth[q]]
            tied = np.flatnonzero(scores[q] == kth[q])[: k - len(above)]
            part[q] = np.concatenate([above, tied])
            part_scores[q] = scores[q][part[q]]
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)


def pad_results(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.where(np.isfinite(scores), rows, -1)
    if scores.shape[1] < k:
        extra = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, extra)), constant_values=-1)
    return scores.astype(np.float32), rows.astype(np.int64)
