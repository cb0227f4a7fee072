"""The ``milvus`` index kind (Milvus Lite in the index folder): the search, filter, add, remove
and feedback tests of the other kinds and the service's tests, run again here on an index
"tiny" of kind milvus; then what only a server-backed kind can get wrong (hostile filter
values, an unreachable server, the service's health)."""

import time

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.retrieval.index_kinds.milvus import MilvusIndex, filter_expression, quoted
from pipeline.retrieval.index_store import SearchIndex
from pipeline.retrieval.vector_index import BackendUnavailable

# The same tests, collected here: their `smoke_index` is this module's (below).
from tests.test_index_search import (  # noqa: F401
    test_a_batch_of_text_queries_answers_each_as_alone,
    test_add_and_remove_without_rebuilding,
    test_feedback_teaches_the_nb_stage_online,
    test_filters_on_metadata,
    test_hybrid_rankings_fuse_the_dense_and_nb_scores,
    test_image_query_ranks_by_cosine_like_numpy,
    test_text_search_ranks_by_the_dense_score_like_numpy,
)
from tests.test_service import (  # noqa: F401
    client,
    shared_searcher,
    test_bad_requests_get_4xx_with_a_message,
    test_feedback_needs_the_token_is_learned_and_survives_a_restart,
    test_items_media_health_metrics_page_and_openapi,
    test_malformed_requests_from_the_openapi_schema_never_get_a_500,
    test_new_items_are_added_and_searchable,
    test_text_and_upload_searches_answer_like_the_searcher,
    writable,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def milvus_models_dir(isolated_models_dir, smoke_run, tmp_path_factory):
    """A models folder whose runs are the session's and whose index "tiny" is of kind milvus."""
    path = tmp_path_factory.mktemp("milvus_models")
    (path / "runs").symlink_to(isolated_models_dir / "runs")
    patch = pytest.MonkeyPatch()
    patch.setenv("PIPELINE_MODELS_DIR", str(path))
    yield path
    patch.undo()


def build_milvus_index(run, data, name, *extra) -> int:
    return main(["index", "--run", str(run), "--data", str(data), "--name", name, "--kind", "milvus", *extra])


@pytest.fixture(scope="module")
def smoke_index(milvus_models_dir, smoke_run, tiny_default_dataset):
    assert build_milvus_index(smoke_run, tiny_default_dataset, "tiny") == 0
    return milvus_models_dir / "index" / "tiny"


@pytest.fixture(scope="module")
def exact_index(smoke_run, tiny_default_dataset, milvus_models_dir):
    assert main(["index", "--run", str(smoke_run), "--data", str(tiny_default_dataset), "--name", "exact"]) == 0
    return SearchIndex.open("exact")


def test_milvus_lite_lives_in_the_index_folder_and_answers_like_exact(smoke_index, exact_index):
    index = SearchIndex.open(smoke_index)
    assert index.record.kind == "milvus" and (smoke_index / "milvus.db").is_dir()
    assert index.record.params["milvus_index"] == "FLAT" and index.backend.health() is None
    queries = np.asarray(exact_index.vectors[:50])  # 50 item vectors as queries: every row's neighbours
    milvus_scores, milvus_rows = index.backend.search(queries, 10)
    exact_scores, exact_rows = exact_index.backend.search(queries, 10)
    np.testing.assert_allclose(milvus_scores, exact_scores, atol=1e-5)
    # Rows with equal scores may come in either order; everything else must agree.
    for q in range(len(queries)):
        assert set(milvus_rows[q][milvus_scores[q] < exact_scores[q][-1] - 1e-5]) <= set(exact_rows[q])
        assert (milvus_rows[q] == exact_rows[q]).mean() >= 0.9


def test_filters_run_in_milvus_with_values_escaped(smoke_index):
    assert quoted('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert (
        filter_expression({"modality": "image", "split": "dev"})
        == 'ARRAY_CONTAINS(modality, "image") and split == "dev"'
    )
    with pytest.raises(ValueError, match="not a metadata column"):
        filter_expression({"split == 'dev' or 1": "x"})
    index = SearchIndex.open(smoke_index)
    query = np.asarray(index.vectors[:1])
    scores, rows = index.backend.search(query, 50, filters={"split": "dev"})
    found = rows[0][rows[0] >= 0]
    assert len(found) == 16 and set(index.metadata["split"].iloc[found]) == {"dev"}
    # A value that would end the string literal and widen the filter if it were not escaped.
    for hostile in ['dev" or split != "', "dev\\", '" or 1 == 1 or "']:
        scores, rows = index.backend.search(query, 50, filters={"split": hostile})
        assert (rows == -1).all()


def test_an_unreachable_server_is_a_clear_error_within_ten_seconds(smoke_run, tiny_default_dataset, capsys):
    start = time.monotonic()
    # The discard port: nothing listens there.
    code = build_milvus_index(smoke_run, tiny_default_dataset, "nowhere", "--milvus-uri", "http://127.0.0.1:9")
    assert code == 2 and time.monotonic() - start < 10
    assert "cannot reach Milvus at http://127.0.0.1:9" in capsys.readouterr().err


def test_health_and_searches_report_a_server_that_went_away(smoke_index, shared_searcher, monkeypatch):  # noqa: F811
    from tests.test_service import make_client

    index = SearchIndex.open(smoke_index)
    down = MilvusIndex(index.vectors, uri="http://127.0.0.1:9", timeout=1, _folder=smoke_index, collection="gone")
    assert "cannot reach Milvus at http://127.0.0.1:9" in down.health()
    with pytest.raises(BackendUnavailable, match="127.0.0.1:9"):
        down.search(np.asarray(index.vectors[:1]), 5)
    from pipeline.retrieval.searcher import Searcher

    service = make_client(smoke_index, Searcher(index, shared_searcher.encoder))
    assert service.get("/healthz").json()["status"] == "ok"
    monkeypatch.setattr(index, "backend", down)  # the server goes away while the service runs
    health = service.get("/healthz")
    assert health.status_code == 503 and "127.0.0.1:9" in health.json()["problem"]
    answer = service.post("/search", json={"query": "a red circle", "k": 3})
    assert answer.status_code == 503 and "cannot reach Milvus" in answer.json()["detail"]


def test_unknown_milvus_index_type_and_uri_without_the_kind_are_refused(smoke_run, capsys):
    with pytest.raises(ValueError, match="milvus_index must be one of"):
        MilvusIndex(np.zeros((1, 4), np.float32), milvus_index="DISKANN")
    assert main(["index", "--run", str(smoke_run), "--name", "x", "--milvus-uri", "http://h:19530"]) == 2
    assert "--milvus-uri is for --kind milvus" in capsys.readouterr().err


def test_adds_and_removals_change_the_collection_in_place(smoke_index, tmp_path):
    import shutil

    shutil.copytree(smoke_index, tmp_path / "copy")
    index = SearchIndex.open(tmp_path / "copy")
    collection, n = index.record.params["collection"], len(index)
    rows = [3, 4]
    metadata = index.metadata.iloc[rows].assign(item_id=["again-3", "again-4"])
    counts = index.naive_bayes.count_matrix(metadata["caption"].tolist())
    changed = index.added(np.asarray(index.vectors[rows]), metadata, counts).removed(
        [index.metadata["item_id"].iloc[0]]
    )
    assert changed.record.params["collection"] == collection  # no new collection for a change
    assert changed.backend._count() == n + 1 and changed.backend.health() is None
    scores, found = changed.search_dense(np.asarray(index.vectors[[3]]), 3)
    assert {3, n} <= set(found.tolist()) and 0 not in changed.search_dense(np.asarray(index.vectors[[0]]), 50)[1]
    changed.backend.close()
    reopened = SearchIndex.open(tmp_path / "copy")  # the changes replayed: upserts and deletes are idempotent
    assert reopened.backend._count() == n + 1 and len(reopened) == n + 1
    compacted = reopened.compacted()
    assert compacted.record.params["collection"] != collection and compacted.backend._count() == n + 1
    compacted.backend.close()
