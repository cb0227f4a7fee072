"""make bench-serve: the search service under load on loopback.

Starts ``python -m pipeline serve`` over an index (default: the one ``make train`` builds),
then drives it with concurrent clients (20) sending text searches for a fixed time (60 s, after
a warm-up that is not counted). Queries are the index's own captions, shuffled. Reports
p50/p95/p99/max latency, throughput and errors (target: 0 errors and p99 under 100 ms), then
sends malformed requests generated from the service's OpenAPI document and counts the answers
by status (none may be a 5xx).

The clients run in this process, on the same 2 cores as the server: the figures include that
contention, as a load test on one machine does.

    python -m benchmarks.bench_serve [--index default] [--clients 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request

import numpy as np

from benchmarks.results_io import write_results
from benchmarks.service_runner import running_service
from pipeline.cli import setup_logging

log = logging.getLogger("bench_serve")
TARGET_P99_MS = 100.0


def client_loop(
    port: int, queries: list[str], offset: int, k: int, stop_at: float, count_from: float, out: list, errors: list
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = offset
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        body = json.dumps({"query": queries[i % len(queries)], "k": k})
        i += 1
        try:
            connection.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            took = time.perf_counter() - now
            if response.status != 200:
                errors.append(f"{response.status}: {payload[:200]!r}")
            elif now >= count_from:
                out.append(took)
        except (OSError, http.client.HTTPException) as error:
            errors.append(repr(error))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()


def run_load(port: int, queries: list[str], clients: int, seconds: float, warmup: float, k: int) -> dict:
    start = time.perf_counter()
    count_from, stop_at = start + warmup, start + warmup + seconds
    per_client = [[] for _ in range(clients)]
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=client_loop, args=(port, queries, c * 997, k, stop_at, count_from, per_client[c], errors)
        )
        for c in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = np.array([t for c in per_client for t in c]) * 1e3
    return {
        "clients": clients,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "k": k,
        "requests": int(len(times)),
        "errors": len(errors),
        "error_examples": errors[:5],
        "throughput_rps": len(times) / seconds,
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": float(times.max()),
        "mean_ms": float(times.mean()),
    }


def run_fuzz(port: int) -> dict:
    """Malformed requests generated from the running service's OpenAPI document."""
    import uuid

    from benchmarks.openapi_fuzz import fuzz

    base = f"http://127.0.0.1:{port}"

    def post(path: str, data: bytes, content_type: str) -> int:
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def post_json(path, body):
        return post(path, json.dumps(body).encode(), "application/json")

    def post_upload(data, content_type, k):
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
            + (f"Content-Type: {content_type}\r\n" if content_type else "")
            + "\r\n"
        )
        body = head.encode() + data + b"\r\n"
        if k is not None:
            body += f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n{k}\r\n'.encode()
        body += f"--{boundary}--\r\n".encode()
        return post("/search", body, f"multipart/form-data; boundary={boundary}")

    with urllib.request.urlopen(f"{base}/openapi.json", timeout=30) as response:
        openapi = json.loads(response.read())
    return fuzz(openapi, post_json, post_upload)


def markdown(result: dict, index: str, items: int) -> str:
    met = result["errors"] == 0 and result["p99_ms"] < TARGET_P99_MS
    return "\n".join(
        [
            "# Search service under load (make bench-serve)",
            "",
            f"`python -m pipeline serve --index {index}` ({items:,} items) on loopback; {result['clients']} concurrent clients "
            f"(keep-alive connections, one request at a time each) sending text searches (`k={result['k']}`, the index's captions "
            f"as queries) for {result['seconds']:.0f} s after a {result['warmup_seconds']:.0f} s warm-up; clients and server share "
            f"the machine's {os.cpu_count()} cores.",
            "",
            "| requests | errors | throughput | p50 | p95 | p99 | max |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {result['requests']:,} | {result['errors']} | {result['throughput_rps']:.0f} req/s | {result['p50_ms']:.1f} ms | "
            f"{result['p95_ms']:.1f} ms | {result['p99_ms']:.1f} ms | {result['max_ms']:.1f} ms |",
            "",
            f"Target: 0 errors and p99 under {TARGET_P99_MS:.0f} ms — {'met' if met else 'NOT met'}.",
            "",
            "## Malformed requests",
            "",
            f"{result['fuzz']['requests']} requests generated from the running service's OpenAPI document (bodies shaped by each "
            "operation's schema with edge values, wrong types, missing and extra fields; arbitrary JSON; uploads of random bytes "
            "under several media types), sent after the load test. Answers by status: "
            + ", ".join(f"{code}: {count}" for code, count in result["fuzz"]["statuses"].items())
            + f". Answered 5xx: {len(result['fuzz']['failures'])}.",
            "",
            "Command: `make bench-serve` (`python -m benchmarks.bench_serve`).",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="default", help="index to serve (default: default, which make train builds)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    setup_logging()
    from pipeline.retrieval.index_store import IndexProblem, SearchIndex

    try:
        index = SearchIndex.open(args.index)
    except IndexProblem as error:
        raise SystemExit(f"{error}\n(make train builds the default index)") from None
    queries = [c for c in index.metadata["caption"].tolist() if c.strip()]
    if not queries:
        raise SystemExit(f"index {args.index} has no captions to use as queries")
    np.random.default_rng(0).shuffle(queries)
    log.info("starting the service over %s (%d items)", args.index, len(index))
    with running_service(args.index, timeout=300) as base:
        port = int(base.rsplit(":", 1)[1])
        log.info("%d clients for %.0f s (+%.0f s warm-up)", args.clients, args.seconds, args.warmup)
        result = run_load(port, queries, args.clients, args.seconds, args.warmup, args.k)
        log.info("malformed requests from the OpenAPI document")
        result["fuzz"] = run_fuzz(port)
    log.info(
        "%d requests, %d errors, %.0f req/s, p50 %.1f ms, p99 %.1f ms",
        result["requests"],
        result["errors"],
        result["throughput_rps"],
        result["p50_ms"],
        result["p99_ms"],
    )
    json_path, md_path = write_results(
        "serve", {"index": args.index, "items": len(index), **result}, markdown(result, args.index, len(index))
    )
    print(md_path.read_text())
    print(f"results: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
