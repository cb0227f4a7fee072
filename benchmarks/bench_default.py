"""make bench-default: text models compared on the default dataset, overall and on word order,
and the `default` config itself trained several times with its seed.

Trains one run per text-model kind (text and images only, so each takes a few minutes) on
data/default with everything else as in the `default` config, and reports text→image on the
test split and on its word-order subset: captions of colour-swapped twin scenes, whose words
are the same as the twin's in another order; and the twin choice, how often such a caption
scores its own image above its twin's (word order alone, no other scene in the way).

``--repeats N`` also trains the whole `default` config (what `make train` trains, audio
included) N times, and reports each run's test figures and their spread.

    python -m benchmarks.bench_default [--kinds conv_lstm,conv,lstm,serial] [--epochs N] [--repeats N] [--keep-others]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.results_io import RESULTS_DIR, write_results
from pipeline import paths
from pipeline.cli import setup_logging
from pipeline.config import load_config
from pipeline.evaluation.evaluator import TWIN_CHOICE, WORD_ORDER_SUBSET
from pipeline.training.trainer import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="conv_lstm,conv,lstm,serial", help="text models to compare ('' for none)")
    parser.add_argument(
        "--epochs", type=int, default=60, help="text-image epochs of every row (the rows of the results file ran 60)"
    )
    parser.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the rows of kinds not trained now, and the repeated runs when none are trained now, from "
        "benchmarks/results/default.json (each row says when it ran)",
    )
    parser.add_argument(
        "--repeats", type=int, default=0, help="train the whole default config this many times with its seed (0: none)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 0:
        parser.error(f"--repeats must be 0 or more, got {args.repeats}")
    setup_logging()
    rows = []
    for kind in [k for k in args.kinds.split(",") if k]:
        overrides = [
            f"text.kind={kind}",
            "data.modalities=text,image",
            "train.pairs=text-image",
            f"train.epochs={args.epochs}",
            f"name=bench-{kind}",
        ]
        start = time.time()
        result = train(load_config("default", overrides), verbose=0)
        report = json.loads((result.run_dir / "run.json").read_text())["test"]
        rows.append(
            {
                "kind": kind,
                "command": "python -m pipeline train --config default " + " ".join(f"--set {o}" for o in overrides),
                "seconds": round(time.time() - start),
                "run_dir": str(result.run_dir),
                "text->image": report["text->image"],
                "word_order_subset": report[WORD_ORDER_SUBSET],
                "image->text": report["image->text"],
                "twin_choice": report[TWIN_CHOICE],
                "measured": time.strftime("%Y-%m-%d", time.gmtime()),
            }
        )
    repeats = [repeat_run(i) for i in range(args.repeats)]
    if args.keep_others:
        previous = json.loads((RESULTS_DIR / "default.json").read_text())
        rows += [
            {**r, "measured": r.get("measured", previous["machine"]["date"][:10])}
            for r in previous["rows"]
            if r["kind"] not in {row["kind"] for row in rows}
        ]
        repeats = repeats or previous.get("repeats", [])
    md = [
        "# Text models on the default dataset (test split)",
        "",
        "`make bench-default`. Text and images only; everything else as in the `default` config (its text model: `conv_lstm`,",
        "Conv1D features read by a BiLSTM, beside the Conv1D max pool). The word-order subset is",
        "the captions of colour-swapped twin scenes (same words as the twin's captions, in another order); twin choice is",
        "the share of those captions that score their own image above their twin's (chance 50%).",
        "",
        "| text model | text→image R@1 | R@5 | R@10 | word-order subset R@1 | R@5 | twin choice (%) | image→text R@1 | train time (s) | measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        t, w, i = r["text->image"], r["word_order_subset"], r["image->text"]
        md.append(
            f"| {r['kind']} | {t['R@1']:.1f} | {t['R@5']:.1f} | {t['R@10']:.1f} | {w['R@1']:.1f} | {w['R@5']:.1f} "
            f"| {r['twin_choice']['accuracy']:.1f} | {i['R@1']:.1f} | {r['seconds']} | {r.get('measured', '')} |"
        )
    md += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows]
    if repeats:
        md += ["", *repeats_markdown(repeats)]
    json_path, md_path = write_results("default", {"rows": rows, "repeats": repeats}, "\n".join(md))
    print("\n".join(md))
    print(f"\nwritten: {json_path}, {md_path}")
    return 0


REPEAT_FIGURES = (
    ("text->image", "R@1"),
    ("audio->image", "R@1"),
    ("text->audio", "R@1"),
    ("text->item", "R@1"),
    (TWIN_CHOICE, "accuracy"),
)


def repeat_run(index: int) -> dict:
    """The whole `default` config trained once more with its seed: its test figures and time."""
    run_dir = paths.runs_dir() / f"default-repeat{index + 1}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.time()
    result = train(load_config("default"), run_dir=run_dir, verbose=0, mark_latest=False)
    report = json.loads((result.run_dir / "run.json").read_text())["test"]
    return {
        "run": index + 1,
        "command": f"python -m pipeline train --config default --no-export --run-dir {run_dir}",
        "seconds": round(time.time() - start),
        "run_dir": str(result.run_dir),
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "figures": {f"{direction} {key}": report[direction][key] for direction, key in REPEAT_FIGURES},
    }


def repeats_markdown(repeats: list[dict]) -> list[str]:
    """Each repeated run's figures, then the spread (max - min) and the worst run."""
    names = list(repeats[0]["figures"])
    md = [
        f"## The `default` config, {len(repeats)} runs with its seed (test split)",
        "",
        "What `make train` trains (text, images and audio, both phases), trained again in one process each time.",
        "",
        "| run | " + " | ".join(names) + " | train time (s) | measured |",
        "|---|" + "---:|" * (len(names) + 1) + "---|",
    ]
    for r in repeats:
        md.append(
            f"| {r['run']} | "
            + " | ".join(f"{r['figures'][n]:.1f}" for n in names)
            + f" | {r['seconds']} | {r['measured']} |"
        )
    values = {n: [r["figures"][n] for r in repeats] for n in names}
    md.append("| spread (max − min) | " + " | ".join(f"{max(v) - min(v):.1f}" for v in values.values()) + " | | |")
    md.append("| worst | " + " | ".join(f"{min(v):.1f}" for v in values.values()) + " | | |")
    md += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in repeats]
    return md


if __name__ == "__main__":
    sys.exit(main())
