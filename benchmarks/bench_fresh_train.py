"""make bench-fresh-train: `make train` as a new user runs it, timed from nothing.

Clones the repository's committed HEAD into a new temporary folder (so no `.venv`, no
`data/`, no `saved_models/`, and no `../shared` beside it), points pip at an empty cache
(every package is downloaded again), runs `make train` there and reports the wall time of
each step and the test figures of the run it made.

    python -m benchmarks.bench_fresh_train [--keep]

The limit a first `make train` must stay within is 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_io import write_results

REPO = Path(__file__).resolve().parents[1]
LIMIT_SECONDS = 15 * 60
FIGURES = (
    ("text->image", "R@1"),
    ("text->image (word-order subset)", "R@1"),
    ("image->text", "R@1"),
    ("text->item", "R@1"),
    ("audio->image", "R@1"),
    ("audio->text", "R@1"),
    ("text->audio", "R@1"),
    ("text->image (twin choice)", "accuracy"),
)
# Log lines that start each step of make train, in order (the first is the clone's own start).
STEP_MARKS = (
    ("set-up (.venv, pip)", None),
    ("dataset build", r"planning \d+ train scenes"),
    ("training", r"\[1/5\] data:"),
    ("test evaluation, index, export", r"\[4/5\] evaluating"),
)


def step_seconds(log_lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per step from the time each line was read (``log_lines``: (seconds since start, line))."""
    starts = [0.0]
    for _, pattern in STEP_MARKS[1:]:
        starts.append(next((t for t, line in log_lines if re.search(pattern, line)), float("nan")))
    ends = starts[1:] + [total]
    return {name: round(end - start, 1) for (name, _), start, end in zip(STEP_MARKS, starts, ends)}


def minutes_and_seconds(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60} min {whole % 60} s"


def markdown(result: dict) -> str:
    md = [
        "# `make train` from nothing (fresh clone, empty pip cache, no ../shared)",
        "",
        f"`make bench-fresh-train` at commit {result['commit']}: **{minutes_and_seconds(result['seconds'])}** in all "
        f"(limit {result['limit_seconds'] // 60} min), {result['epochs_run']} epochs.",
        "",
        "| step | seconds |",
        "|---|---:|",
    ]
    # In the order of make train (the JSON file keeps its keys sorted).
    md += [f"| {name} | {result['steps'][name]:.0f} |" for name, _ in STEP_MARKS]
    md += ["", "Test split of the default dataset (300 scenes):", "", "| figure | value |", "|---|---:|"]
    md += [f"| {d} {k} | {result['test'][f'{d} {k}']:.1f} |" for d, k in FIGURES]
    return "\n".join(md)


def run_make_train(clone: Path, env: dict) -> tuple[float, int, list[tuple[float, str]]]:
    start = time.time()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        ["make", "train"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        for line in process.stdout:
            lines.append((time.time() - start, line.rstrip("\n")))
            print(line, end="", flush=True)
    return time.time() - start, process.returncode, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--keep", action="store_true", help="keep the clone (its path is printed) instead of deleting it"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="fresh-train-"))
    clone, pip_cache = workdir / "main", workdir / "pip-cache"
    pip_cache.mkdir()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "VIRTUAL_ENV"))}
    env["PIP_CACHE_DIR"] = str(pip_cache)
    try:
        seconds, returncode, lines = run_make_train(clone, env)
        if returncode != 0:
            print(f"make train failed (exit {returncode}) in {clone}", file=sys.stderr)
            return 1
        run = json.loads((clone / "saved_models" / "runs" / "latest" / "run.json").read_text())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    test = run["test"]
    figures = {f"{direction} {key}": test[direction][key] for direction, key in FIGURES}
    steps = step_seconds(lines, seconds)
    result = {
        "commit": commit,
        "seconds": round(seconds, 1),
        "limit_seconds": LIMIT_SECONDS,
        "steps": steps,
        "train_seconds": run["train_seconds"],
        "epochs_run": run["epochs_run"],
        "test": figures,
    }
    json_path, md_path = write_results("fresh-train", result, markdown(result))
    print(markdown(result))
    print(f"\nwritten: {json_path}, {md_path}" + (f"; clone kept in {clone}" if args.keep else ""))
    return 0 if seconds <= LIMIT_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
