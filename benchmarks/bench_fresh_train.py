"""make bench-fresh-train: `make train` as a new user runs it, timed from nothing.

Clones the repository's committed HEAD (or ``--commit REV``) into a new temporary folder (so
no `.venv`, no `data/`, no `saved_models/`, and no `../shared` beside it), points pip at an
empty cache (every package is downloaded again), runs `make train` there and reports the wall
time of each step and the test figures of the run it made.

    python -m benchmarks.bench_fresh_train [--commit REV] [--keep]

The results keep the last two commits measured side by side (a change and the commit before
it). The limit a first `make train` must stay within is 15 minutes on 2 cores; the target
for this benchmark is 11 minutes, so that a machine slower by a fifth still keeps it.
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

from benchmarks.results_io import RESULTS_DIR, machine, write_results

REPO = Path(__file__).resolve().parents[1]
LIMIT_SECONDS = 15 * 60
TARGET_SECONDS = 11 * 60
RUNS_KEPT = 2
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
    ("training: start, data checks, model", r"\[1/5\] data:"),
    ("training: text-image phase", r"phase 'text-image'"),
    ("training: audio phase", r"phase 'audio'"),
    ("test evaluation (and the run's dev report)", r"\[3/5\] training done"),
    ("index", r"-m pipeline index "),
    ("export", r"-m pipeline export "),
)


def step_seconds(log_lines: list[tuple[float, str]], total: float) -> dict[str, float | None]:
    """Seconds per step from the time each line was read (``log_lines``: (seconds since start,
    line)). A step whose line never came is None, and the step before it runs on to the next
    line that did."""
    starts: list[float | None] = [0.0]
    for _, pattern in STEP_MARKS[1:]:
        starts.append(next((t for t, line in log_lines if re.search(pattern, line)), None))
    steps = {}
    for i, (name, _) in enumerate(STEP_MARKS):
        if starts[i] is None:
            steps[name] = None
            continue
        end = next((t for t in starts[i + 1 :] if t is not None), total)
        steps[name] = round(end - starts[i], 1)
    return steps


def minutes_and_seconds(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60} min {whole % 60} s"


def markdown(runs: list[dict]) -> str:
    """The runs side by side, oldest first: total, steps and test figures."""
    header = "| | " + " | ".join(f"`{r['commit']}`" for r in runs) + " |"
    rule = "|---|" + "---:|" * len(runs)
    newest = runs[-1]
    md = [
        "# `make train` from nothing (fresh clone, empty pip cache, no ../shared)",
        "",
        f"`make bench-fresh-train` at commit {newest['commit']}: **{minutes_and_seconds(newest['seconds'])}** in all "
        f"(target {TARGET_SECONDS // 60} min, limit {newest['limit_seconds'] // 60} min), {newest['epochs_run']} epochs."
        + (f" Beside it, commit {runs[0]['commit']}, measured the same way." if len(runs) > 1 else ""),
        "",
        "Seconds per step of `make train`:",
        "",
        header,
        rule,
    ]
    # In the order of make train (the JSON file keeps its keys sorted).
    for name, _ in STEP_MARKS:
        md.append(f"| {name} | " + " | ".join(_seconds(r["steps"].get(name)) for r in runs) + " |")
    md.append("| **in all** | " + " | ".join(f"**{minutes_and_seconds(r['seconds'])}**" for r in runs) + " |")
    md += ["", "Test split of the default dataset (300 scenes):", "", header, rule]
    for d, k in FIGURES:
        md.append(f"| {d} {k} | " + " | ".join(f"{r['test'][f'{d} {k}']:.1f}" for r in runs) + " |")
    return "\n".join(md)


def _seconds(value) -> str:
    return "–" if value is None else f"{value:.0f}"


def merged_runs(previous: list[dict], run: dict, kept: int = RUNS_KEPT) -> list[dict]:
    """The last ``kept`` runs, ``run`` newest; a commit measured again replaces its old run."""
    return [r for r in previous if r["commit"] != run["commit"]][-(kept - 1) :] + [run] if kept > 1 else [run]


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
    parser.add_argument("--commit", default="HEAD", help="the commit to measure (default HEAD)")
    args = parser.parse_args(argv)
    found = subprocess.run(
        ["git", "rev-parse", "--short", f"{args.commit}^{{commit}}"], cwd=REPO, capture_output=True, text=True
    )
    if found.returncode != 0:
        parser.error(f"--commit {args.commit}: not a commit of {REPO}")
    commit = found.stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="fresh-train-"))
    clone, pip_cache = workdir / "main", workdir / "pip-cache"
    pip_cache.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", commit], cwd=clone, check=True)
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
        "machine": machine(),
        "seconds": round(seconds, 1),
        "limit_seconds": LIMIT_SECONDS,
        "steps": steps,
        "train_seconds": run["train_seconds"],
        "epochs_run": run["epochs_run"],
        "test": figures,
    }
    previous_path = RESULTS_DIR / "fresh-train.json"
    previous = json.loads(previous_path.read_text()).get("runs", []) if previous_path.is_file() else []
    runs = merged_runs(previous, result)
    json_path, md_path = write_results("fresh-train", {"runs": runs}, markdown(runs))
    print(markdown(runs))
    print(f"\nwritten: {json_path}, {md_path}" + (f"; clone kept in {clone}" if args.keep else ""))
    return 0 if seconds <= LIMIT_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
