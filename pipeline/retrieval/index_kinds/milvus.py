"""``milvus``: the vectors and their metadata in a Milvus collection; filters run inside Milvus.

By default the collection lives in a Milvus Lite database inside the index folder
(``milvus.db``): embedded, started by ``pymilvus`` in this process, nothing to install beyond
requirements.txt. ``uri="http://host:19530"`` puts the same index on a Milvus cluster (or
standalone server). A build or a compaction makes a new collection, and the one it replaces is
dropped once the new base is published; an add or a removal is applied to the collection in
place (upsert and delete by row, after the change is published in the index folder, and again,
idempotently, whenever the index is opened), so it costs O(what changed).

The index folder keeps ``embeddings.npy`` as every kind does: the ranking rescores its
candidates with it, and a new version is inserted from it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from pathlib import Path

import numpy as np

from pipeline.modalities.base import first_line
from pipeline.retrieval.index_kinds.ivfpq import default_nlist
from pipeline.retrieval.vector_index import BackendUnavailable, VectorIndex, pad_results, register_index_kind

log = logging.getLogger(__name__)

LITE_FILE = "milvus.db"
INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT")
INSERT_ROWS = 5_000  # rows per insert call: bounded request size
MAX_LIMIT = 16_384  # Milvus's largest top-k
MAX_TEXT = 65_535  # Milvus's longest VARCHAR (bytes)
CONNECT_SECONDS = 5.0  # an unreachable server is reported within this
ROW = "row"  # primary key: the row of embeddings.npy and metadata.parquet


def quoted(value: str) -> str:
    """``value`` as a Milvus string literal: backslashes and double quotes escaped."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expression(filters: dict[str, str]) -> str:
    """A Milvus boolean expression for ``column=value`` filters (``modality`` matches any part
    of a multi-modality item, as ``SearchIndex.filter_mask`` does). Columns must be identifiers
    (``filter_mask`` has already checked them against the metadata)."""
    terms = []
    for column, value in filters.items():
        if not str(column).isidentifier():
            raise ValueError(f"cannot filter on {column!r}: not a metadata column name")
        terms.append(
            f"ARRAY_CONTAINS(modality, {quoted(value)})" if column == "modality" else f"{column} == {quoted(value)}"
        )
    return " and ".join(terms)


def _utf8_prefix(text: str, limit: int = MAX_TEXT) -> str:
    data = str(text).encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


@register_index_kind
class MilvusIndex(VectorIndex):
    """Top-k by inner product in a Milvus collection, metadata filters pushed down.

    Args:
        vectors: [n, dim] float32 unit vectors (the index's ``embeddings.npy``).
        uri: a Milvus server (``http://host:19530``); None: Milvus Lite in the index folder.
        milvus_index: ``FLAT`` (exact), ``HNSW`` or ``IVF_FLAT``.
        m, ef_construction, ef_search: HNSW's links per node and candidate lists.
        nlist, nprobe: IVF_FLAT's cells (default about 4·sqrt(n)) and cells visited per query.
        timeout: seconds to wait for the server on any call before a clear error.
        collection: the collection that holds this version (set when it is built).

    Example:
        >>> index = MilvusIndex(vectors, milvus_index="HNSW")  # doctest: +SKIP
        >>> index.save(folder, metadata)                        # doctest: +SKIP
        >>> scores, rows = index.search(queries, k=10, filters={"modality": "image"})  # doctest: +SKIP
    """

    kind = "milvus"
    files = (LITE_FILE,)
    live_changes = True

    def __init__(
        self,
        vectors,
        uri: str | None = None,
        milvus_index: str = "FLAT",
        m: int = 16,
        ef_construction: int = 100,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 16,
        timeout: int = 10,
        collection: str | None = None,
        _folder: Path | None = None,
        **params,
    ):
        milvus_index = str(milvus_index).upper()
        if milvus_index not in INDEX_TYPES:
            raise ValueError(f"milvus_index must be one of {', '.join(INDEX_TYPES)}, got {milvus_index!r}")
        if _folder is None:
            # A new version always gets its own collection: the one it replaces stays searchable
            # until the new version is published.
            collection = f"pipeline_{uuid.uuid4().hex[:16]}"
        super().__init__(
            vectors,
            uri=uri,
            milvus_index=milvus_index,
            m=m,
            ef_construction=ef_construction,
            ef_search=ef_search,
            nlist=nlist,
            nprobe=nprobe,
            timeout=max(1, math.ceil(float(timeout))),
            collection=collection,
            **params,
        )
        self.folder = None if _folder is None else Path(_folder)
        self._client = None
        self._rows: int | None = None  # the rows it must hold, once verify has said (None: the base's)
        self._columns: set[str] = set()

    # ------------------------------------------------------------ connection

    @property
    def collection(self) -> str:
        return self.params["collection"]

    def _uri(self, folder: Path | None = None) -> str:
        if self.params["uri"]:
            return self.params["uri"]
        folder = folder or self.folder
        if folder is None:
            raise RuntimeError("a Milvus Lite index is searched once it is saved in its folder")
        return str(Path(folder).absolute() / LITE_FILE)

    def _connect(self, folder: Path | None = None):
        from pymilvus import MilvusClient

        uri, timeout = self._uri(folder), min(float(self.params["timeout"]), CONNECT_SECONDS)
        start = time.monotonic()
        try:
            # An alias of its own: pymilvus would otherwise hand back a cached connection to a
            # Milvus Lite server that has since been stopped (a replaced version of the folder).
            return MilvusClient(uri=uri, timeout=timeout, alias=f"pipeline-{uuid.uuid4().hex}")
        except Exception as error:  # noqa: BLE001 - pymilvus raises MilvusException and gRPC errors
            hint = (
                "Milvus Lite opens a database in one process at a time: stop the other process using this index "
                "(make serve, say), or put the index on a Milvus server (--milvus-uri)"
                if not self.params["uri"]
                else "start it, or build the index with another --milvus-uri or --kind"
            )
            raise BackendUnavailable(
                f"cannot reach Milvus at {uri} (after {time.monotonic() - start:.1f} s: {_short(error)}); {hint}"
            ) from None

    @property
    def client(self):
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            # An int: pymilvus bounds its retries by the timeout only when it is one.
            return fn(*args, timeout=int(self.params["timeout"]), **kwargs)
        except BackendUnavailable:
            raise
        except Exception as error:  # noqa: BLE001
            raise BackendUnavailable(
                f"Milvus at {self._uri()} failed to {what} collection {self.collection}: {_short(error)}"
            ) from None

    def close(self) -> None:
        """Drops the connection (and stops this process's Milvus Lite server for the folder)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._client = None
        if not self.params["uri"] and self.folder is not None:
            _release_lite(self.folder)

    def moved(self, folder: Path) -> None:
        self.close()
        self.folder = Path(folder)

    def health(self) -> str | None:
        try:
            rows = self._count()
        except BackendUnavailable as error:
            return str(error)
        expected = self._rows if self._rows is not None else len(self)
        return (
            None if rows == expected else f"Milvus collection {self.collection} holds {rows} rows, the index {expected}"
        )

    def _count(self) -> int:
        found = self._call(
            "count the rows of", self.client.query, self.collection, filter="", output_fields=["count(*)"]
        )
        return int(found[0]["count(*)"])

    # ------------------------------------------------------------ changes in place

    def insert(self, first_row: int, vectors, metadata) -> None:
        self._call("upsert into", self.client.upsert, self.collection, self._records(first_row, vectors, metadata))
        self._rows = None  # checked again by verify

    def delete(self, rows) -> None:
        rows = [int(r) for r in rows]
        if rows:
            self._call("delete from", self.client.delete, self.collection, filter=f"{ROW} in {rows}")
        self._rows = None

    def verify(self, rows: int) -> None:
        self._rows = int(rows)
        self._check_rows()

    def _records(self, first_row: int, vectors, metadata) -> list[dict]:
        columns = [
            c for c in (metadata.columns if metadata is not None else []) if c != "modality" and c in self._columns
        ]
        values = {c: metadata[c].to_numpy() for c in columns} if metadata is not None else {}
        parts = metadata["modality"].to_numpy() if metadata is not None else None
        records = []
        for i, vector in enumerate(np.asarray(vectors, np.float32)):
            record = {ROW: first_row + i, "vector": vector, "modality": []}
            if parts is not None:
                record["modality"] = [p for p in str(parts[i]).split("+") if p]
                record.update({c: _utf8_prefix(values[c][i]) for c in columns})
            records.append(record)
        return records

    # ------------------------------------------------------------ build and load

    def save(self, folder: Path, metadata=None) -> None:
        """Creates this version's collection and inserts every row (vector and metadata) in batches."""
        from pymilvus import DataType, MilvusClient

        self.folder = Path(folder)
        client = self.client
        columns = [c for c in (metadata.columns if metadata is not None else []) if c != "modality"]
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ROW, DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("modality", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=64, max_length=256)
        for column in columns:
            schema.add_field(column, DataType.VARCHAR, max_length=MAX_TEXT)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vector", metric_type="IP", **self._index_spec())
        if self._call("check", client.has_collection, self.collection):
            self._call("drop", client.drop_collection, self.collection)
        self._call("create", client.create_collection, self.collection, schema=schema, index_params=index_params)
        self._columns = set(columns)
        for start in range(0, len(self), INSERT_ROWS):
            end = min(start + INSERT_ROWS, len(self))
            block = None if metadata is None else metadata.iloc[start:end]
            records = self._records(start, self.vectors[start:end], block)
            self._call("insert into", client.insert, self.collection, records)
        self._call("flush", client.flush, self.collection)
        self._check_rows()

    def _index_spec(self) -> dict:
        kind = self.params["milvus_index"]
        if kind == "HNSW":
            return {
                "index_type": "HNSW",
                "params": {"M": self.params["m"], "efConstruction": self.params["ef_construction"]},
            }
        if kind == "IVF_FLAT":
            nlist = self.params["nlist"] or default_nlist(len(self))
            return {"index_type": "IVF_FLAT", "params": {"nlist": nlist}}
        return {"index_type": "FLAT", "params": {}}

    def _search_params(self) -> dict:
        kind = self.params["milvus_index"]
        if kind == "HNSW":
            return {"metric_type": "IP", "params": {"ef": self.params["ef_search"]}}
        if kind == "IVF_FLAT":
            return {"metric_type": "IP", "params": {"nprobe": self.params["nprobe"]}}
        return {"metric_type": "IP", "params": {}}

    def _check_rows(self) -> None:
        problem = self.health()
        if problem:
            raise BackendUnavailable(problem)

    @classmethod
    def load(cls, folder, vectors, **params):
        index = cls(vectors, _folder=Path(folder), **params)
        if not params.get("collection"):
            raise ValueError("index.json names no Milvus collection")
        if not index.params["uri"] and not (Path(folder) / LITE_FILE).exists():
            raise FileNotFoundError(f"no {LITE_FILE} in {folder}")
        # Reachable, and holding every row: checked before any search (by SearchIndex.read, once
        # the changes since the base are applied: rows added and removed in place are counted).
        index._call("load", index.client.load_collection, index.collection)
        described = index._call("describe", index.client.describe_collection, index.collection)
        index._columns = {f["name"] for f in described.get("fields", [])} - {ROW, "vector", "modality"}
        return index

    @classmethod
    def preflight(cls, params: dict) -> None:
        probe = cls(np.zeros((0, 1), np.float32), **params)  # checks milvus_index
        if probe.params["uri"]:
            probe._connect().close()

    @classmethod
    def dropped(cls, folder: Path, params: dict) -> None:
        """The version in ``folder`` was replaced: its server collection is dropped (a Lite
        database goes with its folder; this process's server for it is stopped)."""
        if not params.get("uri"):
            _release_lite(folder)
            return
        try:
            from pymilvus import MilvusClient

            timeout = int(params.get("timeout", 10))
            client = MilvusClient(
                uri=params["uri"], timeout=min(timeout, CONNECT_SECONDS), alias=f"pipeline-{uuid.uuid4().hex}"
            )
            client.drop_collection(params["collection"], timeout=timeout)
            client.close()
        except Exception as error:  # noqa: BLE001 - the new version is published; the old one only costs space
            log.warning("could not drop the replaced Milvus collection %s: %s", params.get("collection"), _short(error))

    # ------------------------------------------------------------ search

    def search(self, queries, k, allowed=None, filters=None):
        queries = np.ascontiguousarray(queries, np.float32)
        limit = min(k, len(self), MAX_LIMIT)
        if limit == 0:
            empty = np.zeros((len(queries), 0))
            return pad_results(empty.astype(np.float32), empty.astype(np.int64), k)
        if filters:
            expression = filter_expression(filters)
        elif allowed is not None:
            expression = f"{ROW} in {np.flatnonzero(allowed).tolist()}"
        else:
            expression = ""
        found = self._call(
            "search",
            self.client.search,
            self.collection,
            data=[q for q in queries],
            limit=limit,
            filter=expression,
            search_params=self._search_params(),
            output_fields=[],
            anns_field="vector",
        )
        scores = np.full((len(queries), limit), -np.inf, np.float32)
        rows = np.full((len(queries), limit), -1, np.int64)
        for q, hits in enumerate(found):
            for rank, hit in enumerate(hits):
                scores[q, rank] = hit["distance"]
                rows[q, rank] = hit[ROW] if ROW in hit else hit["id"]
        return pad_results(scores, rows, k)


def _short(error: Exception) -> str:
    return first_line(error)[:300]


def _release_lite(folder: Path) -> None:
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - milvus-lite is in requirements.txt
        return
    server_manager_instance.release_server(str(Path(folder).absolute() / LITE_FILE))
