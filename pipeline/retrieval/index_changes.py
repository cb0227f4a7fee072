"""An index's changes since its base was written: one small file per change, and a manifest.

An index folder holds a *base* (``index_store``: vectors, metadata, Naive Bayes counts, the
vector structure), written whole by a build or a ``compact``, and the changes made since:

    changes/000001.add.npz       items appended (vectors, metadata, word counts, new words)
    changes/000002.remove.npz    item ids removed (tombstones: the rows stay until a compact)
    changes/000003.feedback.npz  (query, item id) pairs the Naive Bayes stage learned
    changes.json                 the manifest: the change files that are part of the index, in order

A change is written to its own file (to a temporary name, flushed to disk, renamed), and only
then published by replacing ``changes.json`` the same way. A process killed between the two
leaves a file no manifest names: it is not part of the index, and the next write removes it.
So a write costs O(what changed), and a version is always a base plus a list of whole files.
Every file is plain arrays (``allow_pickle=False``); text travels as UTF-8 JSON bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

CHANGES_DIR = "changes"
MANIFEST = "changes.json"
_NAME = re.compile(r"(\d{6,})\.(add|remove|feedback)\.npz")


@dataclasses.dataclass(frozen=True)
class AddedItems:
    """Items appended after the last row: their vectors, metadata rows, Naive Bayes word counts
    ([items, vocabulary after ``new_words``]) and the words new to the index's vocabulary."""

    vectors: np.ndarray
    metadata: pd.DataFrame
    counts: sparse.csr_matrix
    new_words: tuple[str, ...] = ()

    kind = "add"

    def arrays(self) -> dict[str, np.ndarray]:
        counts = sparse.csr_matrix(self.counts, dtype=np.float64)
        return {
            "vectors": np.ascontiguousarray(self.vectors, np.float32),
            "metadata": _json_bytes({c: self.metadata[c].astype(str).tolist() for c in self.metadata.columns}),
            "new_words": _json_bytes(list(self.new_words)),
            "data": counts.data,
            "indices": counts.indices,
            "indptr": counts.indptr,
            "shape": np.array(counts.shape),
        }

    @classmethod
    def from_arrays(cls, arrays) -> AddedItems:
        columns = _from_json(arrays["metadata"])
        metadata = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})
        counts = sparse.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(int(s) for s in arrays["shape"])
        )
        vectors = np.asarray(arrays["vectors"], np.float32)
        if vectors.ndim != 2 or len(vectors) != len(metadata) or counts.shape[0] != len(metadata):
            raise ValueError(
                f"{len(vectors)} vectors, {len(metadata)} metadata rows and {counts.shape[0]} count rows do not agree"
            )
        return cls(vectors, metadata, counts, tuple(_from_json(arrays["new_words"])))


@dataclasses.dataclass(frozen=True)
class RemovedItems:
    item_ids: tuple[str, ...]

    kind = "remove"

    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_ids": _json_bytes(list(self.item_ids))}

    @classmethod
    def from_arrays(cls, arrays) -> RemovedItems:
        return cls(tuple(str(i) for i in _from_json(arrays["item_ids"])))


@dataclasses.dataclass(frozen=True)
class Feedback:
    queries: tuple[str, ...]
    item_ids: tuple[str, ...]

    kind = "feedback"

    def arrays(self) -> dict[str, np.ndarray]:
        return {"queries": _json_bytes(list(self.queries)), "item_ids": _json_bytes(list(self.item_ids))}

    @classmethod
    def from_arrays(cls, arrays) -> Feedback:
        queries, item_ids = _from_json(arrays["queries"]), _from_json(arrays["item_ids"])
        if len(queries) != len(item_ids):
            raise ValueError(f"{len(queries)} queries for {len(item_ids)} item ids")
        return cls(tuple(map(str, queries)), tuple(map(str, item_ids)))


Change = AddedItems | RemovedItems | Feedback
_KINDS = {c.kind: c for c in (AddedItems, RemovedItems, Feedback)}


@dataclasses.dataclass(frozen=True)
class ChangeLog:
    """The manifest: the change files in order, and the number the next one gets."""

    files: tuple[str, ...] = ()
    next_number: int = 1

    def to_dict(self) -> dict:
        return {"files": list(self.files), "next_number": self.next_number}

    @classmethod
    def from_dict(cls, info) -> ChangeLog:
        if not isinstance(info, dict) or not isinstance(info.get("files"), list):
            raise ValueError("not a manifest object with a list of files")
        files = tuple(info["files"])
        if not all(isinstance(f, str) and _NAME.fullmatch(f) for f in files):
            raise ValueError("a listed change file does not have the form NNNNNN.<add|remove|feedback>.npz")
        return cls(files, int(info.get("next_number", len(files) + 1)))


def read_log(folder: Path) -> ChangeLog:
    """The published changes of the index in ``folder`` (none when it has no manifest)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return ChangeLog()
    return ChangeLog.from_dict(json.loads(path.read_text(encoding="utf-8")))


def read_change(path: Path) -> Change:
    path = Path(path)
    match = _NAME.fullmatch(path.name)
    if not match:
        raise ValueError(f"{path.name} is not a change file name")
    with np.load(path, allow_pickle=False) as arrays:
        return _KINDS[match.group(2)].from_arrays(arrays)


def write_change(folder: Path, log: ChangeLog, change: Change) -> ChangeLog:
    """Writes ``change`` to its own file, durably, then publishes the manifest that lists it:
    the returned log. Until the manifest is replaced the change is not part of the index."""
    folder = Path(folder)
    directory = folder / CHANGES_DIR
    directory.mkdir(exist_ok=True)
    number = max([log.next_number, *(_number(p.name) + 1 for p in directory.glob("*.npz") if _NAME.fullmatch(p.name))])
    name = f"{number:06d}.{change.kind}.npz"
    _remove_unpublished(directory, log)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **change.arrays())
            handle.flush()
            os.fsync(handle.fileno())
        with np.load(tmp, allow_pickle=False) as arrays:  # checked before it is published
            again = change.from_arrays(arrays)
        if not _same(change, again):
            raise ChangeNotWritten(f"{name}: the change written does not read back as given; the index was not changed")
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if not any(directory.iterdir()):
            directory.rmdir()  # the folder is left as it was
        raise
    _fsync_dir(directory)
    published = ChangeLog((*log.files, name), number + 1)
    _write_manifest(folder, published)
    return published


class ChangeNotWritten(ValueError):
    """A change file that does not read back as it was meant (it is not published)."""


def _same(change: Change, again: Change) -> bool:
    if not isinstance(change, AddedItems):
        return change == again
    meant = change.metadata.astype(str).reset_index(drop=True)
    counts = sparse.csr_matrix(change.counts, dtype=np.float64)
    return (
        np.array_equal(np.asarray(change.vectors, np.float32), again.vectors)
        and list(meant.columns) == list(again.metadata.columns)
        and all(meant[c].tolist() == again.metadata[c].tolist() for c in meant.columns)
        and counts.shape == again.counts.shape
        and (counts != again.counts).nnz == 0
        and tuple(change.new_words) == again.new_words
    )


def write_change_log(folder: Path, log: ChangeLog) -> None:
    """Publishes ``log`` as the manifest of ``folder`` (its files already there)."""
    _write_manifest(folder, log)


def _write_manifest(folder: Path, log: ChangeLog) -> None:
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(log.to_dict(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(folder)


def _remove_unpublished(directory: Path, log: ChangeLog) -> None:
    """Change files no manifest lists (a writer killed before publishing) and stale temporaries."""
    listed = set(log.files)
    for path in directory.iterdir():
        if path.name not in listed and (_NAME.fullmatch(path.name) or path.name.endswith(".tmp")):
            pid = path.name.split(".")[-2] if path.name.endswith(".tmp") else ""
            if pid.isdigit() and int(pid) == os.getpid():
                continue
            path.unlink(missing_ok=True)


def _number(name: str) -> int:
    return int(name.split(".", 1)[0])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_bytes(value) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), np.uint8)


def _from_json(array: np.ndarray):
    return json.loads(np.asarray(array, np.uint8).tobytes().decode("utf-8"))
