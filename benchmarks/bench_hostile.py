"""make bench-hostile: hostile uploads against the live search service, timed, with its memory.

Starts ``python -m pipeline serve`` over an index (default: the one ``make train`` builds),
warms it up with ordinary image and sound searches, then sends every upload of
``benchmarks.hostile_media.hostile_uploads`` (lying WAV/FLAC/Ogg headers, decompression bombs,
formats the service does not read) ``--rounds`` times, then a PNG bomb just under the pixel
limit (decoded: it is allowed). Records each answer's status and time and the server's resident
memory before and after. Targets: every hostile upload answered 4xx within 2 s, memory grown by
less than 300 MB.

    python -m benchmarks.bench_hostile [--index default] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import time

from benchmarks.hostile_media import hostile_uploads, image_bytes, png_of_zeros, sound_bytes
from benchmarks.results_io import write_results
from benchmarks.service_client import ServiceClient
from benchmarks.service_runner import ServiceProcess
from pipeline.cli import setup_logging

log = logging.getLogger("bench_hostile")
TARGET_SECONDS, TARGET_GROWTH_MB = 2.0, 300.0


def timed(client: ServiceClient, file: tuple[str, bytes, str]) -> tuple[int, float]:
    start = time.perf_counter()
    status, _ = client.post_form("/search", {"k": "10"}, file)
    return status, time.perf_counter() - start


def run(index: str, rounds: int) -> dict:
    service = ServiceProcess(index).start()
    try:
        client = ServiceClient(service.base, timeout=60)
        for file in (
            ("q.png", image_bytes("PNG", (224, 224)), "image/png"),
            ("q.wav", sound_bytes("WAV", 3.0), "audio/wav"),
        ):
            for _ in range(3):
                timed(client, file)
        before = service.rss_bytes()
        rows = {}
        for name, (data, content_type) in hostile_uploads().items():
            answers = [timed(client, ("upload", data, content_type)) for _ in range(rounds)]
            rows[name] = {
                "bytes": len(data),
                "statuses": sorted({s for s, _ in answers}),
                "max_seconds": max(t for _, t in answers),
            }
            log.info("%-60s %s in at most %.3f s", name, rows[name]["statuses"], rows[name]["max_seconds"])
        after_hostile = service.rss_bytes()
        bomb = png_of_zeros(6000, 6000)
        under = [timed(client, ("bomb.png", bomb, "image/png")) for _ in range(rounds)]
        after = service.rss_bytes()
    finally:
        service.close()
    worst = max(r["max_seconds"] for r in rows.values())
    all_4xx = all(all(400 <= s < 500 for s in r["statuses"]) for r in rows.values())
    return {
        "rounds": rounds,
        "uploads": rows,
        "worst_seconds": worst,
        "all_4xx": all_4xx,
        "under_limit_bomb": {
            "pixels": 6000 * 6000,
            "bytes": len(bomb),
            "statuses": sorted({s for s, _ in under}),
            "max_seconds": max(t for _, t in under),
        },
        "rss_mb": {
            "before": before / 2**20,
            "after_hostile": after_hostile / 2**20,
            "after_under_limit_bomb": after / 2**20,
        },
        "grown_mb": (after - before) / 2**20,
        "met": all_4xx and worst < TARGET_SECONDS and (after - before) / 2**20 < TARGET_GROWTH_MB,
    }


def markdown(result: dict, index: str) -> str:
    lines = [
        "# Hostile uploads against the search service (make bench-hostile)",
        "",
        f"`python -m pipeline serve --index {index}` on loopback, warmed up with ordinary searches; each upload below sent "
        f"{result['rounds']} times as `POST /search` (multipart), one at a time.",
        "",
        "| upload | bytes | answers | slowest |",
        "|---|---:|---|---:|",
    ]
    for name, row in result["uploads"].items():
        lines.append(
            f"| {name} | {row['bytes']:,} | {', '.join(map(str, row['statuses']))} | {1e3 * row['max_seconds']:.1f} ms |"
        )
    bomb, rss = result["under_limit_bomb"], result["rss_mb"]
    lines += [
        "",
        f"Then a PNG of zeros just under the 40-megapixel limit ({bomb['pixels']:,} pixels in {bomb['bytes']:,} bytes), which "
        f"is decoded: answers {', '.join(map(str, bomb['statuses']))}, slowest {1e3 * bomb['max_seconds']:.0f} ms.",
        "",
        f"Resident memory: {rss['before']:.0f} MB after the warm-up, {rss['after_hostile']:.0f} MB after the hostile uploads, "
        f"{rss['after_under_limit_bomb']:.0f} MB after the under-limit bomb: grown by {result['grown_mb']:.0f} MB.",
        "",
        f"Targets: every hostile upload answered 4xx within {TARGET_SECONDS:.0f} s (slowest {1e3 * result['worst_seconds']:.0f} ms), "
        f"memory grown by less than {TARGET_GROWTH_MB:.0f} MB — {'met' if result['met'] else 'NOT met'}.",
        "",
        "Command: `make bench-hostile` (`python -m benchmarks.bench_hostile`).",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="default", help="index to serve (default: default, which make train builds)")
    parser.add_argument("--rounds", type=int, default=3, help="times each upload is sent (default 3)")
    args = parser.parse_args(argv)
    setup_logging()
    result = run(args.index, args.rounds)
    json_path, md_path = write_results("hostile", {"index": args.index, **result}, markdown(result, args.index))
    print(markdown(result, args.index))
    print(f"\nwritten: {json_path}, {md_path}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
