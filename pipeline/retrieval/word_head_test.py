import numpy as np
import pytest
from scipy import sparse

from pipeline.retrieval import word_head
from pipeline.retrieval.word_head import WordHead


def test_learns_which_words_go_with_which_direction_and_round_trips(tmp_path):
    # Two clusters of unit vectors; cluster 0's captions say "dog", cluster 1's say "cat".
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype="float32")[:2]
    x = np.concatenate(
        [centres[0] + 0.1 * rng.standard_normal((50, 8)), centres[1] + 0.1 * rng.standard_normal((50, 8))]
    ).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    counts = np.zeros((100, 3))
    counts[:50, 0], counts[50:, 1], counts[:, 2] = 1, 1, 1  # vocabulary: dog, cat, a
    head = WordHead.train(x, counts, ["dog", "cat", "a"], epochs=60)
    p = head.probabilities(centres)
    assert p[0, 0] > p[0, 1] and p[1, 1] > p[1, 0]
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    words = head.predicted_words(centres, top=2, total=10.0)
    assert set(words[0]) == {"dog", "a"} and sum(words[0].values()) == pytest.approx(10.0)
    head.save(tmp_path / "head.npz")
    np.testing.assert_allclose(WordHead.load(tmp_path / "head.npz").probabilities(x), head.probabilities(x), atol=1e-6)


def test_refuses_to_train_without_any_words():
    with pytest.raises(ValueError, match="no training text"):
        WordHead.train(np.ones((3, 4), "float32"), np.zeros((3, 2)), ["a", "b"])


class WholeDenseRefused(sparse.csr_matrix):
    """Sparse word counts that refuse to become one dense [rows, vocabulary] array."""

    def toarray(self, *args, **kwargs):
        raise AssertionError("the whole count matrix was made dense")


def test_trains_on_sparse_counts_a_batch_at_a_time_and_predicts_in_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    counts = sparse.random(300, 50, density=0.1, random_state=1, format="csr")
    monkeypatch.setattr(word_head, "TRAIN_TARGET_BYTES", 100 * 50 * 4)  # 300 rows made dense 100 at a time
    head = WordHead.train(x, WholeDenseRefused(counts), [f"w{i}" for i in range(50)], epochs=2, batch_size=64)
    whole = head.predicted_words(x, top=5)
    monkeypatch.setattr(word_head, "PREDICT_ROWS", 7)  # 300 rows in chunks of 7: the same words and counts
    assert head.predicted_words(x, top=5) == whole
