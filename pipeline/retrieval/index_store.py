"""A persistent search index: one folder under saved_models/index/<name>/.

    index.json       what built it (run, weights fingerprint, dataset), kind, dimension, fusion
    embeddings.npy   [items, dim] float32 unit vectors, opened memory-mapped
    metadata.parquet item_id, modality, split, label, path, image_path, audio_path, caption, words_from
                     (Parquet: any caption text, line breaks and NULs included, reads back exactly)
    lexical.npz      the Naive Bayes stage's arrays (vocabulary, item word counts, class counts)
    word_head.npz    the head that gives items without text their words (when there is one)
    faiss.index      the FAISS structure, for kinds hnsw and ivfpq
    milvus.db        the Milvus Lite database, for kind milvus without a server URI

Every change (build, add, remove) writes a complete new folder under a temporary name, opens
and checks it there (``SearchIndex.read``), and only then renames it over the old one: an
interrupted or inconsistent change leaves the previous index as it was. A file that cannot be
read is named in the ``IndexProblem`` that ``open`` raises.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import paths
from pipeline.io_utils import atomic_path
from pipeline.modalities import file_modalities
from pipeline.records import IndexRecord
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

INDEX_FORMAT_VERSION = 3  # 2: image_path and audio_path beside path; 3: metadata.parquet instead of metadata.csv
# path: the item's first file (its image, else its sound); image_path, audio_path: each file it has.


def metadata_columns() -> tuple[str, ...]:
    """The metadata.parquet columns: ``<modality>_path`` for each file modality of the registry."""
    files = tuple(f"{m.name}_path" for m in file_modalities())
    return ("item_id", "modality", "split", "label", "path", *files, "caption", "words_from")


COPY_CHUNK_ROWS = 262_144


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


@dataclasses.dataclass
class SearchIndex:
    """An index opened for search: vectors (memory-mapped), metadata, the NB stage, the backend."""

    folder: Path
    record: IndexRecord
    vectors: np.ndarray
    metadata: pd.DataFrame
    naive_bayes: NaiveBayesScorer
    word_head: WordHead | None
    backend: VectorIndex

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def dim(self) -> int:
        return self.record.dim

    def __len__(self) -> int:
        return len(self.metadata)

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        """Each item id's row."""
        return {item: row for row, item in enumerate(self.metadata["item_id"])}

    @functools.cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """The metadata as one array per column: a hit's fields without pandas' per-row cost."""
        return {column: self.metadata[column].to_numpy() for column in self.metadata.columns}

    # -------------------------------------------------------------- open / write

    @classmethod
    def open(cls, name: str | Path) -> SearchIndex:
        return cls.read(resolve_index(name))

    @classmethod
    def read(cls, folder: Path) -> SearchIndex:
        """The index in ``folder``, every file read and the whole checked for consistency;
        ``IndexProblem`` names the file that cannot be used and says what to do."""
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
        if info.get("format_version") != INDEX_FORMAT_VERSION:
            raise IndexProblem(
                f"index {name} has format {info.get('format_version')!r}; this version reads {INDEX_FORMAT_VERSION}. "
                f"Rebuild it: {rebuild}"
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
        return cls(folder, record, vectors, metadata, naive_bayes, head, backend)

    @staticmethod
    def write(
        folder: Path,
        record: IndexRecord,
        vectors,
        metadata: pd.DataFrame,
        naive_bayes: NaiveBayesScorer,
        word_head: WordHead | None,
        make_backend=None,
    ) -> SearchIndex:
        """Writes a complete index to ``folder`` atomically and opens it: ``record`` says what
        built it and its kind and parameters (its size and version are filled in here).
        ``vectors`` may be an array or a callable that writes ``embeddings.npy`` into the folder
        it is given; ``make_backend(stored vectors)`` gives the search structure (default: built anew)."""
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
        if replaced is not None:
            try:
                index_kind(replaced.kind).dropped(folder, replaced.params)
            except ValueError:  # a kind this version does not know: nothing of it to release
                pass
        written.backend.moved(folder)
        log.info("index %s: %d items written to %s", folder.name, len(metadata), folder)
        # The version read and checked in the temporary folder is the one published: its open
        # files and memory maps follow the rename, so it is not read a second time.
        return dataclasses.replace(written, folder=folder)

    # -------------------------------------------------------------- changes

    def added(
        self, vectors: np.ndarray, metadata: pd.DataFrame, item_counts, new_vocabulary: list[str] | None = None
    ) -> SearchIndex:
        """A new version with items appended (written atomically; this object stays valid).
        ``item_counts`` has a column per word of ``new_vocabulary`` (the index's vocabulary,
        possibly extended at its end with the new items' words)."""
        if not index_kind(self.record.kind).supports_add:
            raise IndexProblem(f"index {self.name} is of kind {self.record.kind}, which cannot add items; rebuild it")
        vectors = np.ascontiguousarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexProblem(
                f"vectors of dimension {vectors.shape[-1]} cannot join index {self.name} of dimension {self.dim}"
            )
        clash = set(metadata["item_id"]) & set(self.metadata["item_id"])
        if clash:
            raise IndexProblem(
                f"index {self.name} already holds item(s) {', '.join(sorted(clash)[:5])}; remove them first or use new ids"
            )
        naive_bayes = NaiveBayesScorer.load(self.folder / "lexical.npz")
        if new_vocabulary and new_vocabulary[: len(naive_bayes.vocabulary)] != naive_bayes.vocabulary:
            raise IndexProblem(f"the new items' words were counted against another vocabulary than index {self.name}'s")
        naive_bayes.extend_vocabulary([" ".join((new_vocabulary or [])[len(naive_bayes.vocabulary) :])])
        naive_bayes.append_items(item_counts)
        old = self.vectors

        def write_vectors(path):
            out = np.lib.format.open_memmap(
                path, mode="w+", dtype=np.float32, shape=(len(old) + len(vectors), self.dim)
            )
            for start in range(0, len(old), COPY_CHUNK_ROWS):  # streamed: the index may not fit in memory
                end = min(start + COPY_CHUNK_ROWS, len(old))
                out[start:end] = old[start:end]
            out[len(old) :] = vectors
            out.flush()

        def extend_backend(stored):
            return index_kind(self.record.kind).extended(self.folder, stored, vectors, **self.record.params)

        merged = pd.concat(
            [self.metadata, metadata.reindex(columns=list(metadata_columns()), fill_value="")], ignore_index=True
        )
        return self.write(
            self.folder,
            self.record,
            write_vectors,
            merged,
            naive_bayes,
            self.word_head,
            make_backend=extend_backend,
        )

    def removed(self, item_ids: list[str]) -> SearchIndex:
        """A new version without ``item_ids`` (every id must be in the index)."""
        if not index_kind(self.record.kind).supports_remove:
            raise IndexProblem(
                f"index {self.name} is of kind {self.record.kind}, which cannot remove items; rebuild it"
            )
        missing = sorted(set(item_ids) - set(self.metadata["item_id"]))
        if missing:
            raise IndexProblem(f"index {self.name} has no item(s) {', '.join(missing[:5])}; nothing was removed")
        keep = ~self.metadata["item_id"].isin(set(item_ids)).to_numpy()
        naive_bayes = NaiveBayesScorer.load(self.folder / "lexical.npz")
        naive_bayes.remove_items(keep)
        old, rows = self.vectors, np.flatnonzero(keep)

        def write_vectors(path):
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(rows), self.dim))
            for start in range(0, len(rows), COPY_CHUNK_ROWS):
                out[start : start + COPY_CHUNK_ROWS] = old[rows[start : start + COPY_CHUNK_ROWS]]
            out.flush()

        return self.write(
            self.folder,
            self.record,
            write_vectors,
            self.metadata[keep].reset_index(drop=True),
            naive_bayes,
            self.word_head,
        )

    def feedback(self, queries: list[str], item_ids: list[str]) -> None:
        """Online learning of the NB stage: each query's words are added to the item chosen for
        it (``partial_fit``); lexical.npz is replaced atomically."""
        unknown = [i for i in item_ids if i not in self.row_of]
        if unknown:
            raise IndexProblem(f"index {self.name} has no item(s) {', '.join(unknown[:5])}; no feedback was recorded")
        self.naive_bayes.partial_fit(list(queries), [self.row_of[i] for i in item_ids])
        self.naive_bayes.save(self.folder / "lexical.npz")

    # -------------------------------------------------------------- filters

    def filter_mask(self, filters: dict[str, str] | None) -> np.ndarray | None:
        """Bool mask of the items whose metadata match every ``column=value`` (``modality=image``
        also matches items with several modalities, e.g. ``image+audio``)."""
        if not filters:
            return None
        mask = np.ones(len(self.metadata), bool)
        for column, value in filters.items():
            if column not in self.metadata:
                raise IndexProblem(
                    f"cannot filter on {column!r}: the index's metadata columns are {', '.join(self.metadata.columns)}"
                )
            values = self.metadata[column]
            if column == "modality":
                mask &= values.str.split("+").map(lambda parts, wanted=value: wanted in parts).to_numpy()
            else:
                mask &= (values == value).to_numpy()
        return mask
