import numpy as np
import pytest

from pipeline.evaluation.retrieval_metrics import (
    average_precision,
    chance_map,
    class_retrieval_report,
    first_relevant_ranks,
    nearest_class_accuracy,
    retrieval_report,
    rsum,
)


def brute_force_ranks(similarity, relevant):
    """The definition, one query at a time: sort, walk down, stop at the first relevant."""
    ranks = []
    for sims, rel in zip(similarity, relevant):
        best = max(s for s, r in zip(sims, rel) if r)
        ranks.append(1 + sum(1 for s, r in zip(sims, rel) if s >= best and not r))
    return np.array(ranks)


def test_hand_worked_example():
    # Query 0: gallery scores 0.9 (irrelevant), 0.5 (relevant), 0.1 → rank 2.
    # Query 1: relevant item scores highest → rank 1.
    sims = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]])
    rel = np.array([[False, True, False], [False, False, True]])
    report = retrieval_report(sims, rel, ks=(1, 2))
    assert report["R@1"] == 50.0 and report["R@2"] == 100.0
    assert report["MedR"] == 1.5 and report["MeanR"] == 1.5


def test_any_of_several_relevant_counts():
    # image→text with two captions: the better-ranked caption decides.
    sims = np.array([[0.1, 0.7, 0.9, 0.8]])
    rel = np.array([[True, False, False, True]])  # captions 0 and 3
    assert first_relevant_ranks(sims, rel).tolist() == [2]


def test_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(300, 120)).round(1)  # rounding makes ties
    rel = rng.random((300, 120)) < 0.03
    rel[np.arange(300), rng.integers(0, 120, 300)] = True
    np.testing.assert_array_equal(first_relevant_ranks(sims, rel, chunk=37), brute_force_ranks(sims, rel))


def test_average_precision_by_hand():
    # Ranking: rel, irrel, rel → AP = (1/1 + 2/3) / 2 = 0.8333
    ap = average_precision(np.array([[0.9, 0.5, 0.7]]), np.array([[True, True, False]]))
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)


def test_rsum_and_no_relevant_error():
    reports = {"a": {"R@1": 10.0, "R@5": 20.0, "R@10": 30.0}, "b": {"R@1": 1.0, "R@5": 2.0, "R@10": 3.0}}
    assert rsum(reports) == 66.0
    with pytest.raises(ValueError, match="query 1 has no relevant"):
        first_relevant_ranks(np.zeros((2, 2)), np.array([[True, False], [False, False]]))


def test_nearest_class_accuracy_by_hand():
    # Classes a = e0, b = e1. Rows: e0 → a (right), e1 → b (right), (0.6, 0.8) → b (labelled a: wrong).
    vectors = np.array([[1, 0], [0, 1], [0.6, 0.8]])
    assert nearest_class_accuracy(vectors, ["a", "b", "a"], np.eye(2), ["a", "b"]) == pytest.approx(200 / 3)


def test_chance_map_matches_the_expected_average_precision_of_a_random_ranking():
    # One relevant item among N at a uniformly random rank r: AP = 1/r, so E[AP] = H_N / N.
    # With N = 4: (1 + 1/2 + 1/3 + 1/4) / 4 = 0.5208.
    assert chance_map(["a", "b", "c", "d"], ["a"], trials=4000) == pytest.approx(
        100 * (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=1.0
    )


def test_class_retrieval_report_by_hand():
    # Query e0 (class a) over gallery [e0 (b), 0.8 e0 (a), e1 (a)]: ranking 0, 1, 2; relevant
    # at ranks 2 and 3 → R@1 0, AP = (1/2 + 2/3) / 2 = 58.33%.
    report = class_retrieval_report(
        np.array([[1.0, 0.0]]), ["a"], np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), ["b", "a", "a"]
    )
    assert report["R@1"] == 0.0 and report["MedR"] == 2.0
    assert report["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
