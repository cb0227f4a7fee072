"""The search service's HTTP layer (FastAPI): routes, status codes, metrics and the web page.

The work itself is in ``ServiceState`` (state.py); this module only turns requests into its
calls and its errors into status codes: 401 without the API token, 404 for an unknown item,
409 for an item id already taken, 413 for a body over the upload limit, 415 for a content
type the route does not take, 422 for input that cannot be answered (an empty query, a file
that does not decode, ``k`` out of range, an unknown filter column). No request should end in
500; one that does is counted in the metrics and answered with a short message.

Example:
    >>> app = create_app(ServiceConfig(index="default", api_token="s3cret"))
    >>> import uvicorn; uvicorn.run(app, port=8000)
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, ValidationError

from pipeline.modalities import file_modalities
from pipeline.modalities.names import AUDIO, IMAGE
from pipeline.retrieval.index_store import IndexProblem
from pipeline.retrieval.searcher import QueryError
from pipeline.retrieval.vector_index import BackendUnavailable
from pipeline.search_service.metrics import ServiceMetrics
from pipeline.search_service.state import Conflict, ServiceConfig, ServiceState, Unauthorized, UnsupportedMedia

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # the latter: a form without a file


class SearchRequest(BaseModel):
    """A text search."""

    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="the words to search for")
    k: int = Field(10, ge=1, le=1000, description="how many results (at most the service's max_k)")
    filters: dict[str, str] = Field(default_factory=dict, description='metadata filters, e.g. {"modality": "image"}')
    ranking: Literal["dense", "nb", "weighted", "rrf"] | None = Field(None, description="default: the index's own")


class Hit(BaseModel):
    """One result. Its files are reached through the URLs; server paths are never sent."""

    rank: int
    item_id: str
    modality: str
    caption: str
    label: str
    image_url: str | None
    audio_url: str | None
    score: float
    dense_score: float
    nb_log_proba: float | None
    nb_words: list[tuple[str, float]]
    media_url: str | None


class SearchResult(BaseModel):
    query: str
    ranking: str
    notes: list[str]
    hits: list[Hit]
    took_ms: float


class FeedbackRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    item_id: str = Field(..., min_length=1, max_length=500)


UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "an image (JPEG, PNG, GIF, BMP) or a sound (WAV, FLAC, OGG)",
        },
        "k": {"type": "integer", "minimum": 1, "default": 10},
        "filters": {"type": "string", "description": "metadata filters as a JSON object"},
    },
    "required": ["file"],
}
ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "the item's image or sound (optional if a caption is given)",
        },
        "caption": {"type": "string"},
        "item_id": {"type": "string", "description": "default: a new unique id"},
        "label": {"type": "string"},
    },
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-token")


class UploadLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413, whether or not they say their
    length up front. A chunked body is counted as it arrives; once it passes the limit, the
    app's own answer to the cut body (FastAPI's 400 "error parsing the body", say) is dropped
    and the 413 sent instead."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = JSONResponse(
            {"detail": f"the request body is over the limit of {self.limit:,} bytes"}, status_code=413
        )
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen, exceeded, started = 0, False, False

        async def counted():
            nonlocal seen, exceeded
            if exceeded:
                raise _BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await too_big(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class Measured:
    """ASGI middleware: counts each answer by route and status and times it; an exception that
    escapes the app is logged and answered with a short 500 (and counted)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500
        started = False

        async def tracked_send(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:  # the last line of defence
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _error(500, "internal error; the service log has the details")(scope, receive, send)
            status = 500
        finally:
            route = scope.get("route")
            self.metrics.observe(
                scope.get("method", ""), getattr(route, "path", "unmatched"), status, time.perf_counter() - start
            )


def _parse_filters(text) -> dict[str, str]:
    if text in (None, ""):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise QueryError('filters must be a JSON object such as {"modality": "image"}') from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise QueryError('filters must be a JSON object of strings, such as {"modality": "image"}')
    return value


def create_app(config: ServiceConfig | None = None, state: ServiceState | None = None) -> FastAPI:
    """The service over ``config.index``; its models are loaded here, once."""
    state = state or ServiceState(config or ServiceConfig())
    metrics = ServiceMetrics(state)
    app = FastAPI(
        title="Cross-modal search", version="1", description="Search an index with words, an image or a sound."
    )
    app.state.service = state
    if state.config.max_upload_bytes:
        app.add_middleware(UploadLimit, limit=state.config.max_upload_bytes)  # inside Measured, so 413s are counted

    app.add_middleware(Measured, metrics=metrics)  # outermost: counts every answer, 413s and 500s included

    @app.exception_handler(QueryError)
    @app.exception_handler(IndexProblem)
    async def unanswerable(request: Request, error: Exception):
        return _error(422, str(error))

    @app.exception_handler(BackendUnavailable)
    async def unavailable(request: Request, error: BackendUnavailable):
        return _error(503, str(error))

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, error: Unauthorized):
        return JSONResponse({"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(UnsupportedMedia)
    async def unsupported(request: Request, error: UnsupportedMedia):
        return _error(415, str(error))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, error: Conflict):
        return _error(409, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        return JSONResponse({"detail": _plain(error.errors())}, status_code=422)

    def answer(response, start: float) -> JSONResponse:
        body = response.to_dict()
        body["hits"] = [public_item(hit) for hit in body["hits"]]
        # Serialised here: SearchResult documents the answer; validating it again is work on the hot path.
        return JSONResponse({**body, "took_ms": round(1e3 * (time.perf_counter() - start), 2)})

    # -------------------------------------------------------------- pages and health

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return resources.files("pipeline.search_service").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    def healthz():
        problem = state.index.backend.health()  # e.g. its Milvus server is down
        body = {
            "status": "ok" if problem is None else "unavailable",
            "index": state.index.name,
            "items": len(state.index),
        }
        if problem is None:
            return body
        return JSONResponse({**body, "problem": problem}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # -------------------------------------------------------------- search

    @app.post(
        "/search",
        response_model=SearchResult,
        responses={
            401: {},
            413: {"description": "upload too large"},
            415: {"description": "unsupported media type"},
            422: {"description": "a query that cannot be answered"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": SearchRequest.model_json_schema()},
                    "multipart/form-data": {"schema": UPLOAD_SCHEMA},
                },
            }
        },
    )
    async def search(request: Request):
        """Search with words (JSON) or with an uploaded image or sound (multipart form)."""
        start = time.perf_counter()
        content_type = _content_type(request)
        if content_type == "application/json":
            try:
                body = SearchRequest.model_validate_json(await request.body())
            except ValidationError as error:
                return JSONResponse({"detail": _plain(error.errors())}, status_code=422)
            response = await state.search_text(body.query, body.k, body.filters, body.ranking)
        elif content_type in FORM_TYPES:
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise QueryError("the form needs a 'file' part: the image or sound to search with")
                k = _int_field(form.get("k"), "k", 10)
                filters = _parse_filters(form.get("filters"))
                data = await upload.read()
                name = upload.filename or "the upload"
                response = await run_in_threadpool(
                    state.search_upload, data, upload.content_type or "", name, k, filters
                )
        else:
            raise UnsupportedMedia(
                f"unsupported content type {content_type or 'none'!s}: send JSON (a text query) or a multipart form with a file"
            )
        return answer(response, start)

    # -------------------------------------------------------------- items

    # ":path": ids from nested dataset folders hold "/" (sent URL-encoded, as media_urls does).
    # The media route comes first, so ".../media" reaches it.
    @app.get("/items/{item_id:path}/media", responses={404: {}}, response_class=FileResponse)
    def media(item_id: str, modality: Literal[IMAGE, AUDIO] | None = None):
        """The item's image or sound (``modality``), by default its first file."""
        path = state.media_path(item_id, modality)
        if path is None:
            return _error(404, f"item {item_id!r} has no {modality or 'image or sound'} file here")
        return FileResponse(path)

    @app.get("/items/{item_id:path}", responses={404: {}})
    def item(item_id: str):
        found = state.item(item_id)
        if found is None:
            return _error(404, f"no item {item_id!r} in index {state.index.name}")
        return public_item(found)

    @app.post(
        "/items",
        status_code=201,
        responses={401: {}, 409: {}, 413: {}, 415: {}, 422: {}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ITEM_SCHEMA}}}},
    )
    async def add_item(request: Request):
        """Add an item (an image or a sound, a caption, or both). Needs the API token."""
        state.check_token(_token(request))  # before the upload is read; add_item checks again for callers without HTTP
        if _content_type(request) not in FORM_TYPES:
            raise UnsupportedMedia("send the new item as a multipart form (file, caption, item_id, label)")
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            data, upload_type = (
                (None, "")
                if upload is None or isinstance(upload, str)
                else (await upload.read(), upload.content_type or "")
            )
            fields = {key: form.get(key) for key in ("caption", "item_id", "label")}
            if any(v is not None and not isinstance(v, str) for v in fields.values()):
                raise QueryError("caption, item_id and label are text fields")
        added = await run_in_threadpool(
            state.add_item,
            _token(request),
            data,
            upload_type,
            fields["caption"] or "",
            fields["item_id"],
            fields["label"] or "",
        )
        return public_item(added)

    @app.delete("/items/{item_id:path}", responses={401: {}, 404: {}, 422: {}})
    def remove_item(item_id: str, request: Request):
        """Remove an item (and its uploaded file). Needs the API token."""
        state.check_token(_token(request))
        if state.item(item_id) is None:
            return _error(404, f"no item {item_id!r} in index {state.index.name}")
        return state.remove_item(_token(request), item_id)

    @app.post("/compact", status_code=202, responses={401: {}})
    def compact(request: Request):
        """Fold the index's changes (added and removed items, feedback) into a new base, in the
        background: searches and changes go on meanwhile (they are carried over). Needs the API token."""
        return state.compact(_token(request))

    # -------------------------------------------------------------- feedback

    @app.post("/feedback", responses={401: {}, 422: {}})
    async def feedback(body: FeedbackRequest, request: Request):
        """Record that ``item_id`` was the answer a user chose for ``query``: the Naive Bayes
        stage learns it at once and keeps it across restarts. Needs the API token."""
        return await run_in_threadpool(state.feedback, body.query, body.item_id, _token(request))

    return app


def server_paths() -> tuple[str, ...]:
    """The fields that hold the server's file paths: the first file and each file modality's."""
    return ("path", *(f"{m.name}_path" for m in file_modalities()))


def media_urls(item: dict) -> dict:
    """Where a client fetches an item's files: its first (``media_url``), and each modality's
    (``image_url``, ``audio_url``, ...). The id is percent-encoded whole, so '?', '#', '/' and
    spaces in it survive the trip."""
    base = f"/items/{urllib.parse.quote(item['item_id'], safe='')}/media"
    urls = {"media_url": base if item.get("path") else None}
    for m in file_modalities():
        urls[f"{m.name}_url"] = f"{base}?modality={m.name}" if item.get(f"{m.name}_path") else None
    return urls


def public_item(item: dict) -> dict:
    """An item or hit as clients see it: its media URLs instead of the server's file paths."""
    hidden = server_paths()
    return {key: value for key, value in item.items() if key not in hidden} | media_urls(item)


def _int_field(value, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    # ASCII digits only: str.isdigit() also accepts '³' and other digits int() refuses.
    if not isinstance(value, str) or not re.fullmatch(r"\s*-?[0-9]{1,9}\s*", value):
        raise QueryError(f"{name} must be a whole number")
    return int(value)


def _plain(errors) -> list[dict]:
    """Validation errors as JSON-safe dicts (pydantic may put exceptions in 'ctx')."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]
