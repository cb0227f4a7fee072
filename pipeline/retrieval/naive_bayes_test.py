import numpy as np
import pytest
from scipy import sparse
from scipy.special import logsumexp
from sklearn.naive_bayes import MultinomialNB

from pipeline.retrieval.naive_bayes import LOG_PROBA_DECIMALS, NaiveBayesScorer, tokenize


def numpy_log_proba(counts: np.ndarray, class_counts: np.ndarray, queries: np.ndarray, alpha: float) -> np.ndarray:
    """The query-likelihood formula written out: log p(item | q) ∝ Σ_w n(w,q) log p(w|item) + log p(item)."""
    word_log_p = np.log(counts + alpha) - np.log((counts + alpha).sum(axis=1, keepdims=True))
    prior = np.log(class_counts / class_counts.sum())
    joint = queries @ word_log_p.T + prior
    return joint - logsumexp(joint, axis=1, keepdims=True)


def test_tokenize_matches_the_encoders_standardisation():
    assert tokenize("A dog's ball, on the BEACH!") == ["a", "dog's", "ball", "on", "the", "beach"]
    assert tokenize("left,right") == ["left", "right"]


def test_hand_worked_example():
    # vocabulary [dog, beach, cat]; item 0 = "dog beach", item 1 = "cat"; alpha = 1.
    # p(dog|0) = (1+1)/(2+3) = 0.4; p(dog|1) = (0+1)/(1+3) = 0.25; equal priors.
    # query "dog dog": p(0|q) = 0.4² / (0.4² + 0.25²) = 0.16 / 0.2225 = 0.71910
    nb = NaiveBayesScorer(["dog", "beach", "cat"], alpha=1.0)
    nb.fit(nb.count_matrix(["dog beach", "cat"]))
    assert np.exp(nb.log_proba(["dog dog"])[0]) == pytest.approx([0.71910, 0.28090], abs=1e-5)


def test_ranking_matches_numpy_formula_with_fractional_counts_and_priors():
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(30)]
    counts = rng.poisson(0.7, size=(12, 30)).astype(float) + rng.random((12, 30)) * (rng.random((12, 30)) < 0.1)
    class_counts = rng.integers(1, 5, size=12).astype(float)
    nb = NaiveBayesScorer(vocabulary, alpha=0.1)
    nb.fit(counts, class_counts)
    queries = [" ".join(rng.choice(vocabulary, size=4)) + " unknownword" for _ in range(6)]
    query_counts = nb.count_matrix(queries).toarray()
    expected = numpy_log_proba(counts, class_counts, query_counts, 0.1)
    got = nb.log_proba(queries)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.argsort(-got, axis=1, kind="stable"), np.argsort(-expected, axis=1, kind="stable"))


def test_unknown_words_fall_back_to_the_prior():
    nb = NaiveBayesScorer(["dog", "cat"], alpha=0.5)
    nb.fit(nb.count_matrix(["dog", "cat"]), class_counts=[3.0, 1.0])
    assert nb.unknown_words("zebra dog") == ["zebra"]
    np.testing.assert_allclose(np.exp(nb.log_proba(["zebra giraffe"])[0]), [0.75, 0.25], atol=1e-9)


def test_partial_fit_adds_the_query_words_to_the_chosen_item():
    nb = NaiveBayesScorer(["red", "circle", "blue", "square"], alpha=1.0)
    nb.fit(nb.count_matrix(["red circle", "blue square"]))
    before = nb.log_proba(["circle"])[0]
    nb.partial_fit(["circle circle"], [1])  # feedback: item 1 was the answer to "circle circle"
    counts, class_counts = nb.state()
    np.testing.assert_allclose(counts.toarray(), [[1, 1, 0, 0], [0, 2, 1, 1]])
    np.testing.assert_allclose(class_counts, [1, 2])
    expected = numpy_log_proba(counts.toarray(), class_counts, nb.count_matrix(["circle"]).toarray(), 1.0)[0]
    np.testing.assert_allclose(nb.log_proba(["circle"])[0], expected, atol=1e-9)
    assert nb.log_proba(["circle"])[0][1] > before[1]


def test_save_load_round_trip_uses_arrays_only(tmp_path):
    nb = NaiveBayesScorer(["a", "b", "c"], alpha=0.3)
    nb.fit(np.array([[1.5, 0, 2], [0, 1, 0]]), [2.0, 1.0])
    nb.save(tmp_path / "nb.npz")
    with np.load(tmp_path / "nb.npz", allow_pickle=False) as arrays:  # would raise on an object array
        assert set(arrays.files) == {"vocabulary", "alpha", "data", "indices", "indptr", "shape", "class_counts"}
    again = NaiveBayesScorer.load(tmp_path / "nb.npz")
    np.testing.assert_allclose(again.log_proba(["a c", "b"]), nb.log_proba(["a c", "b"]))


def test_append_remove_and_extend_keep_earlier_counts():
    nb = NaiveBayesScorer(["a", "b"], alpha=1.0)
    nb.fit(nb.count_matrix(["a a", "b"]), [1.0, 3.0])
    assert nb.extend_vocabulary(["b z"]) == ["z"]
    nb.append_items(nb.count_matrix(["z z z"]))
    counts, class_counts = nb.state()
    np.testing.assert_allclose(counts.toarray(), [[2, 0, 0], [0, 1, 0], [0, 0, 3]])
    np.testing.assert_allclose(class_counts, [1, 3, 1])
    nb.remove_items(np.array([True, False, True]))
    counts, class_counts = nb.state()
    np.testing.assert_allclose(counts.toarray(), [[2, 0, 0], [0, 0, 3]])
    np.testing.assert_allclose(class_counts, [1, 1])
    assert nb.log_proba(["z"])[0].argmax() == 1


def test_explain_gives_each_words_lift_over_the_average_item_and_follows_feedback():
    # vocabulary [red, circle, blue]; items "red circle", "blue"; alpha 1.
    # p(red|0) = 2/5, p(red|1) = 1/4: red's lift for item 0 = log(2/5) - (log(2/5) + log(1/4)) / 2 = 0.5·log(1.6)
    nb = NaiveBayesScorer(["red", "circle", "blue"], alpha=1.0)
    nb.fit(nb.count_matrix(["red circle", "blue"]))
    lifts = dict(nb.explain("red red zebra", 0))
    assert set(lifts) == {"red"} and lifts["red"] == pytest.approx(0.5 * np.log(1.6))
    nb.partial_fit(["red"], [1])  # now p(red|1) = 2/5 as well: no lift left
    assert dict(nb.explain("red", 0))["red"] == pytest.approx(0.0, abs=1e-12)


def test_lexical_scorer_keeps_whole_words_of_either_vocabulary():
    from pipeline.retrieval.index_builder import lexical_scorer

    # A TextVectorization vocabulary (padding, [UNK]) and a WordPiece one (markers, ## pieces).
    words = ["", "[UNK]", "dog", "[PAD]", "[CLS]", "[SEP]", "[unused0]", "run", "##s", "##ning"]
    scorer = lexical_scorer(words, ["a dog runs"], alpha=1.0)
    assert scorer.vocabulary[:2] == ["dog", "run"]
    assert not {w for w in scorer.vocabulary if w.startswith(("[", "##"))}
    assert set(scorer.vocabulary[2:]) == {"a", "runs"}  # the indexed text's new words


def multinomial_nb(counts: sparse.csr_matrix, class_counts: np.ndarray, alpha: float) -> MultinomialNB:
    """scikit-learn's MultinomialNB holding exactly these counts: item i's row once, plus
    class_counts[i] - 1 empty rows of class i (whole class counts only)."""
    extra = np.repeat(np.arange(counts.shape[0]), class_counts.astype(int) - 1)
    x = sparse.vstack([counts, sparse.csr_matrix((len(extra), counts.shape[1]))]).tocsr()
    return MultinomialNB(alpha=alpha, force_alpha=True).fit(x, np.concatenate([np.arange(counts.shape[0]), extra]))


def test_scores_are_multinomialnbs_on_the_same_counts_and_after_feedback():
    rng = np.random.default_rng(1)
    items, words = 300, 400
    vocabulary = [f"w{i}" for i in range(words)]
    counts = sparse.random(items, words, density=0.02, random_state=1, data_rvs=lambda n: rng.integers(1, 4, n)).tocsr()
    class_counts = rng.integers(1, 4, size=items).astype(float)
    nb = NaiveBayesScorer(vocabulary, alpha=0.1).fit(counts, class_counts)
    reference = multinomial_nb(counts, class_counts, 0.1)
    queries = [" ".join(rng.choice(vocabulary, size=rng.integers(1, 6))) for _ in range(50)] + ["nothing known"]

    def check():
        expected = np.round(reference.predict_log_proba(nb.count_matrix(queries)), LOG_PROBA_DECIMALS)
        got = nb.log_proba(queries)
        # The same formula summed in another order: at most one rounding step apart.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1.5 * 10.0**-LOG_PROBA_DECIMALS)
        np.testing.assert_array_equal(
            np.argsort(-got, kind="stable")[:, :10], np.argsort(-expected, kind="stable")[:, :10]
        )

    check()
    feedback, chosen = queries[:5], [3, 7, 7, 0, items - 1]
    nb.partial_fit(feedback, chosen)
    reference.partial_fit(nb.count_matrix(feedback), np.array(chosen))
    check()
    # Nothing the size of [items, vocabulary]: every array is per item, per word or per count.
    nonzero = nb.state()[0].nnz
    parts = [*vars(nb).values(), *vars(nb._base).values(), *vars(nb._overlay).values()]
    for value in parts:
        if isinstance(value, np.ndarray):
            assert value.size <= max(items, words)
        elif sparse.issparse(value):
            assert value.nnz <= nonzero


@pytest.mark.parametrize("dense_columns", [False, True])
def test_changes_share_the_base_and_score_as_a_model_fitted_on_the_changed_counts(monkeypatch, dense_columns):
    import pipeline.retrieval.naive_bayes as module

    if dense_columns:  # the frequent words' postings as dense columns, as on a large index
        monkeypatch.setattr(module, "DENSE_POSTING_MIN_ITEMS", 1)
    rng = np.random.default_rng(2)
    items, words = 200, 60
    vocabulary = [f"w{i}" for i in range(words)]
    counts = sparse.random(
        items, words, density=0.05, random_state=2, data_rvs=lambda n: rng.integers(1, 3, n)
    ).toarray()
    counts[:, 0] = 1.0  # a word every item has ("a")
    counts = sparse.csr_matrix(counts)
    old = NaiveBayesScorer(vocabulary, alpha=0.1).fit(counts)
    assert bool(old._base.dense_columns) == dense_columns
    queries = [" ".join(rng.choice(vocabulary, size=rng.integers(1, 5))) for _ in range(30)] + ["w0 newword"]
    before = old.log_proba(queries)

    changed = old.with_feedback(queries[:3], [5, 5, 190])
    changed, new_words = changed.with_vocabulary(["newword w1"])
    assert new_words == ["newword"]
    changed = changed.with_items(changed.count_matrix(["newword w0 w2", "w3"]))
    changed = changed.without_items([7, items + 1])
    assert changed._base is old._base and changed.changed_items == 5  # rows 5, 190, 7 and the two new

    np.testing.assert_array_equal(old.log_proba(queries), before)  # the old version is untouched

    # The reference: a model fitted from scratch on the changed counts, removed rows dropped.
    state, weights = changed.state()
    keep = weights > 0
    assert state.shape == (items + 2, words + 1) and not keep[7] and not keep[items + 1]
    reference = multinomial_nb(state[np.flatnonzero(keep)], weights[keep], 0.1)
    got = changed.log_proba(queries)
    assert np.isneginf(got[:, ~keep]).all()
    expected = np.round(reference.predict_log_proba(changed.count_matrix(queries)), LOG_PROBA_DECIMALS)
    np.testing.assert_allclose(got[:, keep], expected, rtol=0, atol=1.5 * 10.0**-LOG_PROBA_DECIMALS)
    flat = changed.consolidated(keep)
    assert flat.changed_items == 0
    np.testing.assert_allclose(flat.log_proba(queries), got[:, keep], rtol=0, atol=1.5 * 10.0**-LOG_PROBA_DECIMALS)
    # explain's averages leave the removed items out, as the consolidated model does.
    np.testing.assert_allclose(
        [v for _, v in changed.explain(queries[0], 5)], [v for _, v in flat.explain(queries[0], 5)], atol=1e-12
    )


def test_partial_fit_refuses_an_item_it_does_not_have():
    nb = NaiveBayesScorer(["a", "b"]).fit(sparse.csr_matrix(np.eye(2)))
    with pytest.raises(ValueError, match="0 to 1"):
        nb.partial_fit(["a"], [2])
