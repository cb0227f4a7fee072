import numpy as np
import pytest

from pipeline.evaluation.embedder import SplitEmbeddings
from pipeline.evaluation.evaluator import TWIN_CHOICE, WORD_ORDER_SUBSET, evaluate_embeddings, markdown_table


def test_word_order_subset_and_twin_choice_by_hand():
    # Items 0 and 1 are twins (group "g"); images are the unit axes e0..e3.
    # Caption 0 (item 0) scores e0 0.6, e1 0.8: it prefers its twin → a miss both ways.
    # Caption 1 (item 1) scores e1 0.6, e0 0.0, e2 0.8: it beats its twin, yet a third scene
    # ranks first → R@1 misses, twin choice wins. Subset R@1 = 0 %, twin choice = 1 of 2 = 50 %.
    images = np.eye(4, dtype="float32")
    texts = np.array([[0.6, 0.8, 0, 0], [0, 0.6, 0.8, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "float32")
    emb = SplitEmbeddings(
        item_ids=["a", "b", "c", "d"],
        labels=np.array([""] * 4),
        contrast_groups=np.array(["g", "g", "", ""]),
        vectors={"text": texts, "image": images},
        owners={"text": np.arange(4), "image": np.arange(4)},
        captions=["", "", "", ""],
    )
    report = evaluate_embeddings(emb)
    assert report[WORD_ORDER_SUBSET]["R@1"] == 0.0 and report[WORD_ORDER_SUBSET]["queries"] == 2
    assert report[TWIN_CHOICE] == {"accuracy": pytest.approx(50.0), "queries": 2}
    assert report["text->image"]["R@1"] == 50.0  # captions 2 and 3 find their images
    assert "(twin choice): 50.0% of 2 twin captions" in markdown_table(report)


def test_label_relevance_counts_any_item_of_the_class_by_hand():
    # Three items, labels [x, x, y]; texts are items' own words. Caption 0 scores image 1
    # (same label, another item) highest: a miss by item (rank 2), a hit by label (rank 1).
    # Caption 1 ranks image 0 then 1: by item rank 2, by label 1. Caption 2 ranks 2 first.
    # By item R@1 = 1/3; by label R@1 = 3/3. mAP (label): caption 0 ranks [1, 0, 2] → both
    # relevant at ranks 1, 2 → AP 1; caption 1 ranks [0, 1, 2] → AP 1; caption 2 → AP 1.
    images = np.eye(3, dtype="float32")
    texts = np.array([[0.5, 0.8, 0.1], [0.8, 0.5, 0.1], [0.0, 0.1, 0.9]], "float32")
    emb = SplitEmbeddings(
        item_ids=["a", "b", "c"],
        labels=np.array(["x", "x", "y"]),
        contrast_groups=np.array(["", "", ""]),
        vectors={"text": texts, "image": images},
        owners={"text": np.arange(3), "image": np.arange(3)},
        captions=["", "", ""],
    )
    by_item = evaluate_embeddings(emb)
    by_label = evaluate_embeddings(emb, relevance="label")
    assert by_item["text->image"]["R@1"] == pytest.approx(100 / 3)
    assert by_label["text->image"]["R@1"] == pytest.approx(100.0)
    assert by_item["text->image"]["mAP"] == by_label["text->image"]["mAP"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="relevance"):
        evaluate_embeddings(emb, relevance="class")
