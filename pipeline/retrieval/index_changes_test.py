"""Index changes as files: adds, removals and feedback cost one file each, survive a reopen, a
crash between writing a change and publishing it leaves no trace, and ``compact`` folds them
into a new base without changing any ranking."""

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from pipeline.records import IndexModel, IndexRecord, RankingChoice
from pipeline.retrieval import index_changes
from pipeline.retrieval.index_store import IndexProblem, SearchIndex
from pipeline.retrieval.naive_bayes import NaiveBayesScorer, QueryScores
from pipeline.retrieval.searcher import Searcher, TextQuery

DIM = 16
WORDS = ["red", "blue", "green", "circle", "square", "star", "big", "small", "a", "the"]


class HashingTextEncoder:
    """Query vectors from the words' fixed random directions: what a text tower gives, minus the model."""

    def encode_text(self, texts):
        out = []
        for text in texts:
            v = np.zeros(DIM, np.float32)
            for word in text.split():
                seed = int(hashlib.sha1(word.encode()).hexdigest()[:8], 16)
                v += np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
            out.append(v / max(np.linalg.norm(v), 1e-6))
        return np.stack(out)


def captions(rng, n):
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) for _ in range(n)]


def unit(rng, n):
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(folder, kind="exact", items=300, seed=0):
    rng = np.random.default_rng(seed)
    texts = captions(rng, items)
    scorer = NaiveBayesScorer(WORDS, alpha=0.1)
    scorer.fit(scorer.count_matrix(texts))
    metadata = pd.DataFrame({"item_id": [f"item-{i}" for i in range(items)], "caption": texts, "modality": "text"})
    record = IndexRecord(
        folder.name, IndexModel("none", "", "test"), "", "all", False, RankingChoice("weighted", 0.5), 0.1, kind
    )
    return SearchIndex.write(folder, record, unit(rng, items), metadata, scorer, None)


def add(index, rng, n, prefix):
    texts = [t + " zebra" for t in captions(rng, n)]  # a word new to the vocabulary
    scorer, _ = index.naive_bayes.with_vocabulary(texts)
    metadata = pd.DataFrame({"item_id": [f"{prefix}-{i}" for i in range(n)], "caption": texts, "modality": "text"})
    return index.added(unit(rng, n), metadata, scorer.count_matrix(texts), new_vocabulary=scorer.vocabulary)


QUERIES = ["a red circle", "the big blue square", "green star", "small zebra", "red red red"]


def answers(index, k=10):
    """Every ranking's top k (ids and scores) for QUERIES, and with a filter."""
    searcher = Searcher(index, HashingTextEncoder())
    out = {}
    for ranking in ("dense", "nb", "weighted", "rrf"):
        queries = [TextQuery(q, k, None, ranking) for q in QUERIES]
        queries += [TextQuery(QUERIES[0], k, {"modality": "text"}, ranking)]
        for q, response in zip(queries, searcher.search_texts(queries)):
            out[(ranking, q.query, bool(q.filters))] = [(h.item_id, round(h.score, 6)) for h in response.hits]
    return out


def base_digest(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file() and p.name != "changes.json"}


def test_changes_are_files_the_reopened_index_answers_the_same_and_compact_changes_no_ranking(tmp_path):
    folder = tmp_path / "idx"
    index = build(folder)
    base = base_digest(folder)
    rng = np.random.default_rng(1)
    index = add(index, rng, 5, "new")
    index = index.removed(["item-3", "new-1"])
    index = index.feedback(["small zebra"] * 3 + ["red circle"], ["new-2"] * 3 + ["item-7"])
    index = add(index, rng, 3, "more")
    assert base_digest(folder) == base  # the base's files were not written again
    assert [f.split(".")[1] for f in index.log.files] == ["add", "remove", "feedback", "add"]
    assert len(index) == 300 + 5 - 2 + 3 and index.rows == 308
    assert "item-3" not in index.row_of and index.row_of["more-2"] == 307

    expected = answers(index)
    assert all(not {"item-3", "new-1"} & {i for i, _ in hits} for hits in expected.values())
    assert expected[("nb", "small zebra", False)][0][0] == "new-2"  # learned from the feedback
    assert answers(SearchIndex.open(folder)) == expected  # replayed from the files

    compacted = index.compacted()
    assert compacted.log.files == () and not (folder / "changes").exists()
    assert len(compacted) == len(index) and compacted.rows == len(index)
    assert compacted.metadata["item_id"].tolist() == index.metadata["item_id"].tolist()
    assert answers(compacted) == expected
    assert answers(SearchIndex.open(folder)) == expected


def test_a_change_killed_before_its_manifest_is_not_part_of_the_index(tmp_path, monkeypatch):
    folder = tmp_path / "idx"
    index = build(folder, items=50)
    expected = answers(index)

    def killed(*args):
        raise KeyboardInterrupt("killed between writing the change file and publishing it")

    monkeypatch.setattr(index_changes, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        add(index, np.random.default_rng(2), 2, "lost")
    monkeypatch.undo()
    orphans = list((folder / "changes").glob("*.npz"))
    assert len(orphans) == 1  # written, never published
    reopened = SearchIndex.open(folder)
    assert len(reopened) == 50 and "lost-0" not in reopened.row_of and answers(reopened) == expected
    after = reopened.removed(["item-0"])  # the next write clears the orphan
    assert [p.name for p in (folder / "changes").glob("*.npz")] == list(after.log.files)
    assert len(SearchIndex.open(folder)) == 49


def test_a_damaged_change_file_is_named_and_a_stale_version_cannot_write(tmp_path):
    folder = tmp_path / "idx"
    index = build(folder, items=40)
    first = index.removed(["item-1"])
    with pytest.raises(IndexProblem, match="changed by another process"):
        index.removed(["item-2"])  # written from the version before `first`: it would lose item-1's removal
    change = folder / "changes" / first.log.files[0]
    change.write_bytes(change.read_bytes()[:20])
    with pytest.raises(IndexProblem, match=rf"changes/{first.log.files[0]} is damaged"):
        SearchIndex.open(folder)


def test_hnsw_index_scores_its_added_rows_beside_the_graph_until_compact(tmp_path):
    folder = tmp_path / "idx"
    index = build(folder, kind="hnsw", items=200)
    index = add(index, np.random.default_rng(3), 4, "new").removed(["item-0"])
    vector = index.vectors[[201]]  # an added row's own vector
    scores, rows = index.search_dense(vector, 5)
    assert rows[0] == 201 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert 0 not in index.search_dense(index.vectors[[0]], 50)[1]
    np.testing.assert_array_equal(rows, np.argsort(-(np.asarray(index.vectors) @ vector[0]))[:5])
    compacted = index.compacted()
    assert compacted.rows == 203 and compacted.search_dense(vector, 1)[1][0] == 200  # row 201 less the one removed


def test_exact_top_k_breaks_ties_by_row_however_the_partition_falls():
    from pipeline.retrieval.vector_index import top_k

    rng = np.random.default_rng(5)
    for _ in range(100):  # one decimal: many equal scores, as items with the same vector give
        scores = np.round(rng.normal(size=(3, int(rng.integers(1, 400)))), 1).astype(np.float32)
        k = int(rng.integers(1, 60))
        np.testing.assert_array_equal(top_k(scores, k)[1], np.argsort(-scores, axis=1, kind="stable")[:, :k])


def test_the_naive_bayes_top_rows_are_a_stable_sort_of_the_rounded_scores():
    rng = np.random.default_rng(0)
    cases = [(10, 3, None), (50_000, 100, None), (200_003, 1000, None), (100_000, 100, "narrow"), (300_000, 100, None)]
    for n, count, mask in cases:
        # Scores one rounding step apart and exact repeats: rounding makes some of them tie, broken by row.
        joint = rng.normal(size=n) * 3 + np.round(rng.normal(size=n), 1) + rng.integers(0, 3, n) * 4e-10
        allowed = rng.random(n) < 0.001 if mask else None  # a narrow filter: fewer allowed rows than count
        scores = QueryScores(joint, log_z=0.3)
        rounded = np.where(allowed, scores.rounded(), -np.inf) if mask else scores.rounded()
        np.testing.assert_array_equal(scores.top(count, allowed), np.argsort(-rounded, kind="stable")[:count])


def test_change_files_hold_arrays_only(tmp_path):
    folder = tmp_path / "idx"
    index = add(build(folder, items=20), np.random.default_rng(4), 2, "new")
    for name in index.log.files:
        with np.load(folder / "changes" / name, allow_pickle=False) as arrays:  # would raise on an object array
            assert all(arrays[key].dtype != object for key in arrays.files)
    assert os.path.getsize(folder / "changes" / index.log.files[0]) < 4096


@pytest.mark.parametrize("ranking", ["dense", "nb", "weighted", "rrf"])
def test_the_exported_ranker_over_a_changed_index_ranks_as_the_searcher(tmp_path, ranking):
    import tensorflow as tf

    from pipeline.retrieval.graph_ranking import HybridRanker
    from pipeline.retrieval.searcher import MIN_CANDIDATES

    index = build(tmp_path / "idx", items=150)
    index = add(index, np.random.default_rng(6), 4, "new").removed(["item-2", "new-0"])
    index = index.feedback(["small zebra"], ["new-3"])
    vectors, metadata, scorer = index.live_arrays()  # what an export of this version holds
    ranker = HybridRanker(vectors, metadata["item_id"].tolist(), scorer, ranking, 0.5, 10, MIN_CANDIDATES)
    queries = QUERIES + ["zebra"]
    encoded = HashingTextEncoder().encode_text(queries)
    got = ranker(tf.constant(encoded), tf.constant(queries))
    expected = Searcher(index, HashingTextEncoder()).search_texts([TextQuery(q, 10, None, ranking) for q in queries])
    for q, answer in enumerate(expected):
        assert [i.decode() for i in got["item_ids"].numpy()[q]] == [h.item_id for h in answer.hits]
        np.testing.assert_allclose(got["scores"].numpy()[q], [h.score for h in answer.hits], atol=1e-5)


def test_changes_published_while_a_compaction_runs_are_carried_over(tmp_path):
    import contextlib

    folder = tmp_path / "idx"
    index = add(build(folder, items=120), np.random.default_rng(7), 3, "new").removed(["item-4"])
    during = {}

    @contextlib.contextmanager
    def writer_got_in_first():
        # Another writer published two changes while the new base was being built, from the
        # version the compaction started from; the compaction takes the lock after them.
        later = index.removed(["item-9"])
        during["version"] = add(later, np.random.default_rng(8), 2, "late")
        yield

    published = []
    compacted = index.compacted(hold=writer_got_in_first, on_published=published.append)
    assert published == [compacted] and [f.split(".")[1] for f in compacted.log.files] == ["remove", "add"]
    assert "item-9" not in compacted.row_of and compacted.row_of["late-1"] == compacted.rows - 1
    assert compacted.base.rows == 120 + 3 - 1  # the base holds what the compaction started from
    assert answers(compacted) == answers(during["version"])  # same items, same rankings
    assert answers(SearchIndex.open(folder)) == answers(during["version"])
