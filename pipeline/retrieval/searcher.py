"""Search an index with words, an image, a sound or a vector; each hit says why it matched.

Example:
    >>> searcher = Searcher.open("default")
    >>> response = searcher.search_text("a red circle", k=5)
    >>> [hit.item_id for hit in response.hits]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipeline.modalities import file_modalities
from pipeline.modalities import modality as get_modality
from pipeline.preprocessing.media_check import MediaRejected
from pipeline.retrieval.hybrid import fuse
from pipeline.retrieval.index_store import IndexProblem, SearchIndex, weights_fingerprint
from pipeline.retrieval.naive_bayes import tokenize
from pipeline.retrieval.vector_index import BackendUnavailable
from pipeline.run_artifacts import run_from_reference

MIN_CANDIDATES = 100


class QueryError(ValueError):
    """A query that cannot be answered as given; the message says why and what to do."""


@dataclasses.dataclass
class SearchHit:
    rank: int
    item_id: str
    modality: str
    caption: str
    path: str
    label: str
    files: dict[str, str]  # the item's file of each file modality ("" where it has none)
    score: float  # the ranking score (the fused one under a hybrid ranking)
    dense_score: float  # cosine similarity in the shared space
    nb_log_proba: float | None  # log p(item | query) of the Naive Bayes stage (text queries)
    nb_words: list[tuple[str, float]]  # the query words that weighed most for this item

    def to_dict(self) -> dict:
        # By hand: dataclasses.asdict deep-copies every field, and this runs for every hit served.
        out = {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "files"}
        return out | {f"{m}_path": p for m, p in self.files.items()} | {"nb_words": [list(w) for w in self.nb_words]}

    def file_of(self, modality: str) -> str:
        return self.files.get(modality, "")


@dataclasses.dataclass
class TextQuery:
    """One text query of a batch (``Searcher.search_texts``)."""

    query: str
    k: int = 10
    filters: dict | None = None
    ranking: str | None = None
    weight: float | None = None


@dataclasses.dataclass
class SearchResponse:
    query: str
    ranking: str  # dense, nb, weighted or rrf
    hits: list[SearchHit]
    notes: list[str]

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "ranking": self.ranking,
            "notes": self.notes,
            "hits": [h.to_dict() for h in self.hits],
        }


class Searcher:
    """An index and the encoder of the run that built it.

    Args:
        index: an opened ``SearchIndex``.
        encoder: the ``Encoder`` of the index's run (needed for text, image and audio queries).
    """

    def __init__(self, index: SearchIndex, encoder=None):
        self.index, self.encoder = index, encoder

    @classmethod
    def open(cls, name: str | Path) -> Searcher:
        from pipeline.inference import Encoder

        index = SearchIndex.open(name)
        model = index.record.model
        run = run_from_reference(model.run)
        if not (run / "model.weights.h5").is_file():
            raise IndexProblem(
                f"index {index.name} was built by the run {run}, which is no longer there; rebuild the index with "
                f"python -m pipeline index --run RUN --data {index.record.data} --name {index.name}"
            )
        if weights_fingerprint(run) != model.weights_sha1:
            raise IndexProblem(
                f"index {index.name} was built by an earlier version of {run} (its weights have changed since); its "
                f"vectors do not match the model. Rebuild it: python -m pipeline index --run {run} "
                f"--data {index.record.data} --name {index.name}"
            )
        encoder = Encoder.from_run(run)
        if encoder.config.embedding_dim != index.dim:
            raise IndexProblem(
                f"index {index.name} holds {index.dim}-dimensional vectors, its run embeds in {encoder.config.embedding_dim}; rebuild it"
            )
        return cls(index, encoder)

    # -------------------------------------------------------------- queries

    def search_text(
        self,
        query: str,
        k: int = 10,
        filters: dict | None = None,
        ranking: str | None = None,
        weight: float | None = None,
    ) -> SearchResponse:
        (result,) = self.search_texts([TextQuery(query, k, filters, ranking, weight)])
        if isinstance(result, Exception):
            raise result
        return result

    def search_texts(self, queries: list[TextQuery]) -> list[SearchResponse | QueryError | IndexProblem]:
        """Several text queries at once: one encoder call and one Naive Bayes pass for all of
        them (what the service does with the requests that arrive together). Each answer is a
        response, or the error (QueryError, IndexProblem) of that query alone."""
        results: list = [None] * len(queries)
        valid = []
        for i, q in enumerate(queries):
            if not str(q.query).strip():
                results[i] = QueryError(
                    "the query is empty: give some words, or search with --image PATH or --audio PATH"
                )
            elif not is_utf8(str(q.query)):
                results[i] = QueryError(
                    "the query holds a lone surrogate (an invalid \\ud800-\\udfff escape), which is not text"
                )
            else:
                valid.append(i)
        if not valid:
            return results
        texts = [queries[i].query for i in valid]
        vectors = self.encoder.encode_text(texts)
        index = self.index  # one version for the whole batch: a writer may swap in another meanwhile
        naive_bayes = index.naive_bayes
        default_ranking = index.record.ranking
        rankings = [queries[i].ranking or default_ranking.method for i in valid]
        # Only the queries ranked with words pay for the Naive Bayes stage: "dense" never reads it.
        lexical = [j for j, ranking in enumerate(rankings) if ranking != "dense"]
        unknown = {j: naive_bayes.unknown_words(texts[j]) for j in lexical}
        with_words = {j for j in lexical if len(tokenize(texts[j])) > len(unknown[j])}
        nb_rows = naive_bayes.iter_scores([texts[j] for j in sorted(with_words)]) if with_words else iter(())
        for j, i in enumerate(valid):
            q, ranking = queries[i], rankings[j]
            weight = default_ranking.weight if q.weight is None else q.weight
            notes = [f"not in the index's vocabulary: {', '.join(unknown[j])}"] if unknown.get(j) else []
            nb = None
            if ranking != "dense" and j in with_words:
                nb = next(nb_rows)  # with_words in order
            elif ranking != "dense":
                notes.append(
                    "no query word is in the index's vocabulary: the Naive Bayes stage has only its prior, "
                    "so the ranking is the dense one"
                )
                ranking = "dense"
            try:
                results[i] = self._rank(index, q.query, vectors[j : j + 1], q.k, q.filters, ranking, weight, nb, notes)
            except (QueryError, IndexProblem, BackendUnavailable) as error:
                results[i] = error
        return results

    def search_file(self, path: str | Path, modality: str, k: int = 10, filters: dict | None = None) -> SearchResponse:
        path = Path(path)
        if not path.is_file():
            raise QueryError(f"{path}: no such file")
        return self.search_media(path.read_bytes(), modality, k, filters, name=str(path))

    def search_media(
        self, data: bytes, modality: str, k: int = 10, filters: dict | None = None, name: str = "the upload"
    ) -> SearchResponse:
        """An encoded image or sound (bytes) as the query; ranked by the dense score."""
        vector = self.embed_media(data, modality, name)
        return self._rank(
            self.index,
            name,
            vector,
            k,
            filters,
            "dense",
            1.0,
            None,
            [f"{modality} query: ranked by the dense score (the Naive Bayes stage reads words)"],
        )

    def embed_media(self, data: bytes, modality: str, name: str = "the upload") -> np.ndarray:
        """[1, dim] embedding of an encoded image or sound; QueryError if the model has no
        encoder for it or the bytes do not decode."""
        import tensorflow as tf

        if modality not in self.encoder.model.content:
            raise QueryError(
                f"this index's model was not trained on {modality}; it searches with "
                f"{', '.join(['text', *self.encoder.model.content])}"
            )
        try:
            return self.encoder.encode_files([bytes(data)], modality)
        except MediaRejected as error:
            raise QueryError(f"{name}: cannot be decoded as {modality}: {error}") from None
        except (tf.errors.OpError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            kinds = get_modality(modality).formats
            raise QueryError(f"{name}: cannot be decoded as {modality} ({first[:200]}); give a {kinds} file") from None

    def search_vector(self, vector, k: int = 10, filters: dict | None = None) -> SearchResponse:
        vector = np.asarray(vector, np.float32)
        if vector.ndim == 1:
            vector = vector[None, :]
        if vector.ndim != 2 or vector.shape[1] != self.index.dim or vector.shape[0] != 1:
            raise QueryError(
                f"a query vector must have {self.index.dim} values (this index's dimension); got shape {tuple(vector.shape)}"
            )
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(vector).all() or norm == 0:
            raise QueryError("the query vector is zero or not finite")
        return self._rank(self.index, "<vector>", vector / norm, k, filters, "dense", 1.0, None, [])

    # -------------------------------------------------------------- ranking

    def _rank(self, index: SearchIndex, query, vector, k, filters, ranking, weight, nb, notes) -> SearchResponse:
        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k})")
        allowed = index.filter_mask(filters)
        if allowed is not None and not allowed.any():
            return SearchResponse(query, ranking, [], notes + [f"no item matches the filter {filters}"])
        candidates = max(MIN_CANDIDATES, 10 * k)
        _, rows = index.search_dense(vector, candidates, allowed, filters=filters)
        if nb is not None:
            nb_top = nb.top(candidates, allowed)
            usable = np.isfinite(nb.values(nb_top)) & (True if allowed is None else allowed[nb_top])
            rows = np.unique(np.concatenate([rows, nb_top[usable]]))
        rows = np.sort(rows)
        dense = np.asarray(index.vectors[rows] @ vector[0], np.float32)
        nb_values = None if nb is None else nb.values(rows)
        if nb is not None and ranking != "dense":
            scores = fuse(dense[None, :], nb_values[None, :], ranking, weight)[0]
        else:
            scores = dense
        order = np.argsort(-scores, kind="stable")[:k]
        hits = []
        columns = index.columns
        file_columns = {m.name: columns[f"{m.name}_path"] for m in file_modalities()}
        for rank, at in enumerate(order, start=1):
            row = int(rows[at])
            meta = {name: columns[name][row] for name in ("item_id", "modality", "caption", "path", "label")}
            files = {name: paths[row] for name, paths in file_columns.items()}
            hits.append(
                SearchHit(
                    rank=rank,
                    item_id=meta["item_id"],
                    modality=meta["modality"],
                    caption=meta["caption"],
                    path=meta["path"],
                    label=meta["label"],
                    files=files,
                    score=float(scores[at]),
                    dense_score=float(dense[at]),
                    nb_log_proba=None if nb is None else float(nb_values[at]),
                    nb_words=[] if nb is None else index.naive_bayes.explain(query, row),
                )
            )
        return SearchResponse(query, ranking, hits, notes)


def is_utf8(text: str) -> bool:
    """False for a str UTF-8 cannot hold (a lone surrogate, as a JSON "\\ud800" escape gives)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def format_response(response: SearchResponse) -> str:
    """The response as a plain-text table for the terminal."""
    lines = [f"query: {response.query}    ranking: {response.ranking}"]
    lines += [f"note: {n}" for n in response.notes]
    if not response.hits:
        lines.append("no results")
    for h in response.hits:
        what = h.caption or h.path
        why = f"dense {h.dense_score:.3f}"
        if h.nb_log_proba is not None:
            words = ", ".join(f"{w} ({v:+.1f})" for w, v in h.nb_words) or "none of the query's words"
            why += f"; NB log p {h.nb_log_proba:.1f} from {words}"
        lines.append(f"{h.rank:3d}. {h.score:8.3f}  {h.item_id}  [{h.modality}]  {what}")
        lines.append(f"     {h.path if h.caption and h.path else ''}{'  ' if h.caption and h.path else ''}why: {why}")
    return "\n".join(lines)
