"""The steps of ``bench_million`` that run in a process of their own: building an index from
vectors (its peak RSS is that process's) and searching it in process. Run as a script with the
code to measure first on PYTHONPATH, so the same steps run on this version and on an older one
(the "old code" row): only APIs both have are used here.

    python benchmarks/million_child.py build  FOLDER VECTORS.npy TEXTS.json SIZE KIND RUN
    python benchmarks/million_child.py search FOLDER QUERIES.json OUT.json SINGLE
    python benchmarks/million_child.py retriever FOLDER QUERIES.json EXPORT_DIR RANKINGS
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build(folder: str, vectors_path: str, texts_path: str, size: int, kind: str, run: str) -> dict:
    import pandas as pd

    from pipeline.inference import Encoder
    from pipeline.records import IndexModel, IndexRecord, RankingChoice
    from pipeline.retrieval.index_builder import NB_ALPHA, lexical_scorer
    from pipeline.retrieval.index_store import SearchIndex, weights_fingerprint
    from pipeline.run_artifacts import run_reference

    encoder = Encoder.from_run(run)  # the run's vocabulary, as `index` reads it
    started = time.perf_counter()
    vectors = np.load(vectors_path, mmap_mode="r")[:size]
    texts = json.loads(Path(texts_path).read_text())[:size]
    scorer = lexical_scorer(encoder.vectorizer.get_vocabulary(), texts, NB_ALPHA)
    scorer.fit(scorer.count_matrix(texts))
    metadata = pd.DataFrame(
        {
            "item_id": [f"m{i:07d}" for i in range(size)],
            "modality": "text",
            "split": "all",
            "caption": texts,
            "words_from": "caption",
        }
    )
    record = IndexRecord(
        name=Path(folder).name,
        model=IndexModel(run_reference(encoder.run_dir), weights_fingerprint(encoder.run_dir), encoder.config.name),
        data="bench-million",
        split="all",
        withhold_captions=False,
        ranking=RankingChoice("weighted", 0.5, "given: the bench's default hybrid"),
        nb_alpha=NB_ALPHA,
        kind=kind,
        params={},
    )
    SearchIndex.write(Path(folder), record, vectors, metadata, scorer, None)
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": peak_rss_bytes(),
        "vocabulary": len(scorer.vocabulary),
    }


def search(folder: str, queries_path: str, out_path: str, single: int) -> dict:
    from pipeline.retrieval.searcher import Searcher, TextQuery

    started = time.perf_counter()
    searcher = Searcher.open(folder)
    opened = time.perf_counter() - started
    rss_open = peak_rss_bytes()
    queries = json.loads(Path(queries_path).read_text())
    tops, latency = {}, {}
    for ranking in ("dense", "nb", "weighted", "rrf"):
        answers = searcher.search_texts([TextQuery(q, 10, None, ranking) for q in queries])
        tops[ranking] = [[(h.item_id, h.score) for h in a.hits] for a in answers]
        times = []
        for q in queries[:single]:
            start = time.perf_counter()
            searcher.search_text(q, k=10, ranking=ranking)
            times.append(1e3 * (time.perf_counter() - start))
        latency[ranking] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
    # Queries whose dense scores tie (items with equal vectors) within the top 10 or across the
    # candidate boundary: there the order among the tied is the code's choice, not the data's.
    vectors = np.asarray(searcher.index.vectors)
    ties = []
    for encoded in searcher.encoder.encode_text(queries):
        order = np.sort(vectors @ encoded)[::-1]
        boundary = min(100, len(order) - 1)
        ties.append(bool(np.any(order[:10] == order[1:11]) or order[boundary - 1] == order[boundary]))
    tops["ties"] = ties
    Path(out_path).write_text(json.dumps(tops))
    return {
        "open_seconds": opened,
        "rss_after_open_bytes": rss_open,
        "peak_rss_bytes": peak_rss_bytes(),
        "latency": latency,
    }


def retriever(folder: str, queries_path: str, export_dir: str, rankings: str) -> dict:
    """The exported retriever (``retriever_archive``, a SavedModel as TF Serving loads it) over
    the index: export time and size, single-query latency of the loaded SavedModel, and its top
    10 against the Searcher's for every query (ids equal, scores within 1e-5: float32 out)."""
    import shutil

    import tensorflow as tf

    from pipeline.retrieval.searcher import Searcher, TextQuery
    from pipeline.tf_serving.export import retriever_archive

    searcher = Searcher.open(folder)
    vectors, metadata, scorer = searcher.index.live_arrays()
    ids = metadata["item_id"].tolist()
    queries = json.loads(Path(queries_path).read_text())
    weight = searcher.index.record.ranking.weight
    dense_ties = [
        bool(np.any(order[:10] == order[1:11]) or order[99] == order[100])
        for order in (np.sort(np.asarray(vectors) @ e)[::-1] for e in searcher.encoder.encode_text(queries))
    ]
    out = {"items": len(ids)}
    for ranking in rankings.split(","):
        target = Path(export_dir) / ranking
        shutil.rmtree(target, ignore_errors=True)
        started = time.perf_counter()
        archive = retriever_archive(
            searcher.encoder.model, searcher.encoder.vectorizer, np.asarray(vectors), ids, 10, scorer, ranking, weight
        )
        archive.write_out(str(target), verbose=False)
        exported = time.perf_counter() - started
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        loaded = tf.saved_model.load(str(target))
        serve = loaded.signatures["serving_default"]
        expected = searcher.search_texts([TextQuery(q, 10, None, ranking) for q in queries])
        same, tied, times = 0, 0, []
        for q, answer, ties in zip(queries, expected, dense_ties):
            start = time.perf_counter()
            result = serve(tf.constant([q]))
            times.append(1e3 * (time.perf_counter() - start))
            got_ids = [i.decode("utf-8") for i in result["item_ids"].numpy()[0]]
            got_scores = result["scores"].numpy()[0]
            agree = got_ids == [h.item_id for h in answer.hits] and np.allclose(
                got_scores, [h.score for h in answer.hits], atol=1e-5, rtol=0
            )
            same += agree
            tied += (not agree) and ties  # equal vectors: float32 products in another order break the tie
        out[ranking] = {
            "export_seconds": round(exported, 1),
            "savedmodel_bytes": size,
            "p50_ms": round(float(np.percentile(times[1:], 50)), 2),
            "p99_ms": round(float(np.percentile(times[1:], 99)), 2),
            "same_top10_as_searcher": int(same),
            "differing_with_dense_ties": int(tied),
            "queries": len(queries),
        }
        shutil.rmtree(target, ignore_errors=True)
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "build":
        folder, vectors, texts, size, kind, run = args
        result = build(folder, vectors, texts, int(size), kind, run)
    elif mode == "search":
        folder, queries, out, single = args
        result = search(folder, queries, out, int(single))
    elif mode == "retriever":
        folder, queries, export_dir, rankings = args
        result = retriever(folder, queries, export_dir, rankings)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("RESULT " + json.dumps(result))
