import numpy as np
import pytest

from pipeline.retrieval.index_kinds.exact import ExactIndex
from pipeline.retrieval.index_kinds.hnsw import HnswIndex
from pipeline.retrieval.vector_index import build_vector_index, index_kinds, load_vector_index


def unit_vectors(n, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors, queries, k, allowed=None):
    scores = queries @ vectors.T
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


@pytest.mark.parametrize("chunk_rows", [7, 64, 1000])
def test_exact_matches_numpy_brute_force_across_chunks(chunk_rows):
    vectors, queries = unit_vectors(200, 16), unit_vectors(5, 16, seed=1)
    scores, rows = ExactIndex(vectors, chunk_rows=chunk_rows).search(queries, 10)
    expected_scores, expected_rows = brute_force(vectors, queries, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    one_scores, one_rows = ExactIndex(vectors, chunk_rows=chunk_rows).search(queries[:1], 10)  # the single-query path
    np.testing.assert_array_equal(one_rows, expected_rows[:1])


def test_exact_filter_and_padding_when_fewer_rows_qualify():
    vectors, query = unit_vectors(50, 8), unit_vectors(1, 8, seed=3)
    allowed = np.zeros(50, bool)
    allowed[[3, 17, 40]] = True
    scores, rows = ExactIndex(vectors, chunk_rows=16).search(query, 5, allowed)
    expected_scores, expected_rows = brute_force(vectors, query, 3, allowed)
    np.testing.assert_array_equal(rows[0, :3], expected_rows[0])
    assert rows[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()


def test_exact_reads_a_memory_mapped_matrix(tmp_path):
    vectors = unit_vectors(300, 8)
    np.save(tmp_path / "v.npy", vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    _, rows = ExactIndex(mapped, chunk_rows=100).search(unit_vectors(2, 8, seed=5), 4)
    np.testing.assert_array_equal(rows, brute_force(vectors, unit_vectors(2, 8, seed=5), 4)[1])


def test_hnsw_finds_the_exact_neighbours_on_a_small_set_and_filters(tmp_path):
    vectors, queries = unit_vectors(2000, 32), unit_vectors(20, 32, seed=2)
    index = build_vector_index("hnsw", vectors, ef_search=128)
    _, rows = index.search(queries, 10)
    _, exact = brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
    assert recall >= 0.95
    allowed = np.arange(2000) % 2 == 0
    _, rows = index.search(queries, 10, allowed)
    assert (rows % 2 == 0).all()
    index.save(tmp_path)
    again = load_vector_index("hnsw", tmp_path, vectors, ef_search=128)
    np.testing.assert_array_equal(again.search(queries, 10)[1], index.search(queries, 10)[1])


def test_hnsw_add_keeps_the_graph_and_finds_new_vectors():
    vectors = unit_vectors(500, 16)
    index = HnswIndex(vectors[:400])
    index.add(vectors[400:])
    _, rows = index.search(vectors[450:451], 1)
    assert rows[0, 0] == 450


def test_ivfpq_refuses_a_collection_too_small_to_train():
    with pytest.raises(ValueError, match="at least 10,000 vectors"):
        build_vector_index("ivfpq", unit_vectors(100, 16))


def test_ivfpq_recall_on_a_trainable_collection():
    vectors, queries = unit_vectors(12_000, 32), unit_vectors(10, 32, seed=9)
    index = build_vector_index("ivfpq", vectors, nprobe=64)
    _, rows = index.search(queries, 10)
    _, exact = brute_force(vectors, queries, 10)
    # 8-bit product quantisation of random vectors is lossy; the top result should still be found.
    assert np.mean(rows[:, 0] == exact[:, 0]) >= 0.5


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown index kind"):
        build_vector_index("annoy", unit_vectors(3, 2))


def test_the_registry_holds_the_shipped_kinds_and_their_declarations():
    kinds = index_kinds()
    assert {"exact", "hnsw", "ivfpq"} <= set(kinds)
    for name, cls in kinds.items():
        assert cls.kind == name
        assert isinstance(cls.supports_add, bool) and isinstance(cls.supports_remove, bool)
    assert kinds["exact"].files == () and kinds["hnsw"].files == ("faiss.index",)


def test_a_kind_defined_in_one_file_is_built_saved_and_offered_by_the_cli(tmp_path, monkeypatch):
    from pipeline.cli import build_parser
    from pipeline.retrieval import vector_index

    monkeypatch.setattr(vector_index, "_KINDS", dict(vector_index._KINDS))

    @vector_index.register_index_kind
    class EveryOtherRow(ExactIndex):
        """Test-only kind: searches the even rows only (so its answers are visibly its own)."""

        kind = "every-other-row"
        supports_remove = False

        def search(self, queries, k, allowed=None, filters=None):
            even = np.zeros(len(self), bool)
            even[::2] = True
            return super().search(queries, k, even if allowed is None else even & allowed)

    vectors = unit_vectors(20, 4)
    index = build_vector_index("every-other-row", vectors)
    assert (index.search(vectors[3:4], 5)[1] % 2 == 0).all()
    assert isinstance(load_vector_index("every-other-row", tmp_path, vectors), EveryOtherRow)
    args = build_parser().parse_args(["index", "build", "--kind", "every-other-row"])
    assert args.kind == "every-other-row"
    with pytest.raises(ValueError, match="registered twice"):

        @vector_index.register_index_kind
        class Clash(ExactIndex):
            kind = "every-other-row"
