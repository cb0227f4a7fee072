import numpy as np
import pandas as pd
import pytest

from pipeline.records import IndexModel, IndexRecord, RankingChoice
from pipeline.retrieval.index_store import IndexProblem, SearchIndex, metadata_columns
from pipeline.retrieval.naive_bayes import NaiveBayesScorer

CAPTIONS = ["a lone \r return", "two\nlines", "a NUL \x00 inside", 'quotes " and, commas', "émoji 🦓", "plain"]


def write_small_index(folder, kind="exact"):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(CAPTIONS), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadata = pd.DataFrame({"item_id": [f"item-{i}" for i in range(len(CAPTIONS))], "caption": CAPTIONS})
    scorer = NaiveBayesScorer(["return", "lines", "plain"])
    scorer.fit(scorer.count_matrix(CAPTIONS))
    record = IndexRecord(
        folder.name, IndexModel("none", "", "test"), "", "all", False, RankingChoice("dense"), 1.0, kind
    )
    return SearchIndex.write(folder, record, vectors, metadata, scorer, None)


def test_any_caption_reads_back_exactly(tmp_path):
    index = write_small_index(tmp_path / "idx")
    reopened = SearchIndex.open(tmp_path / "idx")
    assert reopened.metadata["caption"].tolist() == CAPTIONS and list(reopened.metadata.columns) == list(
        metadata_columns()
    )
    assert reopened.metadata["path"].tolist() == [""] * len(CAPTIONS) and len(index) == len(CAPTIONS)


def test_a_damaged_faiss_structure_is_named(tmp_path):
    write_small_index(tmp_path / "idx", kind="hnsw")
    structure = tmp_path / "idx" / "faiss.index"
    structure.write_bytes(structure.read_bytes()[:50])
    with pytest.raises(IndexProblem, match=r"faiss.index is damaged or unreadable .*rebuild index idx"):
        SearchIndex.open(tmp_path / "idx")
