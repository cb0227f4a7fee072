"""make bench-million: the search stack at 10^4 to 10^6 items with real captions, on one machine.

Items. N text items are made from real captions (Flickr8k's captions.txt from ../shared, or,
without it, the default dataset's): item i joins the first words of one caption to the last
words of another (``recombined_captions``: both cut at a random word boundary). Each item is a
new caption-like text, and the words keep their real frequencies, so posting-list lengths grow
with N as a caption collection's do; the vocabulary stays the source's (no new words appear).
Their vectors come from the default run's text tower (``Encoder.encode_text``), encoded once
for the largest N and cut for the smaller ones. Queries are 200 other source captions.

For each N and index kind (exact, hnsw):

- build from the vectors in a process of its own (``million_child.py build``): time, peak RSS;
  size on disk;
- the service (``python -m pipeline serve``) over it: text query p50/p99 for every ranking (one
  client, 200 queries each), throughput with 20 clients for the default ranking (weighted), then
  1,000 ``POST /items``, 200 ``DELETE /items/...`` and 200 ``POST /feedback`` (p50/p99 each);
  SIGKILL, restart, and every acknowledged add and removal checked; the query figures again with
  the changes pending; ``POST /compact`` (its time); the query figures after it, and how many
  top-10 lists the compaction changed.

The old code (``--old-commit``, before issue 33) builds and searches an index of the smallest N
in process (``million_child.py search``, 20 timed queries a ranking): its figures are a row, and
its top 10 of 200 queries per ranking are compared with this version's on the same items
(exact kind): ids equal and scores within 1e-6.

    python -m benchmarks.bench_million [--sizes 10000,100000,1000000] [--kinds exact,hnsw]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results_io import write_results
from benchmarks.service_client import ServiceClient
from benchmarks.service_runner import PROJECT, ServiceProcess
from pipeline import paths
from pipeline.cli import setup_logging
from pipeline.progress import progress

log = logging.getLogger("bench_million")
TOKEN = "bench-million-token"
RANKINGS = ("dense", "nb", "weighted", "rrf")
CHILD = Path(__file__).resolve().parent / "million_child.py"


# ---------------------------------------------------------------- items


def source_captions() -> tuple[list[str], str]:
    """Real captions: Flickr8k's, or the default dataset's without ../shared."""
    try:
        table = pd.read_csv(paths.shared_dataset("flickr8k") / "captions.txt")
        return [str(c).strip() for c in table["caption"]], "Flickr8k captions.txt (../shared)"
    except paths.SharedDataMissing as missing:
        from pipeline.data.named_datasets import ensure_dataset

        log.warning("%s; using the default dataset's captions", missing)
        table = pd.read_csv(ensure_dataset("default") / "manifest.csv")
        return sorted(set(table["text"].astype(str))), "the default dataset's captions"


def recombined_captions(pool: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` texts, each the head of one caption and the tail of another, cut at word boundaries."""
    rng = np.random.default_rng(seed)
    words = [c.split() for c in pool]
    heads, tails = rng.integers(len(words), size=n), rng.integers(len(words), size=n)
    out = []
    for a, b in zip(heads.tolist(), tails.tolist()):
        first, second = words[a], words[b]
        cut_a = int(rng.integers(1, max(len(first), 2)))
        cut_b = int(rng.integers(0, max(len(second) - 1, 1)))
        out.append(" ".join(first[:cut_a] + second[cut_b:]))
    return out


def items_and_vectors(work: Path, largest: int, run: str) -> tuple[Path, Path, list[str], str]:
    """The texts and vectors of the largest N (cached in ``work``), and the queries."""
    pool, source = source_captions()
    rng = np.random.default_rng(1)
    order = rng.permutation(len(pool))
    queries = [pool[i] for i in order[:200]]
    rest = [pool[i] for i in order[200:]]
    texts_path, vectors_path = work / f"texts-{largest}.json", work / f"vectors-{largest}.npy"
    if not vectors_path.is_file():
        from pipeline.inference import Encoder

        texts = recombined_captions(rest, largest)
        encoder = Encoder.from_run(run)
        vectors = np.lib.format.open_memmap(
            work / "vectors.tmp.npy", mode="w+", dtype=np.float32, shape=(largest, encoder.config.embedding_dim)
        )
        batch = 8192
        with progress(largest, "encoding the items' texts", unit="text") as bar:
            for start in range(0, largest, batch):
                vectors[start : start + batch] = encoder.encode_text(texts[start : start + batch])
                bar.update(len(texts[start : start + batch]))
        vectors.flush()
        del vectors
        texts_path.write_text(json.dumps(texts))
        os.replace(work / "vectors.tmp.npy", vectors_path)
    (work / "queries.json").write_text(json.dumps(queries))
    return vectors_path, texts_path, queries, source


# ---------------------------------------------------------------- child processes


def child(mode: str, *args, models_dir: Path, code_root: Path = PROJECT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root), "PIPELINE_MODELS_DIR": str(models_dir)}
    done = subprocess.run(
        [sys.executable, str(CHILD), mode, *map(str, args)], env=env, capture_output=True, text=True, cwd=code_root
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} in {code_root} failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the service


def percentiles(times: list[float]) -> dict:
    if not times:
        return {"count": 0}
    values = np.array(times) * 1e3
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


def timed(fn, *args) -> tuple[float, tuple]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def query_latency(client: ServiceClient, queries: list[str]) -> tuple[dict, dict]:
    """Per ranking: p50/p99 of one client's searches, and the top 10 (ids, scores) of each query."""
    latency, tops = {}, {}
    for ranking in RANKINGS:
        times, tops[ranking] = [], []
        for q in queries:
            took, (status, body) = timed(client.post_json, "/search", {"query": q, "k": 10, "ranking": ranking})
            if status != 200:
                raise RuntimeError(f"search {q!r} ({ranking}) answered {status}: {body}")
            times.append(took)
            tops[ranking].append([(h["item_id"], h["score"]) for h in body["hits"]])
        latency[ranking] = percentiles(times)
    return latency, tops


def throughput(base: str, queries: list[str], clients: int, seconds: float) -> dict:
    """``clients`` threads searching (default ranking) for ``seconds``: req/s, errors, p50/p99."""
    stop = time.perf_counter() + seconds
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop(offset: int) -> None:
        client = ServiceClient(base, timeout=60)
        i = offset
        while time.perf_counter() < stop:
            i += 1
            try:
                took, (status, body) = timed(client.post_json, "/search", {"query": queries[i % len(queries)], "k": 10})
            except OSError as error:
                with lock:
                    errors.append(repr(error))
                continue
            with lock:
                (times.append(took) if status == 200 else errors.append(f"{status}: {str(body)[:200]}"))
        client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(c * 997,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(len(times) / elapsed, 1),
        "errors": len(errors),
        **percentiles(times),
    }


def writes(
    client: ServiceClient, texts: list[str], size: int, adds: int, removes: int, feedback: int, seed: int
) -> dict:
    """Adds, removals and feedback through the service, one at a time: latencies and what was acknowledged."""
    rng = np.random.default_rng(seed)
    added, removed, times = [], [], {"add": [], "remove": [], "feedback": []}
    for i in range(adds):
        item_id = f"added-{seed}-{i}"
        took, (status, body) = timed(client.post_form, "/items", {"item_id": item_id, "caption": texts[i % len(texts)]})
        if status != 201:
            raise RuntimeError(f"POST /items answered {status}: {body}")
        times["add"].append(took)
        added.append(item_id)
    victims = [f"m{r:07d}" for r in rng.choice(size, size=removes, replace=False)]
    for item_id in victims:
        took, (status, body) = timed(client.request, "DELETE", f"/items/{urllib.parse.quote(item_id, safe='')}")
        if status != 200:
            raise RuntimeError(f"DELETE answered {status}: {body}")
        times["remove"].append(took)
        removed.append(item_id)
    for i in range(feedback):
        item_id = f"m{int(rng.integers(size)):07d}"
        while item_id in removed:
            item_id = f"m{int(rng.integers(size)):07d}"
        took, (status, body) = timed(client.post_json, "/feedback", {"query": texts[-1 - i], "item_id": item_id})
        if status != 200:
            raise RuntimeError(f"POST /feedback answered {status}: {body}")
        times["feedback"].append(took)
    return {"added": added, "removed": removed, **{k: percentiles(v) for k, v in times.items()}}


def same_tops(a: dict, b: dict, tolerance: float = 1e-6) -> dict:
    """Per ranking: how many queries have the same top-10 ids, and the same scores within ``tolerance``."""
    out = {}
    for ranking in RANKINGS:
        pairs = list(zip(a[ranking], b[ranking]))
        ids = sum([i for i, _ in x] == [i for i, _ in y] for x, y in pairs)
        scores = sum(
            [i for i, _ in x] == [i for i, _ in y]
            and np.allclose([s for _, s in x], [s for _, s in y], atol=tolerance, rtol=0)
            for x, y in pairs
        )
        out[ranking] = {"queries": len(pairs), "same_ids": int(ids), "same_ids_and_scores": int(scores)}
        ties = b.get("ties")
        if ties is not None:  # the differing queries whose dense scores tie (equal vectors)
            differ = [
                q
                for q, (x, y) in enumerate(pairs)
                if [i for i, _ in x] != [i for i, _ in y]
                or not np.allclose([s for _, s in x], [s for _, s in y], atol=tolerance, rtol=0)
            ]
            out[ranking]["differing_with_dense_ties"] = sum(bool(ties[q]) for q in differ)
    return out


@contextlib.contextmanager
def connected(service: ServiceProcess):
    """A fresh keep-alive connection for one phase: the server closes one left idle through a load test."""
    client = ServiceClient(service.base, TOKEN, timeout=600)
    try:
        yield client
    finally:
        client.close()


def query_figures(service: ServiceProcess, queries: list[str], args) -> tuple[dict, dict]:
    """Per-ranking latency (one client) and throughput (``args.clients`` clients), and each query's top 10."""
    with connected(service) as client:
        latency, tops = query_latency(client, queries)
    return {"latency": latency, "throughput": throughput(service.base, queries, args.clients, args.seconds)}, tops


def measure_service(folder: Path, models_dir: Path, queries: list[str], texts: list[str], size: int, args) -> dict:
    service = ServiceProcess(folder, models_dir, TOKEN, timeout=900)
    row: dict = {}
    try:
        took, _ = timed(service.start)
        row["start_seconds"], row["rss_after_start_bytes"] = round(took, 1), service.rss_bytes()
        row["fresh"], _ = query_figures(service, queries, args)
        log.info("N=%d %s fresh: %s", size, folder.name, row["fresh"])
        with connected(service) as client:
            done = writes(client, texts, size, args.adds, args.removes, args.feedback, seed=size)
        row["writes"] = {k: v for k, v in done.items() if k not in ("added", "removed")}
        log.info("N=%d %s writes: %s", size, folder.name, row["writes"])
        service.stop(signal.SIGKILL)
        took, _ = timed(service.start)
        row["restart_after_sigkill_seconds"] = round(took, 1)
        with connected(service) as client:
            present = sum(client.get(f"/items/{urllib.parse.quote(i, safe='')}")[0] == 200 for i in done["added"])
            gone = sum(client.get(f"/items/{urllib.parse.quote(i, safe='')}")[0] == 404 for i in done["removed"])
        row["after_sigkill"] = {
            "acknowledged_adds": len(done["added"]),
            "adds_present": present,
            "acknowledged_removals": len(done["removed"]),
            "removals_absent": gone,
        }
        row["changes_pending"], before_tops = query_figures(service, queries, args)
        with connected(service) as client:
            started = time.perf_counter()
            status, body = client.post_json("/compact", {})
            if status != 202:
                raise RuntimeError(f"POST /compact answered {status}: {body}")
            while body.get("compacting") or body.get("changes"):
                if time.perf_counter() - started > 3600:
                    raise RuntimeError(f"the compaction did not finish within an hour: {service.log()[-2000:]}")
                time.sleep(2)
                status, body = client.post_json("/compact", {})
            row["compact_seconds"] = round(time.perf_counter() - started, 1)
        row["after_compact"], after_tops = query_figures(service, queries, args)
        row["compact_changed_no_ranking"] = same_tops(before_tops, after_tops)
        row["rss_end_bytes"] = service.rss_bytes()
    except Exception:
        log.error("service log:\n%s", service.log()[-4000:])
        raise
    finally:
        service.close()
    return row


# ---------------------------------------------------------------- old code


def old_code_rows(
    commit: str, work: Path, models_dir: Path, vectors: Path, texts: Path, size: int, run: str, queries_path: Path
) -> dict:
    """The old version builds and searches the same items (exact kind), and the new one searches
    the old version's index too: figures, and whether the top 10s agree."""
    tree = work / f"old-{commit}"
    if not tree.exists():
        subprocess.run(
            ["git", "-C", str(PROJECT), "worktree", "add", "--detach", str(tree), commit],
            check=True,
            capture_output=True,
        )
    folder = work / f"old-index-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    built = child("build", folder, vectors, texts, size, "exact", run, models_dir=models_dir, code_root=tree)
    built["disk_bytes"] = folder_bytes(folder)
    old = child("search", folder, queries_path, work / "old-tops.json", 20, models_dir=models_dir, code_root=tree)
    new = child("search", folder, queries_path, work / "new-tops.json", 20, models_dir=models_dir)
    agreement = same_tops(
        json.loads((work / "old-tops.json").read_text()), json.loads((work / "new-tops.json").read_text())
    )
    return {
        "commit": commit,
        "size": size,
        "build": built,
        "old_search": old,
        "new_search_same_index": new,
        "parity": agreement,
    }


# ---------------------------------------------------------------- report


def markdown(payload: dict) -> str:
    lines = [
        "# A million items on one machine: build, search, writes, compaction",
        "",
        f"`make bench-million`, written by benchmarks/bench_million.py. Items: {payload['source']}, recombined "
        "(head of one caption + tail of another); vectors from the default run's text tower. "
        f"{payload['queries']} query captions; the service on this 2-core machine, clients in the same machine.",
        "",
        "## Build from vectors, size, service memory",
        "",
        "| N | kind | build s | build peak RSS GB | on disk GB | vocabulary | service start s | service RSS GB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in payload["rows"]:
        s = r["service"]
        lines.append(
            f"| {r['size']:,} | {r['kind']} | {r['build']['seconds']:.1f} | {r['build']['peak_rss_bytes'] / 1e9:.2f} | "
            f"{r['disk_bytes'] / 1e9:.2f} | {r['build']['vocabulary']:,} | {s['start_seconds']} | {s['rss_after_start_bytes'] / 1e9:.2f} |"
        )
    for stage, title in (
        ("fresh", "as built"),
        ("changes_pending", "with the writes pending"),
        ("after_compact", "after compact"),
    ):
        lines += [
            "",
            f"## Text queries through the service, {title} (ms; one client; throughput: 20 clients, weighted)",
            "",
            "| N | kind | "
            + " | ".join(f"{r} p50 | {r} p99" for r in RANKINGS)
            + " | req/s | p99 under load | errors |",
            "|---:|---|" + "---:|" * (2 * len(RANKINGS) + 3),
        ]
        for r in payload["rows"]:
            st = r["service"][stage]
            cells = " | ".join(f"{st['latency'][k]['p50_ms']} | {st['latency'][k]['p99_ms']}" for k in RANKINGS)
            t = st["throughput"]
            lines.append(
                f"| {r['size']:,} | {r['kind']} | {cells} | {t['requests_per_s']} | {t['p99_ms']} | {t['errors']} |"
            )
    lines += [
        "",
        "## Writes through the service (ms), a SIGKILL, compaction",
        "",
        "| N | kind | add p50 | add p99 | delete p50 | delete p99 | feedback p50 | feedback p99 | adds kept after SIGKILL | removals kept | compact s | top 10s with the same ids and scores (1e-6) after compact, of 200 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in payload["rows"]:
        s = r["service"]
        w, k = s["writes"], s["after_sigkill"]
        same = ", ".join(
            f"{m} {v['same_ids_and_scores']} ({v['same_ids']} same ids)"
            for m, v in s["compact_changed_no_ranking"].items()
        )
        lines.append(
            f"| {r['size']:,} | {r['kind']} | {w['add']['p50_ms']} | {w['add']['p99_ms']} | {w['remove']['p50_ms']} | "
            f"{w['remove']['p99_ms']} | {w['feedback']['p50_ms']} | {w['feedback']['p99_ms']} | "
            f"{k['adds_present']}/{k['acknowledged_adds']} | {k['removals_absent']}/{k['acknowledged_removals']} | {s['compact_seconds']} | {same} |"
        )
    retriever = payload.get("retriever")
    if retriever:
        lines += [
            "",
            "## The exported retriever (a SavedModel, loaded as TF Serving loads it), exact kind",
            "",
            "| N | ranking | export s | SavedModel GB | p50 ms | p99 ms | top 10 as the Searcher's (ids, scores 1e-5) |",
            "|---:|---|---:|---:|---:|---:|---|",
        ]
        for row in retriever:
            for ranking in RANKINGS:
                if ranking in row:
                    r = row[ranking]
                    lines.append(
                        f"| {row['items']:,} | {ranking} | {r['export_seconds']} | {r['savedmodel_bytes'] / 1e9:.2f} | "
                        f"{r['p50_ms']} | {r['p99_ms']} | {r['same_top10_as_searcher']}/{r['queries']}"
                        + (
                            f" (of the others, {r['differing_with_dense_ties']} have tied dense scores)"
                            if "differing_with_dense_ties" in r
                            else ""
                        )
                        + " |"
                    )
    old = payload.get("old_code")
    if old:
        lines += [
            "",
            f"## The old code ({old['commit']}) at {old['size']:,} items, exact kind, in process",
            "",
            "| code | build s | build peak RSS GB | on disk GB | open s | RSS after open GB | "
            + " | ".join(f"{r} p50 | {r} p99" for r in RANKINGS)
            + " |",
            "|---|---:|---:|---:|---:|---:|" + "---:|" * (2 * len(RANKINGS)),
        ]
        for name, search in ((old["commit"], old["old_search"]), ("this version", old["new_search_same_index"])):
            same_rows = [r for r in payload["rows"] if r["size"] == old["size"] and r["kind"] == "exact"]
            build = (
                old["build"]
                if name == old["commit"]
                else {**same_rows[0]["build"], "disk_bytes": same_rows[0]["disk_bytes"]}
            )
            cells = " | ".join(
                f"{search['latency'][k]['p50_ms']:.1f} | {search['latency'][k]['p99_ms']:.1f}" for k in RANKINGS
            )
            lines.append(
                f"| {name} | {build['seconds']:.1f} | {build['peak_rss_bytes'] / 1e9:.2f} | {build.get('disk_bytes', 0) / 1e9:.3f} | "
                f"{search['open_seconds']:.1f} | {search['rss_after_open_bytes'] / 1e9:.2f} | {cells} |"
            )
        parity = ", ".join(
            f"{m}: {v['same_ids_and_scores']}/{v['queries']}"
            + (
                f" (of the others, {v['differing_with_dense_ties']} have tied dense scores)"
                if "differing_with_dense_ties" in v
                else ""
            )
            for m, v in old["parity"].items()
        )
        lines += [
            "",
            f"Same top-10 ids and scores (1e-6), old code vs this version, on the old code's index: {parity}.",
        ]
    default = payload.get("default_index_parity")
    if default:
        parity = ", ".join(
            f"{m}: {v['same_ids_and_scores']}/{v['queries']} ({v['same_ids']} same ids"
            + (
                f"; of the others, {v['differing_with_dense_ties']} have tied dense scores"
                if "differing_with_dense_ties" in v
                else ""
            )
            + ")"
            for m, v in default["parity"].items()
        )
        lines += [
            "",
            f"The default dataset's index, built by the old code ({default['commit']}: word head, ranking choice), "
            f"200 of its captions as queries, searched by the old code and by this version: same top-10 ids and "
            f"scores (1e-6): {parity}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--kinds", default="exact,hnsw")
    parser.add_argument("--run", default="latest")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--adds", type=int, default=1000)
    parser.add_argument("--removes", type=int, default=200)
    parser.add_argument("--feedback", type=int, default=200)
    parser.add_argument("--old-commit", default="dc47f79", help="the code before issue 33 ('' to skip)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default saved_models/bench-million)")
    parser.add_argument(
        "--retriever-sizes",
        default="10000,100000",
        help="the sizes at which the exported retriever is measured (exact kind, every ranking; '' to skip)",
    )
    parser.add_argument(
        "--steps",
        default="main,old,parity,retriever",
        help="main (the rows), old (the old code's row), parity (on the default index), retriever; without main, the "
        "other steps are added to the results million.json already holds",
    )
    args = parser.parse_args(argv)
    setup_logging()
    from pipeline.run_artifacts import resolve_run

    sizes = sorted(int(s) for s in args.sizes.split(","))
    kinds = args.kinds.split(",")
    steps = set(args.steps.split(","))
    run = str(resolve_run(args.run))
    work = args.work or paths.models_dir() / "bench-million"
    work.mkdir(parents=True, exist_ok=True)
    models_dir = work / "models"  # the service's PIPELINE_MODELS_DIR: the run, and the uploads
    (models_dir / "runs").mkdir(parents=True, exist_ok=True)
    link = models_dir / "runs" / Path(run).name
    if not link.exists():
        link.symlink_to(run)
    vectors, texts_path, queries, source = items_and_vectors(work, sizes[-1], run)
    started = time.perf_counter()
    if "main" in steps:
        payload: dict = {"source": source, "queries": len(queries), "sizes": sizes, "kinds": kinds, "rows": []}
        texts = json.loads(texts_path.read_text())
        for size in sizes:
            for kind in kinds:
                folder = work / f"index-{size}-{kind}"
                shutil.rmtree(folder, ignore_errors=True)
                log.info("N=%d %s: building", size, kind)
                built = child("build", folder, vectors, texts_path, size, kind, run, models_dir=models_dir)
                row = {"size": size, "kind": kind, "build": built, "disk_bytes": folder_bytes(folder)}
                log.info("N=%d %s built: %s", size, kind, built)
                row["service"] = measure_service(
                    folder, models_dir, queries, texts[::-1][: args.adds + args.feedback], size, args
                )
                payload["rows"].append(row)
                payload["seconds"] = round(time.perf_counter() - started)
                write_results("million", payload, markdown(payload))  # what is measured so far survives a failure
                shutil.rmtree(folder, ignore_errors=True)
    else:
        from benchmarks.results_io import RESULTS_DIR

        payload = json.loads((RESULTS_DIR / "million.json").read_text())
        payload.pop("machine", None)
    if "old" in steps and args.old_commit:
        payload["old_code"] = old_code_rows(
            args.old_commit, work, models_dir, vectors, texts_path, sizes[0], run, work / "queries.json"
        )
        log.info("old code: %s", payload["old_code"]["parity"])
        write_results("million", payload, markdown(payload))
    if "parity" in steps and args.old_commit:
        payload["default_index_parity"] = default_index_parity(args.old_commit, work, models_dir, run)
        log.info("default index parity: %s", payload["default_index_parity"]["parity"])
        write_results("million", payload, markdown(payload))
    retriever_sizes = [int(n) for n in args.retriever_sizes.split(",") if n]
    if retriever_sizes and "retriever" in steps:
        payload["retriever"] = retriever_rows(work, models_dir, vectors, texts_path, retriever_sizes, run)
        write_results("million", payload, markdown(payload))
    print(markdown(payload))
    return 0


def default_index_parity(commit: str, work: Path, models_dir: Path, run: str) -> dict:
    """The default dataset's index built by the old code (its word head, its ranking choice),
    searched by the old code and by this version: the same top 10 for 200 of its captions?"""
    from pipeline.run_artifacts import read_run_info

    tree = work / f"old-{commit}"
    data = Path(read_run_info(Path(run)).data.root)
    folder = work / "old-default-index"
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PIPELINE_MODELS_DIR": str(models_dir)}
    argv = ["index", "--run", run, "--data", str(data), "--name", str(folder)]
    done = subprocess.run([sys.executable, "-m", "pipeline", *argv], env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the old code's index build failed: {done.stderr[-3000:]}")
    captions = pd.read_csv(data / "manifest.csv")["text"].astype(str).tolist()
    rng = np.random.default_rng(2)
    queries_path = work / "default-queries.json"
    queries_path.write_text(json.dumps([captions[i] for i in rng.choice(len(captions), 200, replace=False)]))
    old = child(
        "search", folder, queries_path, work / "old-default-tops.json", 20, models_dir=models_dir, code_root=tree
    )
    new = child("search", folder, queries_path, work / "new-default-tops.json", 20, models_dir=models_dir)
    agreement = same_tops(
        json.loads((work / "old-default-tops.json").read_text()),
        json.loads((work / "new-default-tops.json").read_text()),
    )
    return {"commit": commit, "parity": agreement, "old": old, "new": new}


def retriever_rows(work: Path, models_dir: Path, vectors: Path, texts: Path, sizes: list[int], run: str) -> list:
    rows = []
    for size in sizes:
        folder = work / f"retriever-index-{size}"
        shutil.rmtree(folder, ignore_errors=True)
        child("build", folder, vectors, texts, size, "exact", run, models_dir=models_dir)
        rows.append(
            child(
                "retriever", folder, work / "queries.json", work / "export", ",".join(RANKINGS), models_dir=models_dir
            )
        )
        log.info("retriever at N=%d: %s", size, rows[-1])
        shutil.rmtree(folder, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
