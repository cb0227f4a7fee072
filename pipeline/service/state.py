"""What the search service holds between requests: the searcher (models loaded once), the
write lock, the API token and the limits. Free of HTTP: the routes in ``app.py`` call it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hmac
import logging
import threading
import uuid
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.io_utils import atomic_path
from pipeline.retrieval.searcher import QueryError, Searcher, SearchResponse, TextQuery

log = logging.getLogger(__name__)

IMAGE_MAGIC = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp"}
AUDIO_MAGIC = {b"RIFF": ".wav", b"fLaC": ".flac", b"OggS": ".ogg"}


class Unauthorized(PermissionError):
    """A state-changing request without the right API token."""


class UnsupportedMedia(ValueError):
    """An upload that is neither an image nor a sound this service reads."""


class Conflict(ValueError):
    """The request clashes with what the index holds (e.g. an item id already there)."""


def sniff_media(data: bytes, content_type: str = "") -> tuple[str, str]:
    """(modality, file suffix) of an upload from its first bytes; the declared content type
    only breaks ties. Raises UnsupportedMedia."""
    for magic, suffix in IMAGE_MAGIC.items():
        if data.startswith(magic):
            return "image", suffix
    for magic, suffix in AUDIO_MAGIC.items():
        if data.startswith(magic):
            return "audio", suffix
    kind = (content_type or "").split("/")[0]
    if kind in ("image", "audio"):
        # Declared as media but not a format we know by its bytes: decoding will say what is wrong.
        return kind, ".jpg" if kind == "image" else ".wav"
    raise UnsupportedMedia(f"unsupported media type {content_type or 'unknown'!s}: upload a JPEG, PNG, GIF or BMP image, "
                           f"or a WAV, FLAC or OGG sound")


@dataclasses.dataclass
class ServiceConfig:
    """Limits and settings of one service.

    Args:
        index: the index name under saved_models/index, or its folder.
        api_token: the token that state-changing requests must carry; None: they all get 401.
        max_upload_bytes: larger request bodies get 413.
        max_k: the largest ``k`` a search may ask for.
        uploads_dir: where files added with ``POST /items`` are kept (default
            saved_models/uploads/<index name>).
    """

    index: str = "default"
    api_token: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_k: int = 100
    uploads_dir: Path | None = None


class TextSearchBatcher:
    """Runs the text searches of concurrent requests together, in one worker thread.

    Requests that arrive while a batch is being answered wait for the next one, which then
    makes one encoder call and one Naive Bayes pass for all of them (``Searcher.search_texts``).
    One thread doing all the search work also spares the GIL the contention of many threads
    that each run a search. Measured with ``make bench-serve`` (README).

    Args:
        searcher: a callable returning the current ``Searcher`` (the service swaps its index
            on feedback and new items).
        max_batch: the most queries answered together.
    """

    def __init__(self, searcher, max_batch: int = 32):
        self._searcher, self.max_batch = searcher, max_batch
        self._pending: list = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="text-search-batcher", daemon=True)
        self._thread.start()

    async def search(self, query: TextQuery) -> SearchResponse:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._pending.append((query, future, loop))
            self._ready.set()
        return await future

    def _serve(self) -> None:
        while True:
            self._ready.wait()
            with self._lock:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                if not self._pending:
                    self._ready.clear()
            if not batch:
                continue
            try:
                results = self._searcher().search_texts([query for query, _, _ in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting request, which answers 500
                log.exception("text search batch failed")
                results = [error] * len(batch)
            for (_, future, loop), result in zip(batch, results):
                loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class ServiceState:
    """The searcher and the operations the routes need. Searches run concurrently; changes
    (feedback, new items) are serialised by a lock and swapped in whole, so a search never
    sees half a change."""

    def __init__(self, config: ServiceConfig, searcher: Searcher | None = None):
        self.config = config
        self.searcher = searcher or Searcher.open(config.index)
        self._write_lock = threading.Lock()
        self.searcher.search_text("warm up")  # traces the text encoder now, not on the first request
        self.text_searches = TextSearchBatcher(lambda: self.searcher)

    @property
    def index(self):
        return self.searcher.index

    # -------------------------------------------------------------- auth

    def check_token(self, given: str | None) -> None:
        expected = self.config.api_token
        if not expected:
            raise Unauthorized("this service has no API token, so it accepts no changes; start it with PIPELINE_API_TOKEN set")
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("a valid API token is needed: send it as 'Authorization: Bearer TOKEN'")

    # -------------------------------------------------------------- search

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.config.max_k:
            raise QueryError(f"k must be between 1 and {self.config.max_k}, not {k}")

    async def search_text(self, query: str, k: int, filters: dict | None, ranking: str | None) -> SearchResponse:
        self.check_k(k)
        return await self.text_searches.search(TextQuery(query, k, filters or None, ranking))

    def search_upload(self, data: bytes, content_type: str, name: str, k: int, filters: dict | None) -> SearchResponse:
        self.check_k(k)
        if not data:
            raise QueryError(f"{name}: the upload is empty")
        modality, _ = sniff_media(data, content_type)
        return self.searcher.search_media(data, modality, k=k, filters=filters or None, name=name)

    # -------------------------------------------------------------- items

    def item(self, item_id: str) -> dict | None:
        index = self.index
        row = index.row_of.get(item_id)
        return None if row is None else {column: values[row] for column, values in index.columns.items()}

    def media_path(self, item_id: str, modality: str | None = None) -> Path | None:
        """The item's image or sound file (``modality``), or its first file; None if absent."""
        item = self.item(item_id)
        if item is None:
            return None
        found = item.get(f"{modality}_path") if modality else item.get("path")
        return Path(found) if found and Path(found).is_file() else None

    # -------------------------------------------------------------- changes

    def feedback(self, query: str, item_id: str, token: str | None) -> dict:
        """The NB stage learns that ``item_id`` answers ``query`` (``partial_fit``), saved
        atomically before the new state is swapped in."""
        self.check_token(token)
        if not query.strip():
            raise QueryError("feedback needs the query's words")
        with self._write_lock:
            index = self.index
            updated = copy.copy(index)
            updated.lexical = copy.deepcopy(index.lexical)
            updated.feedback([query], [item_id])  # partial_fit on the copy (IndexProblem for an unknown item), saved atomically
            self.searcher.index = updated
        log.info("feedback: %r -> %s", query, item_id)
        return {"query": query, "item_id": item_id, "recorded": True}

    def add_item(self, token: str | None, data: bytes | None, content_type: str, caption: str, item_id: str | None, label: str) -> dict:
        """One new item (an image or a sound, a caption, or both) embedded by the index's
        model and appended to the index (a new version, written atomically)."""
        from pipeline.data.manifest import Manifest
        from pipeline.retrieval.index_builder import add_to_index

        self.check_token(token)
        caption = (caption or "").strip()
        if not data and not caption:
            raise QueryError("a new item needs a file (image or sound), a caption, or both")
        item_id = (item_id or "").strip() or f"upload-{uuid.uuid4().hex[:12]}"
        if "/" in item_id or item_id.startswith("."):
            raise QueryError(f"item id {item_id!r} may not contain '/' or start with '.'")
        row = {"item_id": item_id, "split": "added", "text": caption, "label": (label or "").strip()}
        with self._write_lock:
            if self.item(item_id) is not None:
                raise Conflict(f"index {self.index.name} already holds an item {item_id!r}")
            folder = self.config.uploads_dir or paths.models_dir() / "uploads" / self.index.name
            if data:
                modality, suffix = sniff_media(data, content_type)
                self.searcher.embed_media(data, modality, name=f"item {item_id}")  # fails here, before anything is written
                target = Path(folder) / f"{item_id}{suffix}"
                with atomic_path(target) as tmp:
                    tmp.write_bytes(data)
                row[modality] = target.name
            manifest = Manifest(Path(folder), pd.DataFrame([row]), "service")
            updated = add_to_index(self.index, self.searcher.encoder, manifest)
            self.searcher.index = updated
        log.info("added item %s to index %s", item_id, updated.name)
        return self.item(item_id)
