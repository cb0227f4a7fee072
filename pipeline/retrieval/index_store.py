"""A persistent search index: one folder under saved_models/index/<name>/.

    index.json       what built it (run, weights fingerprint, dataset), kind, dimension, fusion
    embeddings.npy   [items, dim] float32 unit vectors, opened memory-mapped
    metadata.parquet item_id, modality, split, label, path, image_path, audio_path, caption, words_from
                     (Parquet: any caption text, line breaks and NULs included, reads back exactly)
    lexical.npz      the Naive Bayes stage's arrays (vocabulary, item word counts, class counts)
    word_head.npz    the head that gives items without text their words (when there is one)
    faiss.index      the FAISS structure, for kinds hnsw and ivfpq
    milvus.db        the Milvus Lite database, for kind milvus without a server URI

    changes/, changes.json   what changed since (``index_changes``): added items, removals, feedback

Those files are the *base*. A build or a ``compact`` writes a complete new folder under a
temporary name, opens and checks it there (``SearchIndex.read``), and only then renames it over
the old one: an interrupted or inconsistent write leaves the previous index as it was. An add,
a removal or a feedback writes one change file and publishes it in ``changes.json``
(``index_changes``), so it costs O(what changed), not O(items); opening an index replays its
changes over the base. A file that cannot be read is named in the ``IndexProblem`` that
``open`` raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import paths
from pipeline.io_utils import atomic_path, remove_abandoned_temporaries
from pipeline.modalities import file_modalities
from pipeline.records import IndexRecord
from pipeline.retrieval.index_changes import (
    AddedItems,
    Change,
    ChangeLog,
    ChangeNotWritten,
    Feedback,
    RemovedItems,
    read_change,
    read_log,
    write_change,
    write_change_log,
)
from pipeline.retrieval.index_rows import RowColumn, RowLookup, RowVectors, Tail
from pipeline.retrieval.naive_bayes import NaiveBayesScorer
from pipeline.retrieval.vector_index import (
    BackendUnavailable,
    VectorIndex,
    build_vector_index,
    index_kind,
    index_kinds,
    load_vector_index,
)
from pipeline.retrieval.word_head import WordHead
from pipeline.run_artifacts import damaged_message

log = logging.getLogger(__name__)

INDEX_FORMAT_VERSION = 4  # 2: image_path and audio_path beside path; 3: metadata.parquet; 4: changes/
READABLE_FORMATS = (3, 4)  # a format-3 folder is a base without changes
# path: the item's first file (its image, else its sound); image_path, audio_path: each file it has.


def metadata_columns() -> tuple[str, ...]:
    """The metadata.parquet columns: ``<modality>_path`` for each file modality of the registry."""
    files = tuple(f"{m.name}_path" for m in file_modalities())
    return ("item_id", "modality", "split", "label", "path", *files, "caption", "words_from")


COPY_CHUNK_ROWS = 262_144
# Removed rows of the base are dropped from the vector structure's answer when there are at most
# this many (it is asked for that many more); beyond, they are masked out of its search.
OVERFETCH_REMOVED = 4096


class IndexProblem(ValueError):
    """An index that cannot be used or changed as asked; the message says what to do."""


def weights_fingerprint(run_dir: Path) -> str:
    """sha1 of a run's model weights: an index is only searched with the model that built it."""
    digest = hashlib.sha1()
    with open(Path(run_dir) / "model.weights.h5", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_index(name: str | Path) -> Path:
    """An index folder from a name under saved_models/index or a path."""
    path = Path(name)
    if not (path / "index.json").is_file():
        path = paths.index_dir(str(name))
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and (old / "index.json").is_file():
        # Interrupted between the two renames of a swap: the previous index is intact there.
        old.rename(path)
        log.warning("index %s: restored the previous version after an interrupted change", path.name)
    if not (path / "index.json").is_file():
        known = (
            sorted(p.name for p in paths.index_dir().glob("*") if (p / "index.json").is_file())
            if paths.index_dir().is_dir()
            else []
        )
        raise IndexProblem(
            f"no index {name!r} (looked for {path}/index.json). Indexes here: {', '.join(known) or 'none'}. "
            f"Build one with: python -m pipeline index --run RUN --data PATH --name NAME"
        )
    return path


def _stored_record(folder: Path) -> IndexRecord | None:
    """The record of the index a write is about to replace (None: none, or unreadable)."""
    try:
        return IndexRecord.from_dict(json.loads((folder / "index.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class IndexBase:
    """What a build or a compaction wrote: shared, unchanged, by every version made from it."""

    def __init__(self, folder: Path, vectors: np.ndarray, metadata: pd.DataFrame, backend: VectorIndex):
        self.folder, self.vectors, self.metadata, self.backend = folder, vectors, metadata, backend

    @property
    def rows(self) -> int:
        return len(self.metadata)

    @functools.cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """The metadata as one array per column: a hit's fields without pandas' per-row cost."""
        return {column: self.metadata[column].to_numpy() for column in self.metadata.columns}

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        return {item: row for row, item in enumerate(self.metadata["item_id"])}


@dataclasses.dataclass
class SearchIndex:
    """An index version opened for search: its base (vectors memory-mapped, metadata, the vector
    structure), the rows appended since (``tail``), the removed rows, and the Naive Bayes stage.

    Rows are numbered base first, then tail; a removed row keeps its number (and scores -inf in
    the Naive Bayes stage) until a ``compact`` writes a base without it.
    """

    folder: Path
    record: IndexRecord
    base: IndexBase
    naive_bayes: NaiveBayesScorer
    word_head: WordHead | None
    tail: Tail
    removed_rows: frozenset = frozenset()
    log: ChangeLog = ChangeLog()

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def dim(self) -> int:
        return self.record.dim

    @property
    def rows(self) -> int:
        """Rows, removed ones included (the Naive Bayes stage's items)."""
        return self.base.rows + self.tail.count

    def __len__(self) -> int:
        """Items (removed ones aside)."""
        return self.rows - len(self.removed_rows)

    @property
    def backend(self) -> VectorIndex:
        """The base's vector structure (its rows only; ``search_dense`` adds the tail)."""
        return self.base.backend

    @backend.setter
    def backend(self, structure: VectorIndex) -> None:
        self.base.backend = structure  # shared by the versions of this base (another server, say)

    @property
    def changed(self) -> bool:
        return bool(self.tail.count or self.removed_rows)

    @property
    def vectors(self):
        """[rows, dim]: the base's memory map, or base and tail as one ``RowVectors``."""
        return RowVectors(self.base.vectors, self.tail) if self.tail.count else self.base.vectors

    @property
    def columns(self) -> dict:
        """Per metadata column, the value of each row: ``columns[name][row]``."""
        if not self.tail.count:
            return self.base.columns
        return {name: RowColumn(values, self.tail.column(name)) for name, values in self.base.columns.items()}

    @property
    def row_of(self) -> RowLookup | dict:
        """Each item id's row (removed items aside)."""
        if not self.changed:
            return self.base.row_of
        return RowLookup(self.base.row_of, self.tail.ids, self.removed_rows)

    @functools.cached_property
    def metadata(self) -> pd.DataFrame:
        """The items' metadata, indexed by row (removed rows aside). O(items) on a changed version."""
        if not self.changed:
            return self.base.metadata
        tail = pd.DataFrame(
            {name: self.tail.column(name) for name in self.base.metadata.columns},
            index=pd.RangeIndex(self.base.rows, self.rows),
        )
        frame = pd.concat([self.base.metadata, tail]) if self.tail.count else self.base.metadata
        return frame.drop(index=sorted(self.removed_rows)) if self.removed_rows else frame

    @functools.cached_property
    def _removed_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The removed rows, sorted: of the base, and of the tail (as tail positions)."""
        rows = np.array(sorted(self.removed_rows), np.int64)
        return rows[rows < self.base.rows], rows[rows >= self.base.rows] - self.base.rows

    # -------------------------------------------------------------- open / write

    @classmethod
    def open(cls, name: str | Path) -> SearchIndex:
        return cls.read(resolve_index(name))

    @classmethod
    def read(cls, folder: Path) -> SearchIndex:
        """The index in ``folder``, every file read, checked for consistency, and its changes
        replayed; ``IndexProblem`` names the file that cannot be used and says what to do."""
        folder = Path(folder)
        name = (
            folder.name.split(".")[1] if folder.name.startswith(".") else folder.name
        )  # a temporary: .<name>.<pid>...

        rebuild = f"python -m pipeline index --run RUN --data PATH --name {name}"

        def damaged(file: str, error) -> IndexProblem:
            return IndexProblem(damaged_message(folder / file, error, f"rebuild index {name} with {rebuild}"))

        try:
            info = json.loads((folder / "index.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise damaged("index.json", error) from None
        if not isinstance(info, dict):
            raise damaged("index.json", "not a JSON object")
        if info.get("format_version") not in READABLE_FORMATS:
            raise IndexProblem(
                f"index {name} has format {info.get('format_version')!r}; this version reads "
                f"{', '.join(map(str, READABLE_FORMATS))}. Rebuild it: {rebuild}"
            )
        try:
            record = IndexRecord.from_dict(info)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise damaged("index.json", f"{type(error).__name__}: {error}") from None
        try:
            vectors = np.load(folder / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise damaged("embeddings.npy", error) from None
        if vectors.ndim != 2 or vectors.dtype != np.float32 or vectors.shape[1] != record.dim:
            raise damaged(
                "embeddings.npy",
                f"shape {vectors.shape} {vectors.dtype}, index.json says [items, {record.dim}] float32",
            )
        try:
            table = pq.read_table(folder / "metadata.parquet")
        except Exception as error:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
            raise damaged("metadata.parquet", error) from None
        text = (pa.types.is_string, pa.types.is_large_string) + ((pa.types.is_null,) if table.num_rows == 0 else ())
        if table.schema.names != list(metadata_columns()) or not all(
            any(t(f.type) for t in text) for f in table.schema
        ):
            raise damaged("metadata.parquet", f"its columns are not {', '.join(metadata_columns())} as text")
        metadata = (
            table.to_pandas().astype(str)
            if table.num_rows
            else pd.DataFrame({c: pd.Series([], dtype=object) for c in metadata_columns()})
        )
        try:
            naive_bayes = NaiveBayesScorer.load(folder / "lexical.npz")
        except Exception as error:  # noqa: BLE001 - zip, NumPy and scikit-learn errors of a damaged file
            raise damaged("lexical.npz", error) from None
        head = None
        if (folder / "word_head.npz").is_file():
            try:
                head = WordHead.load(folder / "word_head.npz")
            except Exception as error:  # noqa: BLE001
                raise damaged("word_head.npz", error) from None
        try:
            backend = load_vector_index(record.kind, folder, vectors, **record.params)
        except BackendUnavailable as error:  # the index is fine; its server is not
            raise IndexProblem(f"index {name}: {error}") from None
        except Exception as error:  # noqa: BLE001 - FAISS raises RuntimeError with C++ text
            known = index_kinds().get(record.kind)
            files = known.files if known else ()
            raise damaged(files[0] if files else "index.json", error) from None
        if not (len(vectors) == len(metadata) == naive_bayes.items):
            raise IndexProblem(
                f"index {name} is inconsistent ({len(vectors)} vectors, {len(metadata)} metadata rows, "
                f"{naive_bayes.items} Naive Bayes items); rebuild it"
            )
        if metadata["item_id"].duplicated().any():
            raise IndexProblem(
                f"index {name} holds item id {metadata['item_id'][metadata['item_id'].duplicated()].iloc[0]!r} twice; rebuild it"
            )
        base = IndexBase(folder, vectors, metadata, backend)
        index = cls(folder, record, base, naive_bayes, head, Tail.empty(len(metadata), record.dim, metadata_columns()))
        try:
            log = read_log(folder)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise damaged("changes.json", error) from None
        for file in log.files:
            try:
                change = read_change(folder / "changes" / file)
            except Exception as error:  # noqa: BLE001 - zip, NumPy and JSON errors of a damaged file
                raise damaged(f"changes/{file}", error) from None
            changed = index._applied(change)
            try:
                index._apply_to_backend(change)  # idempotent: a structure that changes in place may hold it already
                index = changed
            except BackendUnavailable as error:
                raise IndexProblem(f"index {name}: {error}") from None
        try:
            index.backend.verify(len(index))
        except BackendUnavailable as error:
            raise IndexProblem(f"index {name}: {error}") from None
        return dataclasses.replace(index, log=log)

    @staticmethod
    def write(
        folder: Path,
        record: IndexRecord,
        vectors,
        metadata: pd.DataFrame,
        naive_bayes: NaiveBayesScorer,
        word_head: WordHead | None,
        make_backend=None,
        before_publish=None,
    ) -> SearchIndex:
        """Writes a complete index (a base, no changes) to ``folder`` atomically and opens it:
        ``record`` says what built it and its kind and parameters (its size and version are
        filled in here). ``vectors`` may be an array or a callable that writes
        ``embeddings.npy`` into the folder it is given; ``make_backend(stored vectors)`` gives
        the search structure (default: built anew). ``before_publish(temporary folder)`` runs
        once the new version is checked, just before it replaces the old one."""
        folder = Path(folder)
        replaced = _stored_record(folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            if callable(vectors):
                vectors(tmp / "embeddings.npy")
            else:
                np.save(tmp / "embeddings.npy", np.ascontiguousarray(vectors, np.float32))
            stored = np.load(tmp / "embeddings.npy", mmap_mode="r")
            metadata = (
                metadata.reindex(columns=list(metadata_columns()), fill_value="").astype(str).reset_index(drop=True)
            )
            metadata.to_parquet(tmp / "metadata.parquet", index=False)
            naive_bayes.save(tmp / "lexical.npz")
            if word_head is not None:
                word_head.save(tmp / "word_head.npz")
            backend = make_backend(stored) if make_backend else build_vector_index(record.kind, stored, **record.params)
            backend.save(tmp, metadata)
            record = dataclasses.replace(
                record,
                format_version=INDEX_FORMAT_VERSION,
                params={k: v for k, v in backend.params.items() if k != "kind" and v is not None},
                dim=int(stored.shape[1]),
                items=int(stored.shape[0]),
                updated=datetime.datetime.now().isoformat(timespec="seconds"),
            )
            (tmp / "index.json").write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")
            del stored, backend
            written = SearchIndex.read(tmp)
            if not written.metadata.equals(
                metadata
            ):  # never publish a version that fails its own check (naive_bayes.save checks its file)
                raise IndexProblem(
                    f"index {folder.name}: the metadata written does not read back as given; the index was not changed"
                )
            written.backend.close()  # its connections name the temporary folder
            if before_publish is not None:
                before_publish(tmp)
        if replaced is not None:
            try:
                index_kind(replaced.kind).dropped(folder, replaced.params)
            except ValueError:  # a kind this version does not know: nothing of it to release
                pass
        written.backend.moved(folder)
        written.base.folder = folder
        log.info("index %s: %d items written to %s", folder.name, len(metadata), folder)
        # The version read and checked in the temporary folder is the one published: its open
        # files and memory maps follow the rename, so it is not read a second time.
        return dataclasses.replace(written, folder=folder)

    # -------------------------------------------------------------- changes

    def added(
        self, vectors: np.ndarray, metadata: pd.DataFrame, item_counts, new_vocabulary: list[str] | None = None
    ) -> SearchIndex:
        """A new version with items appended (one change file; this object stays valid).
        ``item_counts`` has a column per word of ``new_vocabulary`` (the index's vocabulary,
        possibly extended at its end with the new items' words)."""
        if not index_kind(self.record.kind).supports_add:
            raise IndexProblem(f"index {self.name} is of kind {self.record.kind}, which cannot add items; rebuild it")
        vectors = np.ascontiguousarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexProblem(
                f"vectors of dimension {vectors.shape[-1]} cannot join index {self.name} of dimension {self.dim}"
            )
        ids = metadata["item_id"].astype(str).tolist()
        row_of = self.row_of
        clash = sorted({i for i in ids if i in row_of} | {i for i in ids if ids.count(i) > 1})
        if clash:
            raise IndexProblem(
                f"index {self.name} already holds item(s) {', '.join(clash[:5])}; remove them first or use new ids"
            )
        vocabulary = self.naive_bayes.vocabulary
        if new_vocabulary and list(new_vocabulary[: len(vocabulary)]) != vocabulary:
            raise IndexProblem(f"the new items' words were counted against another vocabulary than index {self.name}'s")
        new_words = tuple((new_vocabulary or [])[len(vocabulary) :])
        metadata = metadata.reindex(columns=list(metadata_columns()), fill_value="").astype(str).reset_index(drop=True)
        return self._commit(AddedItems(vectors, metadata, item_counts, new_words))

    def removed(self, item_ids: list[str]) -> SearchIndex:
        """A new version without ``item_ids`` (every id must be in the index; one change file)."""
        if not index_kind(self.record.kind).supports_remove:
            raise IndexProblem(
                f"index {self.name} is of kind {self.record.kind}, which cannot remove items; rebuild it"
            )
        missing = sorted({i for i in item_ids if i not in self.row_of})
        if missing:
            raise IndexProblem(f"index {self.name} has no item(s) {', '.join(missing[:5])}; nothing was removed")
        return self._commit(RemovedItems(tuple(dict.fromkeys(item_ids))))

    def feedback(self, queries: list[str], item_ids: list[str]) -> SearchIndex:
        """A new version whose NB stage learned that each item answers its query (online
        learning, ``NaiveBayesScorer.with_feedback``), saved as one change file."""
        unknown = [i for i in item_ids if i not in self.row_of]
        if unknown:
            raise IndexProblem(f"index {self.name} has no item(s) {', '.join(unknown[:5])}; no feedback was recorded")
        return self._commit(Feedback(tuple(queries), tuple(item_ids)))

    def _commit(self, change: Change) -> SearchIndex:
        """``change`` written and published (under the index's lock), and the version with it."""
        applied = self._applied(change)  # fails before anything is written if it does not apply
        with self._locked():
            remove_abandoned_temporaries(self.folder)  # of a full write killed before (a build, a compaction)
            on_disk = read_log(self.folder)
            if on_disk != self.log or _stored_record(self.folder) != self.record:
                raise IndexProblem(
                    f"index {self.name} was changed by another process since it was opened; open it again and retry"
                )
            try:
                published = write_change(self.folder, self.log, change)
            except ChangeNotWritten as error:
                raise IndexProblem(f"index {self.name}: {error}") from None
            # After the change is published: a structure that changes in place never holds a
            # change the index does not (a crash here is mended when the index is next opened).
            self._apply_to_backend(change)
            if self.backend.live_changes:
                self.backend.verify(len(applied))  # and it now holds exactly the new version's rows
        return dataclasses.replace(applied, log=published)

    def _apply_to_backend(self, change: Change) -> None:
        """``change`` (to be applied to this version) applied to a structure that changes in place."""
        if not self.backend.live_changes:
            return
        if isinstance(change, AddedItems):
            self.backend.insert(self.rows, change.vectors, change.metadata)
        elif isinstance(change, RemovedItems):
            self.backend.delete([self.row_of[i] for i in change.item_ids])

    @contextlib.contextmanager
    def _locked(self):
        """The index's write lock: a lock on its folder (no file of its own). A compaction
        replaces the folder, so a writer that waited checks the manifest and record again."""
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _applied(self, change: Change) -> SearchIndex:
        """This version with ``change`` in memory: O(what changed)."""
        if isinstance(change, AddedItems):
            scorer, _ = self.naive_bayes.with_vocabulary([" ".join(change.new_words)])
            if len(scorer.vocabulary) != change.counts.shape[1]:
                raise IndexProblem(
                    f"index {self.name}: the added items' counts have {change.counts.shape[1]} word columns, "
                    f"the vocabulary {len(scorer.vocabulary)}"
                )
            return dataclasses.replace(
                self,
                naive_bayes=scorer.with_items(change.counts),
                tail=self.tail.appended(change.vectors, change.metadata),
            )
        if isinstance(change, RemovedItems):
            rows = [self.row_of[i] for i in change.item_ids]
            return dataclasses.replace(
                self, naive_bayes=self.naive_bayes.without_items(rows), removed_rows=self.removed_rows | frozenset(rows)
            )
        rows = [self.row_of[i] for i in change.item_ids]
        return dataclasses.replace(self, naive_bayes=self.naive_bayes.with_feedback(list(change.queries), rows))

    def live_arrays(self) -> tuple[np.ndarray, pd.DataFrame, NaiveBayesScorer]:
        """(vectors, metadata, NB stage) of the items alone, rows numbered from 0: what a
        compaction writes and an export holds. O(items)."""
        if not self.changed:
            return self.base.vectors, self.base.metadata, self.naive_bayes
        keep = np.ones(self.rows, bool)
        keep[sorted(self.removed_rows)] = False
        vectors = self.vectors[np.flatnonzero(keep)]
        return vectors, self.metadata.reset_index(drop=True), self.naive_bayes.consolidated(keep)

    def compacted(self, hold=contextlib.nullcontext, on_published=None) -> SearchIndex:
        """The same items as a new base (changes folded in, removed rows dropped), written
        atomically in place of this one; the vector structure is extended in place when
        nothing was removed, else built anew. On ``exact`` the ranking of every query stays
        the same.

        Writers are not stopped meanwhile: the new base is built from this version, and the
        changes published since are carried over, under ``hold()`` (the caller's write lock)
        and the index's lock, as the new folder replaces the old one; ``on_published(new
        version)`` runs while both are still held (a service swaps its version there)."""
        if read_log(self.folder) != self.log:
            raise IndexProblem(
                f"index {self.name} was changed by another process since it was opened; open it again and retry"
            )
        if not self.log.files:
            return self
        keep_rows = np.flatnonzero(~np.isin(np.arange(self.rows), sorted(self.removed_rows)))
        naive_bayes = self.naive_bayes.consolidated(np.isin(np.arange(self.rows), keep_rows))
        metadata = self.metadata.reset_index(drop=True)
        source = self.vectors

        def write_vectors(path):
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(keep_rows), self.dim))
            for start in range(0, len(keep_rows), COPY_CHUNK_ROWS):  # streamed: may not fit in memory
                out[start : start + COPY_CHUNK_ROWS] = source[keep_rows[start : start + COPY_CHUNK_ROWS]]
            out.flush()

        make_backend = None
        if not self.removed_rows:
            tail = self.tail.vectors.copy()

            def make_backend(stored):
                return index_kind(self.record.kind).extended(self.folder, stored, tail, **self.record.params)

        with contextlib.ExitStack() as held:
            carried: list[str] = []

            def carry_changes(tmp: Path) -> None:
                held.enter_context(hold())
                held.enter_context(self._locked())
                latest = read_log(self.folder)
                if latest.files[: len(self.log.files)] != self.log.files or _stored_record(self.folder) != self.record:
                    raise IndexProblem(f"index {self.name} was replaced while it was compacted; it is unchanged")
                carried.extend(latest.files[len(self.log.files) :])
                if carried:  # published while the new base was built: they apply to it as they are
                    (tmp / "changes").mkdir()
                    for name in carried:
                        shutil.copy2(self.folder / "changes" / name, tmp / "changes" / name)
                    write_change_log(tmp, ChangeLog(tuple(carried), latest.next_number))

            written = self.write(
                self.folder,
                self.record,
                write_vectors,
                metadata,
                naive_bayes,
                self.word_head,
                make_backend,
                before_publish=carry_changes,
            )
            for name in carried:
                change = read_change(self.folder / "changes" / name)
                applied = written._applied(change)
                written._apply_to_backend(change)
                written = applied
            written = dataclasses.replace(written, log=read_log(self.folder))
            if on_published is not None:
                on_published(written)
            return written

    # -------------------------------------------------------------- search

    def search_dense(
        self, vector: np.ndarray, count: int, allowed: np.ndarray | None = None, filters: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` best rows for ``vector`` [1, dim] by inner product, removed rows aside:
        the base's structure, and the tail (scored exactly; it is small until a compact).
        (scores [count'], rows [count']), best first."""
        base_rows = self.base.rows
        removed_base, removed_tail = self._removed_split
        if self.backend.live_changes:  # it holds the added rows and no removed one
            scores, rows = self.backend.search(vector, count, allowed, filters=filters)
            current = (rows[0] >= 0) & (rows[0] < self.rows)  # a newer version's rows aside
            return scores[0][current], rows[0][current]
        if allowed is not None:
            scores, rows = self.backend.search(vector, count, allowed[:base_rows], filters=filters)
        elif not len(removed_base):
            scores, rows = self.backend.search(vector, count)
        elif len(removed_base) <= OVERFETCH_REMOVED:
            scores, rows = self.backend.search(vector, count + len(removed_base))
            keep = ~np.isin(rows, removed_base)
            scores, rows = scores[:, keep[0]][:, :count], rows[:, keep[0]][:, :count]
        else:
            mask = np.ones(base_rows, bool)
            mask[removed_base] = False
            scores, rows = self.backend.search(vector, count, mask)
        scores, rows = scores[0], rows[0]
        found = rows >= 0
        scores, rows = scores[found], rows[found]
        if self.tail.count:
            tail_scores = self.tail.vectors @ vector[0]
            tail_scores[removed_tail] = -np.inf
            if allowed is not None:
                tail_scores[~allowed[base_rows:]] = -np.inf
            best = np.argsort(-tail_scores, kind="stable")[:count]
            best = best[np.isfinite(tail_scores[best])]
            scores = np.concatenate([scores, tail_scores[best]])
            rows = np.concatenate([rows, best + base_rows])
            order = np.argsort(-scores, kind="stable")[:count]
            scores, rows = scores[order], rows[order]
        return scores, rows

    # -------------------------------------------------------------- filters

    def filter_mask(self, filters: dict[str, str] | None) -> np.ndarray | None:
        """Bool mask over rows of the items whose metadata match every ``column=value``
        (``modality=image`` also matches items with several modalities, e.g. ``image+audio``)."""
        if not filters:
            return None
        mask = np.ones(self.rows, bool)
        columns = self.columns
        for column, value in filters.items():
            if column not in columns:
                raise IndexProblem(
                    f"cannot filter on {column!r}: the index's metadata columns are {', '.join(self.base.metadata.columns)}"
                )
            values = columns[column]
            values = values.to_numpy() if isinstance(values, RowColumn) else values
            if column == "modality":
                mask &= np.array([value in str(v).split("+") for v in values], bool)
            else:
                mask &= values == value
        if self.removed_rows:
            mask[sorted(self.removed_rows)] = False
        return mask
