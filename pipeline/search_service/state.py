"""What the search service holds between requests: the searcher (models loaded once), the
write lock, the API token and the limits. Free of HTTP: the routes in ``app.py`` call it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import re
import threading
import time
import uuid
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.data.item_ids import item_id_problem
from pipeline.io_utils import atomic_path
from pipeline.modalities import file_modalities
from pipeline.preprocessing.media_check import (
    AUDIO_KINDS,
    IMAGE_KINDS,
    MediaInfo,
    MediaLimits,
    MediaRejected,
    check_media,
    identify,
)
from pipeline.retrieval.searcher import QueryError, Searcher, SearchResponse, TextQuery, is_utf8

log = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 10_000
MAX_LABEL_CHARS = 200


# A query needs only its centre seconds (the clip length): a minute is plenty, and it bounds what
# a compressed upload (FLAC, Ogg) may claim to decode to.
SERVICE_MEDIA_LIMITS = MediaLimits(max_pixels=40_000_000, max_audio_seconds=60.0, max_audio_samples=6_000_000)


class Unauthorized(PermissionError):
    """A state-changing request without the right API token."""


class UnsupportedMedia(ValueError):
    """An upload that is neither an image nor a sound this service reads."""


class Conflict(ValueError):
    """The request clashes with what the index holds (e.g. an item id already there)."""


def sniff_media(
    data: bytes, content_type: str = "", limits: MediaLimits = MediaLimits(), name: str = "the upload"
) -> MediaInfo:
    """What an upload is, from its bytes (the declared content type only names what was meant),
    its header checked against ``limits`` before any decoder sees it. Raises UnsupportedMedia
    for a format this service does not read, QueryError for a damaged or oversized file."""
    declared = (content_type or "").split("/")[0]
    try:
        return check_media(data, None, limits)
    except MediaRejected as error:
        kind = identify(bytes(data[:16]))
        modality = kind[0] if kind else declared if declared in {m.name for m in file_modalities()} else None
        if error.unsupported and not (kind is None and modality):
            raise UnsupportedMedia(
                f"unsupported media type {content_type or 'unknown'!s}: {error}. Upload a {IMAGE_KINDS} image, "
                f"or a {AUDIO_KINDS} sound"
            ) from None
        raise QueryError(f"{name}: cannot be decoded as {modality or 'image or sound'}: {error}") from None


def check_text(value: str, field: str, max_chars: int) -> str:
    """Text a client sends that will be stored: any Unicode (line breaks, NULs and quotes
    included) that UTF-8 can hold, up to ``max_chars`` characters."""
    if len(value) > max_chars:
        raise QueryError(f"{field} is {len(value):,} characters long; at most {max_chars:,} are kept")
    if not is_utf8(value):
        raise QueryError(f"{field} holds a lone surrogate (an invalid \\ud800-\\udfff escape), which is not text")
    return value


def check_id(item_id: str) -> str:
    """``item_id`` if it follows the id rule; a QueryError (422) saying why otherwise."""
    problem = item_id_problem(item_id)
    if problem is not None:
        raise QueryError(str(problem))
    return item_id


UPLOAD_NAME = re.compile(r"[A-Za-z0-9._-]+-[0-9a-f]{12}\.(?:jpg|png|gif|bmp|wav|flac|ogg)")


def upload_name(item_id: str, suffix: str) -> str:
    """The file name of an item's upload: readable, short and safe whatever the id holds."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id)[:40].strip("._") or "item"
    return f"{readable}-{hashlib.sha1(item_id.encode('utf-8')).hexdigest()[:12]}{suffix}"


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
        limits: what an uploaded image or sound may cost to decode (pixels, seconds, samples,
            sample rates, channels); checked from its header before it is decoded.
    """

    index: str = "default"
    api_token: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_k: int = 100
    uploads_dir: Path | None = None
    limits: MediaLimits = SERVICE_MEDIA_LIMITS


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
        searcher = searcher or Searcher.open(config.index)
        self.searcher = Searcher(searcher.index, dataclasses.replace(searcher.encoder, limits=config.limits))
        self._write_lock = threading.Lock()
        self._compactor: threading.Thread | None = None
        self._remove_unreferenced_uploads()
        self.searcher.search_text("warm up")  # traces the text encoder now, not on the first request
        self.text_searches = TextSearchBatcher(lambda: self.searcher)

    @property
    def index(self):
        return self.searcher.index

    # -------------------------------------------------------------- auth

    def check_token(self, given: str | None) -> None:
        expected = self.config.api_token
        if not expected:
            raise Unauthorized(
                "this service has no API token, so it accepts no changes; start it with PIPELINE_API_TOKEN set"
            )
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
        media = sniff_media(data, content_type, self.config.limits, name)
        return self.searcher.search_media(data, media.modality, k=k, filters=filters or None, name=name)

    # -------------------------------------------------------------- items

    @property
    def uploads_dir(self) -> Path:
        return Path(self.config.uploads_dir or paths.models_dir() / "uploads" / self.index.name)

    def _remove_unreferenced_uploads(self) -> None:
        """Uploads no item refers to (an add killed between writing its file and publishing the
        index, or an item removed since) are deleted at start-up."""
        folder = self.uploads_dir.resolve()
        if not folder.is_dir():
            return
        removed = self.index.removed_rows
        referenced = {
            Path(p).name
            for column in (f"{m.name}_path" for m in file_modalities())
            for row, p in enumerate(self.index.columns[column])
            if p and row not in removed and Path(p).parent.resolve() == folder
        }
        # Only files named as upload_name names them: a folder set by mistake keeps everything else.
        stale = [
            f for f in folder.iterdir() if f.is_file() and UPLOAD_NAME.fullmatch(f.name) and f.name not in referenced
        ]
        for file in stale:
            file.unlink(missing_ok=True)
        if stale:
            log.warning(
                "removed %d upload(s) in %s that no item of index %s refers to", len(stale), folder, self.index.name
            )

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
        check_text(query, "the query", MAX_CAPTION_CHARS)
        if not query.strip():
            raise QueryError("feedback needs the query's words")
        check_id(item_id)
        with self._write_lock:
            # A new version (one change file, O(what changed)); searches keep reading the old one.
            self.searcher.index = self.index.feedback([query], [item_id])
        log.info("feedback: %r -> %s", query, item_id)
        return {"query": query, "item_id": item_id, "recorded": True}

    def remove_item(self, token: str | None, item_id: str) -> dict:
        """Removes ``item_id`` (a change file: O(1) whatever the index's size) and its upload."""
        self.check_token(token)
        check_id(item_id)
        with self._write_lock:
            item = self.item(item_id)
            if item is None:
                raise QueryError(f"index {self.index.name} has no item {item_id!r}")
            self.searcher.index = self.index.removed([item_id])
        self._remove_upload(item)
        log.info("removed item %s from index %s", item_id, self.index.name)
        return {"item_id": item_id, "removed": True}

    def _remove_upload(self, item: dict) -> None:
        folder = self.uploads_dir.resolve()
        for modality in file_modalities():
            path = item.get(f"{modality.name}_path")
            if path and Path(path).parent.resolve() == folder and UPLOAD_NAME.fullmatch(Path(path).name):
                Path(path).unlink(missing_ok=True)

    @property
    def compacting(self) -> bool:
        return self._compactor is not None and self._compactor.is_alive()

    def compact(self, token: str | None) -> dict:
        """Starts folding the index's changes into a new base in a background thread (if one is
        not running). Searches and changes go on meanwhile; the changes made while it runs are
        carried over to the new base when it is published."""
        self.check_token(token)
        pending = len(self.index.log.files)
        if not self.compacting and pending:
            self._compactor = threading.Thread(target=self._compact, name="index-compactor", daemon=True)
            self._compactor.start()
        return {"compacting": self.compacting, "changes": pending}

    def _compact(self) -> None:
        def publish(version) -> None:  # under the write lock: no change is lost between the versions
            self.searcher.index = version

        try:
            started = time.perf_counter()
            pending = len(self.index.log.files)
            self.index.compacted(hold=lambda: self._write_lock, on_published=publish)
            log.info(
                "index %s compacted (%d change files) in %.1f s",
                self.index.name,
                pending,
                time.perf_counter() - started,
            )
        except Exception:  # noqa: BLE001 - the index stays as it was; the log says why
            log.exception("compacting index %s failed; it is unchanged", self.index.name)

    def add_item(
        self, token: str | None, data: bytes | None, content_type: str, caption: str, item_id: str | None, label: str
    ) -> dict:
        """One new item (an image or a sound, a caption, or both) embedded by the index's
        model and appended to the index (a new version, written atomically)."""
        from pipeline.data.manifest import Manifest
        from pipeline.retrieval.index_builder import add_to_index

        self.check_token(token)
        caption = check_text(caption or "", "the caption", MAX_CAPTION_CHARS).strip()
        label = check_text(label or "", "the label", MAX_LABEL_CHARS).strip()
        if not data and not caption:
            raise QueryError("a new item needs a file (image or sound), a caption, or both")
        item_id = check_id((item_id or "").strip() or f"upload-{uuid.uuid4().hex[:12]}")
        row = {"item_id": item_id, "split": "added", "text": caption, "label": label}
        media = sniff_media(data, content_type, self.config.limits, f"item {item_id}") if data else None
        with self._write_lock:
            if self.item(item_id) is not None:
                raise Conflict(f"index {self.index.name} already holds an item {item_id!r}")
            folder = self.uploads_dir
            target = None
            try:
                if media is not None:
                    self.searcher.embed_media(
                        data, media.modality, name=f"item {item_id}"
                    )  # fails here, before anything is written
                    target = folder / upload_name(item_id, media.suffix)
                    with atomic_path(target) as tmp:
                        tmp.write_bytes(data)
                    row[media.modality] = target.name
                manifest = Manifest(folder, pd.DataFrame([row]), "service")
                updated = add_to_index(self.index, self.searcher.encoder, manifest)
            except BaseException:
                if target is not None:
                    target.unlink(missing_ok=True)  # the index was not changed: its upload goes too
                raise
            self.searcher.index = updated
        log.info("added item %s to index %s", item_id, updated.name)
        return self.item(item_id)
