"""Measures dense, Naive Bayes and hybrid rankings of text queries, and tunes the fusion weight.

The protocol (text → item): the evaluation items are indexed without their own captions
(their words are the word head's predictions, as for a photo or a sound), and each of their
captions is a query whose one relevant item is its own. Queries are split by caption position:
the first ``tune_captions`` of each item tune the weight, the others are held out and report
(with one or two captions an item, the even items' captions tune and the odd items' report).
A hybrid becomes the default only when it beats the dense ranking on the held-out queries.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.evaluation.retrieval_metrics import retrieval_report
from pipeline.retrieval.hybrid import fuse
from pipeline.retrieval.index_builder import EmbeddedItems, item_word_counts, lexical_scorer, train_word_head

log = logging.getLogger(__name__)

WEIGHTS = tuple(round(float(w), 2) for w in np.linspace(0.0, 1.0, 21))
TUNE_CAPTIONS = 2


def _report(scores: np.ndarray, owner: np.ndarray) -> dict:
    report = retrieval_report(scores, owner[:, None] == np.arange(scores.shape[1])[None, :])
    report["rsum"] = report["R@1"] + report["R@5"] + report["R@10"]
    return report


def compare_rankings(
    train: EmbeddedItems,
    evaluation: EmbeddedItems,
    run_vocabulary: list[str],
    alpha: float,
    words: int,
    seed: int = 0,
    tune_captions: int = TUNE_CAPTIONS,
) -> dict:
    """Per ranking (dense, nb, weighted, rrf): the tuned dense weight, the tuning curve, and
    Recall@K on the held-out and on all queries; plus ``choice``, the (method, weight) to use."""
    scorer = lexical_scorer(run_vocabulary, [], alpha)
    head = train_word_head(train, scorer, np.ones(len(train.vectors), bool), seed=seed)
    if head is None:
        raise ValueError("no training captions to train the word head on")
    counts, _ = item_word_counts(evaluation, scorer, head, withhold_captions=True, top=words)
    scorer.fit(counts)
    owner = evaluation.caption_owner
    queries = evaluation.captions
    tune = _position_in_item(owner) < tune_captions
    if tune.all() or not tune.any():  # items with one or two captions: tune on the even items' captions
        tune = owner % 2 == 0
    held = ~tune
    if not held.any() or not tune.any():
        raise ValueError("too few captions to tune on some queries and report on others")
    dense = evaluation.caption_vectors @ evaluation.without_words.T  # the queries are the items' own captions
    nb = scorer.log_proba(queries)
    rows = {"dense": {"weight": None}, "nb": {"weight": None}}
    for method in ("weighted", "rrf"):
        tried = {w: _report(fuse(dense[tune], nb[tune], method, w), owner[tune])["rsum"] for w in WEIGHTS}
        best = max(tried, key=lambda w: (tried[w], w))
        rows[method] = {"weight": best, "tuning_rsum": tried}
        log.info(
            "%s: best dense weight %.2f (tuning rsum %.1f; dense alone %.1f)", method, best, tried[best], tried[1.0]
        )
    for method, row in rows.items():
        scores = fuse(dense, nb, method, row["weight"] if row["weight"] is not None else 0.5)
        row["held_out"], row["all"] = _report(scores[held], owner[held]), _report(scores, owner)
    best = max(("dense", "weighted", "rrf"), key=lambda m: (rows[m]["held_out"]["rsum"], m == "dense"))
    return {
        "rows": rows,
        "choice": {"method": best, "weight": rows[best]["weight"] if best != "dense" else 1.0},
        "queries": {"tuning": int(tune.sum()), "held_out": int(held.sum())},
        "items": len(evaluation.vectors),
    }


def _position_in_item(owner: np.ndarray) -> np.ndarray:
    """For each caption, how many captions of the same item come before it."""
    seen: dict[int, int] = {}
    out = np.empty(len(owner), np.int64)
    for i, item in enumerate(owner):
        out[i] = seen.get(int(item), 0)
        seen[int(item)] = out[i] + 1
    return out
