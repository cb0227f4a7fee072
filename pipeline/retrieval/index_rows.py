"""The rows of an index version: its base's rows, then the rows appended since, minus removed ones.

A version of an index is its base (memory-mapped vectors, metadata read once) plus a ``Tail``
of appended rows and a set of removed rows. Versions made one after another share the base and
the tail's buffers: a tail grows in place (its buffers double when full, so an append costs
O(rows appended) on average), and a version only ever reads its own first ``count`` tail rows,
which later appends never touch. So a new version costs O(what changed), and a search that
still holds the previous version reads it undisturbed.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pandas as pd


@dataclasses.dataclass
class _Buffers:
    """A tail's storage; ``filled`` rows hold data (only the newest version may append)."""

    vectors: np.ndarray  # [capacity, dim] float32
    columns: dict[str, np.ndarray]  # column -> [capacity] object
    filled: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


@dataclasses.dataclass(frozen=True)
class Tail:
    """Rows appended after a base of ``first_row`` rows: vectors, metadata columns and the item
    id of each (``ids``: item id → row, over the whole index)."""

    first_row: int
    buffers: _Buffers
    count: int
    ids: dict

    @classmethod
    def empty(cls, first_row: int, dim: int, columns: tuple[str, ...]) -> Tail:
        buffers = _Buffers(np.zeros((0, dim), np.float32), {c: np.empty(0, object) for c in columns})
        return cls(first_row, buffers, 0, {})

    @property
    def vectors(self) -> np.ndarray:
        return self.buffers.vectors[: self.count]

    def column(self, name: str) -> np.ndarray:
        return self.buffers.columns[name][: self.count]

    def appended(self, vectors: np.ndarray, metadata: pd.DataFrame) -> Tail:
        """This tail and ``vectors`` / ``metadata`` (the index's columns) after it."""
        added = len(vectors)
        need = self.count + added
        buffers = self.buffers
        with buffers.lock:
            if buffers.filled != self.count or need > len(buffers.vectors):
                # Full, or another version already appended after this one: new buffers, this
                # version's rows copied (O(tail), halved by the doubling on average).
                capacity = max(need, 2 * len(buffers.vectors), 64)
                vectors_buffer = np.zeros((capacity, buffers.vectors.shape[1]), np.float32)
                vectors_buffer[: self.count] = buffers.vectors[: self.count]
                columns = {}
                for name, values in buffers.columns.items():
                    columns[name] = np.empty(capacity, object)
                    columns[name][: self.count] = values[: self.count]
                buffers = _Buffers(vectors_buffer, columns, self.count)
            buffers.vectors[self.count : need] = vectors
            for name, values in buffers.columns.items():
                values[self.count : need] = metadata[name].to_numpy(dtype=object)
            buffers.filled = need
        ids = dict(self.ids)
        first = self.first_row + self.count
        ids.update({item: first + i for i, item in enumerate(metadata["item_id"])})
        return Tail(self.first_row, buffers, need, ids)


class RowVectors:
    """The vectors of every row (base, then tail) as one read-only [rows, dim] array-like:
    ``vectors[rows]`` gathers from both without copying the base."""

    def __init__(self, base: np.ndarray, tail: Tail):
        self.base, self.tail = base, tail
        self.shape = (len(base) + tail.count, base.shape[1])
        self.dtype, self.ndim = np.dtype(np.float32), 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows)
        if rows.ndim == 0:
            return self[rows[None]][0]
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        n = len(self.base)
        out = np.empty((len(rows), self.shape[1]), np.float32)
        in_base = rows < n
        out[in_base] = self.base[rows[in_base]]
        out[~in_base] = self.tail.vectors[rows[~in_base] - n]
        return out

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate([np.asarray(self.base), self.tail.vectors])
        return whole if dtype is None else whole.astype(dtype)


class RowColumn:
    """One metadata column over every row (base, then tail): ``column[row]`` and iteration."""

    def __init__(self, base: np.ndarray, tail: np.ndarray):
        self.base, self.tail = base, tail

    def __len__(self) -> int:
        return len(self.base) + len(self.tail)

    def __getitem__(self, row: int):
        row = int(row)
        return self.base[row] if row < len(self.base) else self.tail[row - len(self.base)]

    def __iter__(self):
        yield from self.base
        yield from self.tail

    def to_numpy(self) -> np.ndarray:
        return np.concatenate([self.base, self.tail])


class RowLookup:
    """Item id → row over a base lookup, the tail's ids and the removed rows: ``get``, ``in``,
    ``[]`` as a dict, without building one dict for the whole index per version."""

    def __init__(self, base: dict, tail: dict, removed: frozenset):
        self.base, self.tail, self.removed = base, tail, removed

    def get(self, item_id, default=None):
        row = self.tail.get(item_id)
        if row is not None and row not in self.removed:
            return row
        row = self.base.get(item_id)
        return row if row is not None and row not in self.removed else default

    def __contains__(self, item_id) -> bool:
        return self.get(item_id) is not None

    def __getitem__(self, item_id) -> int:
        row = self.get(item_id)
        if row is None:
            raise KeyError(item_id)
        return row
