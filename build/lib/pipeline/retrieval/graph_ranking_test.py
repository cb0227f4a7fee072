"""The graph ranking against the Python it mirrors: tokenize, MultinomialNB, Searcher."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline.records import IndexModel, IndexRecord, RankingChoice
from pipeline.retrieval.graph_ranking import HybridRanker, NaiveBayesGraph, tokenize_graph
from pipeline.retrieval.hybrid import FUSIONS
from pipeline.retrieval.index_store import SearchIndex
from pipeline.retrieval.naive_bayes import NaiveBayesScorer, tokenize
from pipeline.retrieval.searcher import MIN_CANDIDATES, Searcher

HARD_TEXTS = [
    "",
    "   ",
    "!!! ... ???",
    "A Dog, running!",
    "don't 'quoted' rock'n'roll a''b '' x' 'y '",
    "snake_case_word",
    "ΟΔΟΣ ΣΟΦΙΑΣ",
    "İstanbul",
    "a\u00a0b\u3000c\td\ne",
    "ﬁne ǅemal",
    "नमस्ते",
    "٣ ² ½ Ⅻ",
    "🦓zebra🦓",
    "ＦＵＬＬ width",
    "o\u0301k",
    "’curly’ don’t",
    "日本語のテキスト",
    "Straße MÜNCHEN",
    "x" * 300,
]
# Characters of every kind the tokenizer treats differently: letters of several scripts and
# cases, digits and other numbers, combining marks, apostrophes, underscores, punctuation,
# spaces of several widths, symbols.
ALPHABET = list("aZé ÉßΣσςдЖ日本ा्٣²½_'’-.,!?\t\n\u00a0\u3000🦓ǅİ0129") + ["\u0301", "''"]


def fuzz_texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(ALPHABET, size=rng.integers(0, 25))) for _ in range(count)]


def words_of(ragged) -> list[list[str]]:
    return [[w.decode("utf-8") for w in row] for row in ragged.to_list()]


def test_graph_words_equal_tokenize_eagerly_and_in_a_graph():
    texts = HARD_TEXTS + fuzz_texts(500)
    expected = [tokenize(t) for t in texts]
    assert words_of(tokenize_graph(tf.constant(texts))) == expected
    in_graph = tf.function(tokenize_graph, input_signature=[tf.TensorSpec([None], tf.string)])
    assert words_of(in_graph(tf.constant(texts))) == expected
    mapped = tf.data.Dataset.from_tensor_slices(texts).batch(7).map(tokenize_graph)
    assert [w for batch in mapped for w in words_of(batch)] == expected


def random_scorer(items: int, seed: int = 0) -> tuple[NaiveBayesScorer, list[str]]:
    """A scorer over ``items`` random captions, then taught a few feedback pairs (so the class
    counts, hence priors, differ from item to item)."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(60)] + ["café", "don't"]
    captions = [" ".join(rng.choice(vocabulary, size=rng.integers(1, 9))) for _ in range(items)]
    scorer = NaiveBayesScorer(vocabulary, alpha=0.1)
    scorer.fit(scorer.count_matrix(captions))
    scorer.partial_fit(["w1 w2", "café", "w3 w3 w3"], [0, 5 % items, 7 % items])
    return scorer, captions


def random_queries(vocabulary: list[str], count: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    extra = ["UNKNOWN", "zzz", "!!", "Ωmega", "日本", "W1,", "CAFÉ", "don't", " "]
    queries = []
    for i in range(count):
        words = list(rng.choice(vocabulary + extra, size=rng.integers(1, 6)))
        if i % 40 == 0:
            words = ["!!!", "???"]  # empty after tokenisation
        if i % 50 == 1:
            words = words * 60  # long
        queries.append(" ".join(words))
    return queries


def test_naive_bayes_log_proba_equals_the_scorer():
    scorer, _ = random_scorer(120)
    queries = random_queries(scorer.vocabulary, 60)
    graph = NaiveBayesGraph(scorer)
    counts = graph.word_counts(tokenize_graph(tf.constant(queries)))
    np.testing.assert_array_equal(counts.numpy(), scorer.count_matrix(queries).toarray())
    with_words = [q for q, c in zip(queries, counts.numpy()) if c.sum() > 0]
    keep = counts.numpy().sum(axis=1) > 0
    np.testing.assert_allclose(graph.log_proba(counts).numpy()[keep], scorer.log_proba(with_words), rtol=0, atol=1e-9)


def test_naive_bayes_by_hand():
    # Two items: "a a b" and "c"; alpha 1, vocabulary {a, b, c}; one query "a".
    # p(a | item0) = (2 + 1) / (3 + 3) = 1/2, p(a | item1) = (0 + 1) / (1 + 3) = 1/4; priors 1/2 each.
    # log p(item0 | "a") = log(1/2 * 1/2) - log(1/4 + 1/8) = log(2/3); item1: log(1/3).
    scorer = NaiveBayesScorer(["a", "b", "c"], alpha=1.0)
    scorer.fit(scorer.count_matrix(["a a b", "c"]))
    graph = NaiveBayesGraph(scorer)
    got = graph.log_proba(graph.word_counts(tokenize_graph(tf.constant(["A"])))).numpy()
    np.testing.assert_allclose(got, [[np.log(2 / 3), np.log(1 / 3)]], atol=1e-12)


class FixedTextEncoder:
    """An encoder stand-in: each query text has a fixed random unit vector."""

    def __init__(self, dim: int, seed: int = 2):
        self.dim, self.rng, self.vectors = dim, np.random.default_rng(seed), {}

    def encode_text(self, texts):
        for t in texts:
            if t not in self.vectors:
                v = self.rng.normal(size=self.dim).astype(np.float32)
                self.vectors[t] = v / np.linalg.norm(v)
        return np.stack([self.vectors[t] for t in texts])


@pytest.fixture(scope="module")
def large_index(tmp_path_factory):
    """More items than the candidate count, so which items are candidates matters."""
    items, dim = 3 * MIN_CANDIDATES + 17, 16
    scorer, captions = random_scorer(items)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadata = pd.DataFrame({"item_id": [f"item-{i}" for i in range(items)], "caption": captions})
    folder = tmp_path_factory.mktemp("graph") / "idx"
    record = IndexRecord("idx", IndexModel("none", "", "test"), "", "all", False, RankingChoice("dense"), 1.0)
    return SearchIndex.write(folder, record, vectors, metadata, scorer, None)


@pytest.mark.parametrize("ranking", FUSIONS)
@pytest.mark.parametrize("k", [1, 10])
def test_the_ranker_ranks_as_the_searcher(large_index, ranking, k):
    encoder = FixedTextEncoder(large_index.dim)
    searcher = Searcher(large_index, encoder)
    queries = random_queries(large_index.naive_bayes.vocabulary, 200)
    ranker = HybridRanker(
        large_index.vectors,
        large_index.metadata["item_id"].tolist(),
        large_index.naive_bayes,
        ranking,
        0.3,
        k,
        MIN_CANDIDATES,
    )
    served = tf.function(ranker)(tf.constant(encoder.encode_text(queries)), tf.constant(queries))
    for i, query in enumerate(queries):
        hits = searcher.search_text(query, k=k, ranking=ranking, weight=0.3).hits
        assert [x.decode() for x in served["item_ids"].numpy()[i]] == [h.item_id for h in hits], (ranking, query)
        np.testing.assert_allclose(served["scores"].numpy()[i], [h.score for h in hits], atol=1e-4, rtol=0)


def test_a_dense_ranker_holds_no_naive_bayes_and_unknown_rankings_are_refused(large_index):
    ids = large_index.metadata["item_id"].tolist()
    assert (
        HybridRanker(large_index.vectors, ids, large_index.naive_bayes, "dense", 0.5, 5, MIN_CANDIDATES).naive_bayes
        is None
    )
    with pytest.raises(ValueError, match="unknown ranking 'bm25'"):
        HybridRanker(large_index.vectors, ids, large_index.naive_bayes, "bm25", 0.5, 5, MIN_CANDIDATES)
