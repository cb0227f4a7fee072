"""The steps of ``bench_million`` that run in a process of their own: building an index from
vectors (its peak RSS is that process's) and searching it in process. Run as a script with the
code to measure first on PYTHONPATH, so the same steps run on this version and on an older one
(the "old code" row): only APIs both have are used here.

    python benchmarks/million_child.py build  FOLDER VECTORS.npy TEXTS.json SIZE KIND RUN
    python benchmarks/million_child.py search FOLDER QUERIES.json OUT.json SINGLE
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
    Path(out_path).write_text(json.dumps(tops))
    return {
        "open_seconds": opened,
        "rss_after_open_bytes": rss_open,
        "peak_rss_bytes": peak_rss_bytes(),
        "latency": latency,
    }


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "build":
        folder, vectors, texts, size, kind, run = args
        result = build(folder, vectors, texts, int(size), kind, run)
    elif mode == "search":
        folder, queries, out, single = args
        result = search(folder, queries, out, int(single))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("RESULT " + json.dumps(result))
