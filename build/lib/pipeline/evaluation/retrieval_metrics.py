"""Retrieval metrics under the standard protocol.

A query's rank is the position (1-based) of the first relevant gallery element when the
gallery is sorted by decreasing similarity. R@K is the percentage of queries whose rank is
at most K. image→text on Flickr8k: the five captions of an image are all relevant, so a
hit is "any of them in the top K"; text→image: the caption's own image is relevant.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def first_relevant_ranks(similarity: np.ndarray, relevant: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Rank of the first relevant gallery element for each query (ties count against the query)."""
    similarity = np.asarray(similarity, np.float64)
    relevant = np.asarray(relevant, bool)
    if not relevant.any(axis=1).all():
        bad = int(np.where(~relevant.any(axis=1))[0][0])
        raise ValueError(f"query {bad} has no relevant gallery element")
    ranks = np.empty(len(similarity), np.int64)
    for start in range(0, len(similarity), chunk):
        sims, rel = similarity[start : start + chunk], relevant[start : start + chunk]
        best = np.where(rel, sims, -np.inf).max(axis=1)
        # Elements scoring at least as high as the best relevant one, irrelevant ones only.
        ranks[start : start + chunk] = 1 + ((sims >= best[:, None]) & ~rel).sum(axis=1)
    return ranks


def average_precision(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Average precision of each query's full ranking."""
    order = np.argsort(-np.asarray(similarity, np.float64), axis=1, kind="stable")
    rel = np.take_along_axis(np.asarray(relevant, bool), order, axis=1)
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)[None, :]
    return (precision * rel).sum(axis=1) / np.maximum(rel.sum(axis=1), 1)


def retrieval_report(similarity: np.ndarray, relevant: np.ndarray, ks=KS, with_map: bool = False) -> dict:
    """R@K (percent), MedR, MeanR and optionally mAP (percent)."""
    ranks = first_relevant_ranks(similarity, relevant)
    report = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}
    report["MedR"] = float(np.median(ranks))
    report["MeanR"] = float(np.mean(ranks))
    report["queries"] = int(len(ranks))
    report["gallery"] = int(similarity.shape[1])
    if with_map:
        report["mAP"] = float(100.0 * np.mean(average_precision(similarity, relevant)))
    return report


def rsum(reports: dict) -> float:
    """Sum of R@1, R@5, R@10 over the directions given."""
    return float(sum(r[f"R@{k}"] for r in reports.values() for k in KS))


def recall_curve(similarity: np.ndarray, relevant: np.ndarray, max_k: int = 50) -> np.ndarray:
    ranks = first_relevant_ranks(similarity, relevant)
    return np.array([100.0 * np.mean(ranks <= k) for k in range(1, max_k + 1)])


def class_retrieval_report(queries: np.ndarray, query_labels, gallery: np.ndarray, gallery_labels) -> dict:
    """``retrieval_report`` with mAP when relevance is the label: any gallery row of the query's class is a hit."""
    relevant = np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    return retrieval_report(np.asarray(queries) @ np.asarray(gallery).T, relevant, with_map=True)


def nearest_class_accuracy(vectors: np.ndarray, labels, class_vectors: np.ndarray, class_labels) -> float:
    """Retrieval as classification: each row of ``vectors`` takes the label of its most similar
    row of ``class_vectors``; the percentage that get their own ``labels``."""
    predicted = np.asarray(class_labels)[np.argmax(np.asarray(vectors) @ np.asarray(class_vectors).T, axis=1)]
    return float(100.0 * np.mean(predicted == np.asarray(labels)))


def chance_map(labels, query_labels, trials: int = 200, seed: int = 0) -> float:
    """mAP (percent) of random rankings: each query ranks the gallery (``labels``) at random;
    relevant = same label. The level a model must beat."""
    rng = np.random.default_rng(seed)
    relevant = np.asarray(query_labels)[:, None] == np.asarray(labels)[None, :]
    return float(
        100.0 * np.mean([average_precision(rng.random(relevant.shape), relevant).mean() for _ in range(trials)])
    )
