"""The folder ``python -m pipeline embed`` writes, and its reader.

    embeddings-SSSSS-of-NNNNN.parquet  one row per item: item_id, the index's metadata columns,
                                       captions, vector, content_vector, caption_vectors, position
    errors-SSSSS-of-NNNNN.jsonl        the dead letters: one JSON object per file that could not
                                       be embedded (path, item, modality, error)
    embeddings.json                    the listing: shards and their rows, dimension, the run
                                       that embedded them; written last, so a folder without it
                                       holds no finished result

Paths go through Beam's filesystems: the folder may be local, ``gs://`` or ``s3://`` where
those extras are installed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

LISTING = "embeddings.json"
SHARD_PREFIX = "embeddings"
ERRORS_PREFIX = "errors"
FORMAT_VERSION = 1


class ShardProblem(ValueError):
    """An embeddings folder that cannot be used as asked; the message says what to do."""


def shard_schema(metadata_columns: tuple[str, ...]) -> pa.Schema:
    """One item per row: its index metadata (text), its captions and vectors, and its place
    in the input (``position``: the index keeps the input's order whatever order Beam wrote in)."""
    vector = pa.list_(pa.float32())
    return pa.schema(
        [
            *(pa.field(column, pa.string()) for column in metadata_columns),
            pa.field("captions", pa.list_(pa.string())),
            pa.field("vector", vector),
            pa.field("content_vector", vector),
            pa.field("caption_vectors", pa.list_(vector)),
            pa.field("position", pa.int64()),
        ]
    )


def join(folder: str, name: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(str(folder), name)


@dataclasses.dataclass(frozen=True)
class ShardListing:
    """``embeddings.json``."""

    run: str  # run_reference of the run whose encoders embedded the items
    weights_sha1: str
    config: str
    dim: int
    data: str  # the dataset folder or file pattern
    shards: tuple[tuple[str, int], ...]  # (file name in the folder, rows)
    errors: tuple[str, ...]  # dead-letter files in the folder
    counts: dict  # items_embedded, files_embedded, files_failed, items_skipped
    created: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def items(self) -> int:
        return sum(rows for _, rows in self.shards)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["shards"] = [{"file": f, "rows": r} for f, r in self.shards]
        out["errors"] = list(self.errors)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> ShardListing:
        return cls(
            run=str(values["run"]),
            weights_sha1=str(values["weights_sha1"]),
            config=str(values["config"]),
            dim=int(values["dim"]),
            data=str(values["data"]),
            shards=tuple((str(s["file"]), int(s["rows"])) for s in values["shards"]),
            errors=tuple(str(e) for e in values["errors"]),
            counts=dict(values["counts"]),
            created=str(values.get("created", "")),
            format_version=int(values["format_version"]),
        )


def write_listing(
    folder: str, run: str, weights_sha1: str, config: str, dim: int, data: str, counts: dict
) -> ShardListing:
    """Lists the shards and dead-letter files the pipeline wrote in ``folder`` (each shard's
    rows read from its Parquet footer, so a shard that does not read fails here, not later)
    and writes ``embeddings.json`` through a temporary name."""
    from apache_beam.io.filesystems import FileSystems

    def names(prefix: str, suffix: str) -> list[str]:
        found = FileSystems.match([join(folder, f"{prefix}-*{suffix}")])[0].metadata_list
        return sorted(m.path.rsplit("/", 1)[-1] for m in found)

    shards = []
    for name in names(SHARD_PREFIX, ".parquet"):
        with FileSystems.open(join(folder, name)) as handle:  # seekable: only the footer is read
            shards.append((name, pq.ParquetFile(handle).metadata.num_rows))
    listing = ShardListing(
        run=run,
        weights_sha1=weights_sha1,
        config=config,
        dim=int(dim),
        data=str(data),
        shards=tuple(shards),
        errors=tuple(names(ERRORS_PREFIX, ".jsonl")),
        counts=dict(counts),
        created=datetime.datetime.now().isoformat(timespec="seconds"),
    )
    tmp, final = join(folder, f".{LISTING}.tmp"), join(folder, LISTING)
    with FileSystems.create(tmp) as handle:
        handle.write((json.dumps(listing.to_dict(), indent=2) + "\n").encode())
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([tmp], [final])
    return listing


@dataclasses.dataclass
class EmbeddingShards:
    """An embeddings folder opened for reading (its listing checked)."""

    folder: str
    record: ShardListing

    @classmethod
    def open(cls, folder) -> EmbeddingShards:
        from apache_beam.io.filesystems import FileSystems

        folder = str(folder)
        path = join(folder, LISTING)
        if not FileSystems.exists(path):
            raise ShardProblem(
                f"{folder} holds no {LISTING}: not the output of a finished `python -m pipeline embed` "
                "(run it again into an empty folder)"
            )
        try:
            with FileSystems.open(path) as handle:
                record = ShardListing.from_dict(json.loads(handle.read().decode()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            raise ShardProblem(f"{path} cannot be read ({error}); run `python -m pipeline embed` again") from None
        if record.format_version != FORMAT_VERSION:
            raise ShardProblem(f"{path} has format {record.format_version}; this version reads {FORMAT_VERSION}")
        return cls(folder, record)

    def check_run(self, weights_sha1: str) -> None:
        if weights_sha1 != self.record.weights_sha1:
            raise ShardProblem(
                f"the vectors in {self.folder} come from run {self.record.run}, whose weights differ from the run given; "
                "build the index with that run (drop --run) or embed again"
            )

    def tables(self, columns: list[str] | None = None):
        """Each shard as a pyarrow Table (of ``columns``, default all), one at a time."""
        from apache_beam.io.filesystems import FileSystems

        for name, rows in self.record.shards:
            path = join(self.folder, name)
            try:
                with FileSystems.open(path) as handle:  # seekable: only the columns asked for are read
                    table = pq.ParquetFile(handle).read(columns=columns)
            except Exception as error:  # noqa: BLE001 - pyarrow and filesystem errors of a damaged shard
                raise ShardProblem(f"{path} cannot be read ({error}); run `python -m pipeline embed` again") from None
            if table.num_rows != rows:
                raise ShardProblem(f"{path} has {table.num_rows} rows, {LISTING} says {rows}; embed again")
            yield name, table

    def embedded_items(self, keep_captions_of=("train", "dev")):
        """The shards as the in-process index builder's ``EmbeddedItems``, in input order, read
        shard by shard. Caption vectors are kept for the items of ``keep_captions_of`` only
        (the word head trains on the train split's, the ranking is measured on dev's)."""
        from pipeline.retrieval.index_builder import EmbeddedItems
        from pipeline.retrieval.index_store import metadata_columns

        total, dim = self.record.items, self.record.dim
        positions = np.concatenate(
            [t.column("position").to_numpy() for _, t in self.tables(["position"])] or [np.zeros(0, np.int64)]
        )
        if len(positions) != total or len(np.unique(positions)) != total:
            raise ShardProblem(f"the shards in {self.folder} hold an item twice or miss one; embed again")
        place = np.empty(total, np.int64)
        place[np.argsort(positions, kind="stable")] = np.arange(total)  # row in the index of each shard row
        vectors = np.empty((total, dim), np.float32)
        content = np.empty((total, dim), np.float32)
        columns = {c: np.empty(total, object) for c in metadata_columns()}
        texts = np.empty(total, object)
        caption_rows, caption_vectors, captions = [], [], []
        start = 0
        for _, table in self.tables():
            n = table.num_rows
            rows = place[start : start + n]
            vectors[rows] = _matrix(table.column("vector"), dim)
            content[rows] = _matrix(table.column("content_vector"), dim)
            for column in columns:
                columns[column][rows] = table.column(column).to_numpy(zero_copy_only=False)
            shard_captions = table.column("captions").to_pylist()
            texts[rows] = [" ".join(c) for c in shard_captions]
            keep = np.isin(table.column("split").to_numpy(zero_copy_only=False), keep_captions_of)
            nested = table.column("caption_vectors").combine_chunks()
            offsets = nested.offsets.to_numpy()  # item i's captions: offsets[i]:offsets[i + 1]
            all_vectors = _matrix(nested.values, dim)
            for offset in np.flatnonzero(keep):
                first, last = offsets[offset], offsets[offset + 1]
                caption_rows.extend([rows[offset]] * int(last - first))
                caption_vectors.append(all_vectors[first:last])
                captions.extend(shard_captions[offset])
            start += n
            del table
        order = np.argsort(np.asarray(caption_rows, np.int64), kind="stable")
        stacked = np.concatenate(caption_vectors) if caption_vectors else np.zeros((0, dim), np.float32)
        return EmbeddedItems(
            vectors,
            pd.DataFrame(columns),
            list(texts),
            stacked[order],
            np.asarray(caption_rows, np.int64)[order],
            [captions[i] for i in order],
            content,
        )


def _matrix(column, dim: int) -> np.ndarray:
    """A list<float32> column (chunked or not) as an [n, dim] matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32()))
    flat = column.values.to_numpy()
    if flat.size != len(column) * dim:
        raise ShardProblem(f"a vector column holds {flat.size} values for {len(column)} rows of dimension {dim}")
    return flat.reshape(len(column), dim)
