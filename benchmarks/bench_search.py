"""make bench-search: search speed against FAISS and against the machine's memory bandwidth.

On random unit vectors of dimension 256 at 10k, 100k and 1M items, in one run:

- exact search (the project's ``ExactIndex``), one query at a time and in batches of 64:
  p50/p99 latency and queries per second, next to FAISS ``IndexFlatIP`` on the same vectors
  (the ratio), and next to the memory-bandwidth bound: an exact query must read every stored
  vector once, so bytes scanned per query / bandwidth is the fastest it can be; the bandwidth is
  measured in the same run, reading a large array with every core;
- HNSW (the project's ``HnswIndex``): build time, and for a few efSearch settings recall@10
  against exact and p50 latency.

Targets at 1M × 256 float32: exact single-query search within 1.5× of FAISS flat and at least
50% of the measured bandwidth; HNSW p50 ≤ 2 ms at recall@10 ≥ 0.95.

    python -m benchmarks.bench_search [--sizes 10000,100000,1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time

import numpy as np

from benchmarks.results_io import write_results
from pipeline.cli import setup_logging
from pipeline.retrieval.index_kinds.exact import ExactIndex
from pipeline.retrieval.index_kinds.hnsw import HnswIndex

log = logging.getLogger("bench_search")
DIM = 256
K = 10
BATCH = 64
EF_SEARCH = (16, 64, 256, 1024, 4096)
NEAR_NOISE = 0.5  # near-data queries: a stored vector plus Gaussian noise of this norm, renormalised


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in blocks: no float64 copy of the whole matrix
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def memory_bandwidth(gib: float = 1.0, repeats: int = 5) -> dict:
    """Read bandwidth (bytes/s) over a ``gib`` GiB float32 array: the best of ``repeats`` of a few
    read-only kernels (sum, max, a BLAS dot product of the array with a vector of ones), each on
    one thread and split over every core (NumPy and BLAS release the GIL)."""
    array = np.ones(int(gib * (1 << 30) // 4), np.float32)
    array.sum()  # touch every page once
    matrix = array.reshape(-1, DIM)
    ones = np.ones(DIM, np.float32)
    threads = os.cpu_count() or 1
    parts = np.array_split(array, threads)
    kernels = {"sum": np.sum, "max": np.max}

    def split(kernel):
        def run():
            workers = [threading.Thread(target=kernel, args=(p,)) for p in parts]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

        return run

    methods = {f"{name}, 1 thread": (lambda k=k: k(array)) for name, k in kernels.items()}
    methods.update({f"{name}, {threads} threads": split(k) for name, k in kernels.items()})
    methods["BLAS matrix-vector (own threads)"] = lambda: matrix @ ones
    best = {}
    for name, fn in methods.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best[name] = array.nbytes / min(times)
    return {"bytes_per_second": max(best.values()), "by_method": best, "array_bytes": array.nbytes}


def time_calls(fn, calls: int) -> np.ndarray:
    fn()  # warm up (page faults, thread pools)
    out = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def latency(times: np.ndarray, per_call: int = 1) -> dict:
    return {
        "p50_ms": 1e3 * float(np.percentile(times, 50)),
        "p99_ms": 1e3 * float(np.percentile(times, 99)),
        "qps": per_call / float(times.mean()),
    }


def bench_size(n: int, queries: np.ndarray, bandwidth: float, calls: int) -> dict:
    import faiss

    log.info("%d vectors: generating", n)
    vectors = unit_vectors(n, DIM, seed=n)
    exact = ExactIndex(vectors)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    single = [queries[i % len(queries)][None, :] for i in range(calls)]
    batches = [queries[(i * BATCH) % len(queries) :][:BATCH] for i in range(max(calls // 4, 5))]
    counter = iter(range(1 << 30))

    def one(fn, items):
        return lambda: fn(items[next(counter) % len(items)])

    log.info("%d vectors: exact and FAISS flat, %d single queries, %d batches of %d", n, calls, len(batches), BATCH)
    row = {"items": n, "bytes_per_query": int(vectors.nbytes)}
    row["exact_single"] = latency(time_calls(one(lambda q: exact.search(q, K), single), calls))
    row["faiss_flat_single"] = latency(time_calls(one(lambda q: flat.search(q, K), single), calls))
    row["exact_batch"] = latency(time_calls(one(lambda q: exact.search(q, K), batches), len(batches)), BATCH)
    row["faiss_flat_batch"] = latency(time_calls(one(lambda q: flat.search(q, K), batches), len(batches)), BATCH)
    row["exact_vs_flat_single"] = row["exact_single"]["p50_ms"] / row["faiss_flat_single"]["p50_ms"]
    row["exact_vs_flat_batch"] = row["exact_batch"]["p50_ms"] / row["faiss_flat_batch"]["p50_ms"]
    bound_ms = 1e3 * vectors.nbytes / bandwidth
    row["bandwidth_bound_ms"] = bound_ms
    row["exact_single_bandwidth_share"] = bound_ms / row["exact_single"]["p50_ms"]
    row["faiss_flat_single_bandwidth_share"] = bound_ms / row["faiss_flat_single"]["p50_ms"]
    # The exact answers, for HNSW's recall: the random queries, and queries near stored
    # vectors (as real queries are near their answers; random 256-d vectors have no neighbourhoods).
    rng = np.random.default_rng(7)
    near = vectors[rng.choice(n, len(queries), replace=False)] + NEAR_NOISE * unit_vectors(len(queries), DIM, seed=8)
    near = (near / np.linalg.norm(near, axis=1, keepdims=True)).astype(np.float32)
    _, truth = exact.search(queries, K)
    _, near_truth = exact.search(near, K)
    flat.reset()  # frees its memory before the next size (a `del` would unbind it for the lambdas above)

    log.info("%d vectors: building HNSW", n)
    start = time.perf_counter()
    hnsw = HnswIndex(vectors)
    row["hnsw_build_s"] = time.perf_counter() - start
    row["hnsw"] = []
    near_single = [near[i][None, :] for i in range(len(near))]
    for ef in EF_SEARCH:
        hnsw.params["ef_search"] = ef
        for label, qs, answers, one_by_one in (
            ("random", queries, truth, single),
            ("near", near, near_truth, near_single),
        ):
            faiss.cvar.hnsw_stats.reset()
            _, found = hnsw.search(qs, K)
            # Distances HNSW computed per query: the share of the collection it had to look at.
            compared = faiss.cvar.hnsw_stats.ndis / len(qs)
            recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, answers)]))
            times = time_calls(one(lambda q: hnsw.search(q, K), one_by_one), calls)
            row["hnsw"].append(
                {
                    "queries": label,
                    "ef_search": ef,
                    "recall@10": recall,
                    "distances_per_query": compared,
                    **latency(times),
                }
            )
            log.info(
                "%d vectors: HNSW efSearch %d, %s queries: recall@10 %.3f, p50 %.2f ms, %.0f distances/query (%.1f%% of the collection)",
                n,
                ef,
                label,
                recall,
                row["hnsw"][-1]["p50_ms"],
                compared,
                100 * compared / n,
            )
    return row


def markdown(rows: list[dict], bandwidth: dict, calls: int, threads: int) -> str:
    gbs = bandwidth["bytes_per_second"] / 1e9
    lines = [
        "# Search speed (make bench-search)",
        "",
        f"Random unit vectors, dimension {DIM}, top {K}; {calls} single queries and batches of {BATCH}; "
        f"{threads} cores. Memory read bandwidth measured in the same run: {gbs:.1f} GB/s (summing a "
        f"{bandwidth['array_bytes'] / 2**30:.0f} GiB array, the fastest of: "
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in bandwidth["by_method"].items())
        + " GB/s). The bound is the time to read every stored vector once at that speed. The 10k and 100k collections "
        "(10 MB, 100 MB) partly stay in the CPU caches, so they can beat the bound.",
        "",
        "## Exact search against FAISS IndexFlatIP and the bandwidth bound",
        "",
        "| items | exact 1 query p50 / p99 ms | qps | FAISS flat p50 ms | exact / flat | bound ms | share of bandwidth | "
        "exact batch-64 p50 ms | qps | FAISS batch-64 p50 ms | exact / flat |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        es, fs, eb, fb = r["exact_single"], r["faiss_flat_single"], r["exact_batch"], r["faiss_flat_batch"]
        lines.append(
            f"| {r['items']:,} | {es['p50_ms']:.2f} / {es['p99_ms']:.2f} | {es['qps']:,.0f} | {fs['p50_ms']:.2f} | "
            f"{r['exact_vs_flat_single']:.2f}× | {r['bandwidth_bound_ms']:.2f} | {100 * r['exact_single_bandwidth_share']:.0f}% | "
            f"{eb['p50_ms']:.1f} | {eb['qps']:,.0f} | {fb['p50_ms']:.1f} | {r['exact_vs_flat_batch']:.2f}× |"
        )
    lines += [
        "",
        "## HNSW (M=32, efConstruction=80): recall@10 against exact, single-query latency",
        "",
        f"Random queries (unit vectors drawn like the collection), and near-data queries (a stored vector plus noise of norm "
        f"{NEAR_NOISE}, renormalised: real queries lie near their answers).",
        "",
        "Each cell: recall@10 / p50 ms / distances computed per query as a share of the collection.",
        "",
        "| items | build s | queries | " + " | ".join(f"efSearch {ef}" for ef in EF_SEARCH) + " |",
        "|---|---|---|" + "---|" * len(EF_SEARCH),
    ]
    for r in rows:
        for label in ("random", "near"):
            cells = " | ".join(
                f"{h['recall@10']:.3f} / {h['p50_ms']:.2f} / {100 * h['distances_per_query'] / r['items']:.1f}%"
                for h in r["hnsw"]
                if h["queries"] == label
            )
            lines.append(f"| {r['items']:,} | {r['hnsw_build_s']:.0f} | {label} | {cells} |")
    big = max(rows, key=lambda r: r["items"])
    best = [h for h in big["hnsw"] if h["recall@10"] >= 0.95 and h["queries"] == "random"]
    near_best = [h for h in big["hnsw"] if h["recall@10"] >= 0.95 and h["queries"] == "near"]
    lines += [
        "",
        f"## Targets at {big['items']:,} × {DIM}",
        "",
        f"- exact single query within 1.5× of FAISS flat: {big['exact_vs_flat_single']:.2f}× — "
        f"{'met' if big['exact_vs_flat_single'] <= 1.5 else 'NOT met'}",
        f"- exact single query at least 50% of the measured bandwidth: {100 * big['exact_single_bandwidth_share']:.0f}% — "
        f"{'met' if big['exact_single_bandwidth_share'] >= 0.5 else 'NOT met'}",
        "- HNSW p50 ≤ 2 ms at recall@10 ≥ 0.95: "
        + (
            f"efSearch {best[0]['ef_search']}: recall {best[0]['recall@10']:.3f}, p50 {best[0]['p50_ms']:.2f} ms — "
            f"{'met' if best[0]['p50_ms'] <= 2 else 'NOT met'}"
            if best
            else f"no efSearch up to {EF_SEARCH[-1]} reached recall 0.95 on random queries "
            f"(best {max(h['recall@10'] for h in big['hnsw'] if h['queries'] == 'random'):.3f}) — NOT met"
        )
        + " (random queries); near-data queries: "
        + (
            f"efSearch {near_best[0]['ef_search']}: recall {near_best[0]['recall@10']:.3f}, p50 {near_best[0]['p50_ms']:.2f} ms"
            if near_best
            else "recall 0.95 not reached"
        ),
    ]
    widest = max((h for h in big["hnsw"] if h["queries"] == "random"), key=lambda h: h["ef_search"])
    lines += [
        "",
        f"Why HNSW falls short here: at its widest setting (efSearch {widest['ef_search']}) it compared each query with "
        f"{100 * widest['distances_per_query'] / big['items']:.1f}% of the {big['items']:,} vectors, took {widest['p50_ms']:.1f} ms "
        f"(exact search: {big['exact_single']['p50_ms']:.1f} ms) and found {100 * widest['recall@10']:.0f}% of the true top {K}. "
        "On uniformly random 256-d vectors a query's true neighbours are barely closer than the rest, so the graph offers no "
        "shortcut: recall rises only with the share of the collection visited"
        + "".join(
            f"; recall 0.9 first came at {100 * h['distances_per_query'] / r['items']:.0f}% of the vectors at {r['items']:,}"
            for r in rows
            if r is not big
            for h in [
                min(
                    (h for h in r["hnsw"] if h["queries"] == "random" and h["recall@10"] >= 0.9),
                    key=lambda h: h["ef_search"],
                    default=None,
                )
            ]
            if h
        )
        + ", and visiting that share by random access is slower than the sequential exact scan.",
        "",
        "Command: `make bench-search` (`python -m benchmarks.bench_search`).",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated collection sizes")
    parser.add_argument("--queries", type=int, default=200, help="single queries timed per size (and recall queries)")
    args = parser.parse_args(argv)
    setup_logging()
    sizes = [int(s) for s in args.sizes.split(",")]
    start = time.time()
    bandwidth = memory_bandwidth()
    log.info("memory read bandwidth: %.1f GB/s", bandwidth["bytes_per_second"] / 1e9)
    queries = unit_vectors(max(args.queries, BATCH), DIM, seed=1)
    rows = [bench_size(n, queries, bandwidth["bytes_per_second"], args.queries) for n in sizes]
    threads = os.cpu_count() or 1
    payload = {
        "dim": DIM,
        "k": K,
        "batch": BATCH,
        "queries": args.queries,
        "bandwidth": bandwidth,
        "sizes": rows,
        "seconds": round(time.time() - start, 1),
    }
    json_path, md_path = write_results("search", payload, markdown(rows, bandwidth, args.queries, threads))
    print(md_path.read_text())
    print(f"results: {json_path}, {md_path} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
