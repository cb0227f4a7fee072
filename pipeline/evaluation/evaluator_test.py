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
        item_ids=["a", "b", "c", "d"], labels=np.array([""] * 4), contrast_groups=np.array(["g", "g", "", ""]),
        vectors={"text": texts, "image": images}, owners={"text": np.arange(4), "image": np.arange(4)}, captions=["", "", "", ""],
    )
    report = evaluate_embeddings(emb)
    assert report[WORD_ORDER_SUBSET]["R@1"] == 0.0 and report[WORD_ORDER_SUBSET]["queries"] == 2
    assert report[TWIN_CHOICE] == {"accuracy": pytest.approx(50.0), "queries": 2}
    assert report["text->image"]["R@1"] == 50.0  # captions 2 and 3 find their images
    assert "(twin choice): 50.0% of 2 twin captions" in markdown_table(report)
