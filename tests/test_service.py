"""The search service (FastAPI) in process with its test client, and once for real with uvicorn
through ``python -m pipeline serve``."""

import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest

from benchmarks.service_runner import running_service
from pipeline.retrieval.index_store import SearchIndex
from pipeline.retrieval.searcher import Searcher
from tests.helpers import corrupt, tone, write_audio, write_image

pytestmark = pytest.mark.slow
TOKEN = "t0ken-for-tests"
LIMIT = 300_000


@pytest.fixture(scope="module")
def shared_searcher(smoke_index):
    return Searcher.open(smoke_index)  # models loaded once for the read-only tests


def make_client(index, searcher=None, token=TOKEN, uploads=None, limit=LIMIT):
    from fastapi.testclient import TestClient

    from pipeline.search_service.app import create_app
    from pipeline.search_service.state import ServiceConfig, ServiceState

    config = ServiceConfig(index=str(index), api_token=token, max_upload_bytes=limit, max_k=50, uploads_dir=uploads)
    return TestClient(create_app(state=ServiceState(config, searcher)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(shared_searcher, smoke_index):
    return make_client(smoke_index, shared_searcher)


@pytest.fixture
def writable(smoke_index, shared_searcher, tmp_path):
    """A service over a copy of the index, for the tests that change it."""
    shutil.copytree(smoke_index, tmp_path / "idx")
    searcher = Searcher(SearchIndex.open(tmp_path / "idx"), shared_searcher.encoder)
    return make_client(tmp_path / "idx", searcher, uploads=tmp_path / "uploads"), tmp_path / "idx"


def hit_ids(answer):
    return [h["item_id"] for h in answer["hits"]]


def test_text_and_upload_searches_answer_like_the_searcher(client, shared_searcher, tiny_default_dataset):
    answer = client.post("/search", json={"query": "a red circle above a blue square", "k": 7}).json()
    expected = shared_searcher.search_text("a red circle above a blue square", k=7)
    assert hit_ids(answer) == [h.item_id for h in expected.hits] and answer["ranking"] == expected.ranking
    assert all(h["media_url"] == f"/items/{h['item_id']}/media" for h in answer["hits"]) and answer["took_ms"] > 0
    dense = client.post(
        "/search", json={"query": "a green star", "k": 3, "ranking": "dense", "filters": {"split": "test"}}
    ).json()
    assert hit_ids(dense) == [
        h.item_id
        for h in shared_searcher.search_text("a green star", k=3, ranking="dense", filters={"split": "test"}).hits
    ]

    image = sorted((tiny_default_dataset / "images").glob("test-*.png"))[0]
    answer = client.post("/search", files={"file": ("q.png", image.read_bytes(), "image/png")}, data={"k": "4"}).json()
    assert hit_ids(answer) == [h.item_id for h in shared_searcher.search_file(image, "image", k=4).hits]
    clip = sorted((tiny_default_dataset / "audio").glob("test-*.wav"))[0]
    answer = client.post(
        "/search",
        files={"file": ("q.wav", clip.read_bytes(), "audio/wav")},
        data={"k": "3", "filters": json.dumps({"modality": "image"})},
    ).json()
    assert hit_ids(answer) == [
        h.item_id for h in shared_searcher.search_file(clip, "audio", k=3, filters={"modality": "image"}).hits
    ]


def test_items_media_health_metrics_page_and_openapi(client, shared_searcher):
    metadata = shared_searcher.index.metadata
    row = metadata[metadata["modality"] == "image+audio"].iloc[0]  # a picture with a spoken caption
    item = client.get(f"/items/{row['item_id']}").json()
    assert item["caption"] == row["caption"] and item["media_url"].endswith("/media")
    media = client.get(item["media_url"])
    assert media.status_code == 200 and media.headers["content-type"] == "image/png"
    assert media.content == Path(row["path"]).read_bytes() == Path(row["image_path"]).read_bytes()
    assert client.get(item["image_url"]).content == media.content
    sound = client.get(item["audio_url"])
    assert sound.status_code == 200 and sound.headers["content-type"] in ("audio/x-wav", "audio/wav")
    assert sound.content == Path(row["audio_path"]).read_bytes() and sound.content[:4] == b"RIFF"
    image_only = metadata[metadata["modality"] == "image"]
    if len(image_only):
        assert client.get(f"/items/{image_only['item_id'].iloc[0]}/media?modality=audio").status_code == 404
    assert client.get(f"/items/{row['item_id']}/media?modality=video").status_code == 422
    assert client.get("/items/no-such-item").status_code == 404
    assert client.get("/items/no-such-item/media").status_code == 404
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "index": shared_searcher.index.name, "items": len(shared_searcher.index)}
    client.post("/search", json={"query": "a blue square"})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'search_service_requests_total{method="POST",route="/search",status="200"}' in metrics.text
    assert f"search_service_index_items {float(len(shared_searcher.index))}" in metrics.text
    assert "search_service_request_seconds_bucket" in metrics.text
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text and 'type="file"' in page.text
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]["/search"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }
    assert {"/search", "/feedback", "/items", "/items/{item_id}", "/healthz", "/metrics"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_feedback_needs_the_token_is_learned_and_survives_a_restart(writable, shared_searcher):
    client, folder = writable
    query = "a yellow frog"  # words the items do not have together
    target = SearchIndex.open(folder).metadata["item_id"].iloc[-1]
    before = client.post("/search", json={"query": query, "k": 50, "ranking": "nb"}).json()
    saved = (folder / "lexical.npz").read_bytes()
    body = {"query": query, "item_id": target}
    assert client.post("/feedback", json=body).status_code == 401
    assert client.post("/feedback", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (folder / "lexical.npz").read_bytes() == saved  # refused: nothing changed
    for _ in range(3):
        answer = client.post("/feedback", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
    after = client.post("/search", json={"query": query, "k": 50, "ranking": "nb"}).json()
    rank = lambda answer: hit_ids(answer).index(target) if target in hit_ids(answer) else 99  # noqa: E731
    assert rank(after) < rank(before) and rank(after) == 0
    # A restarted service (a new app over the same folder) has kept what it learned.
    restarted = make_client(folder, Searcher(SearchIndex.open(folder), shared_searcher.encoder))
    assert hit_ids(restarted.post("/search", json={"query": query, "k": 1, "ranking": "nb"}).json()) == [target]
    assert (
        client.post(
            "/feedback", json={"query": query, "item_id": "no-such"}, headers={"X-API-Token": TOKEN}
        ).status_code
        == 422
    )
    # Without a token configured, the service accepts no change at all.
    locked = make_client(folder, Searcher(SearchIndex.open(folder), shared_searcher.encoder), token=None)
    answer = locked.post("/feedback", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 401 and "PIPELINE_API_TOKEN" in answer.json()["detail"]


def test_new_items_are_added_and_searchable(writable, tmp_path):
    client, folder = writable
    n = len(SearchIndex.open(folder))
    picture = write_image(tmp_path / "zebra.png", colour=(240, 240, 240)).read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    form = {"caption": "a zebra crossing a river", "item_id": "zebra-1", "label": "animal"}
    assert client.post("/items", files={"file": ("z.png", picture, "image/png")}, data=form).status_code == 401
    answer = client.post("/items", files={"file": ("z.png", picture, "image/png")}, data=form, headers=auth)
    assert answer.status_code == 201, answer.text
    assert answer.json()["item_id"] == "zebra-1" and len(SearchIndex.open(folder)) == n + 1
    found = client.post("/search", json={"query": "zebra", "k": 1, "ranking": "nb"}).json()
    assert hit_ids(found) == ["zebra-1"]
    assert client.get("/items/zebra-1/media").content == picture
    assert client.post("/items", data={"caption": "again", "item_id": "zebra-1"}, headers=auth).status_code == 409
    text_only = client.post("/items", data={"caption": "a purple hexagon"}, headers=auth)
    assert text_only.status_code == 201 and text_only.json()["item_id"].startswith("upload-")
    bad = corrupt(write_image(tmp_path / "bad.png"))
    answer = client.post(
        "/items", files={"file": ("bad.png", bad.read_bytes(), "image/png")}, data={"caption": "x"}, headers=auth
    )
    assert answer.status_code == 422 and "cannot be decoded" in answer.json()["detail"]
    assert len(SearchIndex.open(folder)) == n + 2
    assert client.post("/items", data={"caption": " "}, headers=auth).status_code == 422  # neither file nor caption
    assert client.post("/items", headers=auth).status_code == 415  # no form at all
    assert client.post("/items", json={"caption": "x"}, headers=auth).status_code == 415


def test_items_are_removed_and_the_service_compacts_in_the_background(writable, tmp_path):
    client, folder = writable
    auth = {"Authorization": f"Bearer {TOKEN}"}
    n = len(SearchIndex.open(folder))
    picture = write_image(tmp_path / "kite.png", colour=(20, 200, 20)).read_bytes()
    form = {"caption": "a kite over a zebra", "item_id": "kite/1"}
    assert (
        client.post("/items", files={"file": ("k.png", picture, "image/png")}, data=form, headers=auth).status_code
        == 201
    )
    upload = client.app.state.service.item("kite/1")["image_path"]
    victim = SearchIndex.open(folder).metadata["item_id"].iloc[0]
    assert client.delete(f"/items/{victim}").status_code == 401
    assert client.delete("/items/no-such-item", headers=auth).status_code == 404
    assert client.delete("/items/kite%2F1", headers=auth).json() == {"item_id": "kite/1", "removed": True}
    assert client.delete(f"/items/{victim}", headers=auth).status_code == 200
    assert not os.path.exists(upload)  # its uploaded file went with it
    assert client.get("/items/kite%2F1").status_code == 404
    found = client.post("/search", json={"query": "kite zebra", "k": 50, "ranking": "weighted"}).json()
    assert not {"kite/1", victim} & set(hit_ids(found))
    before = {r: client.post("/search", json={"query": "a red circle", "k": 10, "ranking": r}).json() for r in RANKINGS}
    assert len(SearchIndex.open(folder)) == n - 1 and SearchIndex.open(folder).log.files

    assert client.post("/compact").status_code == 401
    started = client.post("/compact", headers=auth)
    assert started.status_code == 202 and started.json()["changes"] == 3
    client.app.state.service._compactor.join(timeout=120)
    reopened = SearchIndex.open(folder)
    assert reopened.log.files == () and len(reopened) == n - 1 and reopened.rows == n - 1
    for ranking, answer in before.items():  # a compaction changes no ranking
        after = client.post("/search", json={"query": "a red circle", "k": 10, "ranking": ranking}).json()
        assert [(h["item_id"], round(h["score"], 6)) for h in after["hits"]] == [
            (h["item_id"], round(h["score"], 6)) for h in answer["hits"]
        ]
    assert client.post("/compact", headers=auth).json() == {"compacting": False, "changes": 0}


RANKINGS = ("dense", "nb", "weighted", "rrf")


def test_bad_requests_get_4xx_with_a_message(client, tmp_path):
    def detail(response, status):
        assert response.status_code == status, (response.status_code, response.text)
        return json.dumps(response.json()["detail"])

    assert "over the limit" in detail(
        client.post("/search", files={"file": ("big.png", b"\x89PNG" + b"0" * LIMIT, "image/png")}), 413
    )
    assert "unsupported media type" in detail(
        client.post("/search", files={"file": ("a.pdf", b"%PDF-1.4 hello", "application/pdf")}), 415
    )
    assert "content type" in detail(
        client.post("/search", content=b"a red circle", headers={"Content-Type": "text/plain"}), 415
    )
    broken = corrupt(write_image(tmp_path / "broken.png")).read_bytes()
    assert "cannot be decoded as image" in detail(
        client.post("/search", files={"file": ("broken.png", broken, "image/png")}), 422
    )
    short = write_audio(tmp_path / "a.wav", tone(0.5, 16000), 16000).read_bytes()[:30]
    assert "cannot be decoded as audio" in detail(
        client.post("/search", files={"file": ("a.wav", short, "audio/wav")}), 422
    )
    assert "empty" in detail(client.post("/search", files={"file": ("e.png", b"", "image/png")}), 422)
    for k in (0, -1, 51, 10_000):
        detail(client.post("/search", json={"query": "a red circle", "k": k}), 422)
    detail(
        client.post(
            "/search",
            files={"file": ("q.png", write_image(tmp_path / "q.png").read_bytes(), "image/png")},
            data={"k": "many"},
        ),
        422,
    )
    detail(client.post("/search", json={"query": ""}), 422)
    detail(client.post("/search", json={"query": "   "}), 422)
    assert "cannot filter on" in detail(
        client.post("/search", json={"query": "a red circle", "filters": {"colour": "red"}}), 422
    )
    detail(client.post("/search", content=b"{not json", headers={"Content-Type": "application/json"}), 422)
    detail(client.post("/search", json=["a", "list"]), 422)
    detail(client.post("/search", files={"file": ("q.png", b"\x89PNG", "image/png")}, data={"filters": "{bad"}), 422)
    detail(client.post("/search", data={"k": "3"}), 422)  # a form without a file
    detail(client.post("/feedback", json={"query": "x"}), 422)


def test_malformed_requests_from_the_openapi_schema_never_get_a_500(client):
    """Bodies generated from the service's own OpenAPI schema (its request shapes, edge values,
    wrong types, missing and extra fields), arbitrary JSON, and uploads of random bytes."""
    from benchmarks.openapi_fuzz import fuzz

    def post_json(path, body):
        return client.post(path, json=body).status_code

    def post_upload(data, content_type, k):
        return client.post(
            "/search", files={"file": ("x", data, content_type)}, data={} if k is None else {"k": k}
        ).status_code

    result = fuzz(client.get("/openapi.json").json(), post_json, post_upload)
    assert result["requests"] >= 200 and not result["failures"], result["failures"]
    assert {"200", "415", "422"} <= set(result["statuses"])  # answerable and unanswerable requests both reached


def test_serve_command_runs_uvicorn_and_answers_concurrently(smoke_index, isolated_models_dir):
    with running_service(smoke_index, isolated_models_dir, TOKEN) as base:

        def search(query):
            request = urllib.request.Request(
                f"{base}/search",
                data=json.dumps({"query": query, "k": 5}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as r:
                return [h["item_id"] for h in json.loads(r.read())["hits"]]

        queries = ["a red circle", "a blue square above a green star", "two yellow crosses", "a small triangle"] * 4
        expected = {q: search(q) for q in set(queries)}
        results, errors = {}, []

        def worker(i, query):
            try:
                results[i] = search(query)
            except Exception as error:  # noqa: BLE001 - collected and reported below
                errors.append(repr(error))

        threads = [threading.Thread(target=worker, args=(i, q)) for i, q in enumerate(queries)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and all(results[i] == expected[q] for i, q in enumerate(queries))
