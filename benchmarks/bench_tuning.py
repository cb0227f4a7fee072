"""make bench-tuning: a KerasTuner search within a time budget, then the base config against
the tuned one at full length (writes benchmarks/results/<config>-tuning.md).

The search trains each trial for ``--epochs`` (shorter than the config's, to fit more trials
in the budget); the first trial is the base config itself. Then both the base config and
the search's ``best.toml`` are trained again with the config's own epochs and compared on
dev rsum, since a short trial's ranking need not hold at full length.

    python -m benchmarks.bench_tuning [--config flickr8k] [--budget 60] [--epochs 15]
        [--algorithm random] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.results_io import write_results
from pipeline import paths
from pipeline.cli import main as pipeline_main
from pipeline.cli import setup_logging
from pipeline.config import load_config
from pipeline.training.trainer import train
from pipeline.tuning.search_space import DEFAULT_SPACE
from pipeline.tuning.tuner import read_trials


def _value(config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _full_run(config, name: str) -> dict:
    start = time.time()
    result = train(config, verbose=0, mark_latest=False)
    dev = json.loads((result.run_dir / "run.json").read_text())["dev"]
    return {
        "name": name,
        "run_dir": str(result.run_dir),
        "seconds": round(time.time() - start),
        "rsum": dev["rsum"],
        "image->text R@1": dev["image->text"]["R@1"],
        "text->image R@1": dev["text->image"]["R@1"],
        "epochs": config.train.epochs,
    }


def _cache_line(log_path: Path | None) -> str:
    """What the search's log says of the image feature cache."""
    if log_path is None or not log_path.is_file():
        return (
            "Trials read the frozen backbone's image features from the on-disk cache (`saved_models/cache/features`)."
        )
    text = log_path.read_text(errors="replace")
    hits, computed = text.count("image features: using the cache"), text.count("cached as")
    return (
        f"Image features: the search's log ({log_path.name}) shows {hits} reads from the on-disk cache (one per image view per trial) and {computed} "
        f"computations (the cache was filled before the search), so no trial recomputed them."
        if not computed
        else f"Image features: the search's log shows {hits} reads from the cache and {computed} computations."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="flickr8k")
    parser.add_argument("--budget", type=float, default=60.0, help="minutes of search (default 60)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per trial (default 15)")
    parser.add_argument("--algorithm", default="random")
    parser.add_argument(
        "--report-only", action="store_true", help="skip the search; report on the existing tuner folder"
    )
    parser.add_argument(
        "--log", type=Path, default=None, help="with --report-only: the search's log, to count feature-cache hits"
    )
    args = parser.parse_args(argv)
    setup_logging()
    base = load_config(args.config)
    root = paths.tuning_dir() / base.name
    search_command = (
        f"python -m pipeline tune --config {args.config} --algorithm {args.algorithm} --max-trials 200 "
        f"--budget-minutes {args.budget:g} --epochs {args.epochs}"
    )
    search_seconds = None
    if not args.report_only:
        start = time.time()
        code = pipeline_main(search_command.split()[3:])
        if code != 0:
            return code
        search_seconds = round(time.time() - start)
    trials = sorted(read_trials(root), key=lambda r: r["trial"])
    if not trials:
        print(f"no finished trial in {root}", file=sys.stderr)
        return 2
    best_trial = max(trials, key=lambda r: r["dev_rsum"])
    tuned = load_config(str(root / "best.toml"))
    changed = [p.key for p in DEFAULT_SPACE if _value(base, p.key) != _value(tuned, p.key)]
    rows = [_full_run(base, "base config")]
    # When the base config's own trial won, best.toml is the base config: no second run.
    rows.append(
        _full_run(tuned, "tuned (best.toml)") if changed else {**rows[0], "name": "tuned (best.toml) = the base config"}
    )
    payload = {
        "search_command": search_command,
        "search_seconds": search_seconds,
        "trials": trials,
        "best_trial": best_trial["trial"],
        "full_runs": rows,
        "changed": {k: [str(_value(base, k)), str(_value(tuned, k))] for k in changed},
    }
    better = rows[1]["rsum"] > rows[0]["rsum"]
    md = [
        f"# Tuning {base.name} with KerasTuner",
        "",
        f'Search: `{search_command}` (`make tune CONFIG={args.config} BUDGET={args.budget:g} ARGS="--algorithm {args.algorithm} '
        f'--max-trials 200 --epochs {args.epochs}"`), the built-in search space (`pipeline/tuning/search_space.py`).',
        f"{len(trials)} trials of {args.epochs} epochs"
        + (
            f" in {search_seconds / 60:.1f} min"
            if search_seconds
            else f", {sum(r['seconds'] for r in trials) / 60:.1f} min of training in all"
        )
        + f"; trial {trials[0]['trial']} is the base config itself. The objective is dev rsum (R@1+5+10 both ways, dev 1K protocol).",
        _cache_line(args.log),
        "",
        "## Base against tuned, trained again at full length",
        "",
        "| config | epochs | dev rsum | image→text R@1 | text→image R@1 | train time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['name']} | {r['epochs']} | {r['rsum']:.1f} | {r['image->text R@1']:.1f} | {r['text->image R@1']:.1f} | {r['seconds']} |"
        for r in rows
    ]
    if not changed:
        verdict = (
            "The search found nothing better than the base config: its own trial had the best dev rsum, so best.toml is the "
            "base config and the config is left as it was."
        )
    else:
        verdict = (
            f"The tuned config is {'better' if better else 'not better'} at full length ({rows[1]['rsum'] - rows[0]['rsum']:+.1f} rsum)."
            + (
                f" Its values are now the `{base.name}` config's defaults."
                if better
                else " The config is left as it was."
            )
        )
    md += ["", verdict, ""]
    if changed:
        md += ["Values the search changed:", "", "| key | base | tuned |", "|---|---|---|"]
        md += [f"| `{k}` | {v[0]} | {v[1]} |" for k, v in payload["changed"].items()]
    md += ["", f"## Every trial ({args.epochs} epochs each), best first", ""]
    md += (root / "summary.md").read_text().splitlines() if (root / "summary.md").exists() else []
    json_path, md_path = write_results(f"{base.name}-tuning", payload, "\n".join(md))
    print("\n".join(md))
    print(f"\nwritten: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
