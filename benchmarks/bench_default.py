"""make bench-default: text models compared on the default dataset, overall and on word order.

Trains one run per text-model kind (text and images only, so each takes a few minutes) on
data/default with everything else as in the `default` config, and reports text→image on the
test split and on its word-order subset: captions of colour-swapped twin scenes, whose words
are the same as the twin's in another order; and the twin choice, how often such a caption
scores its own image above its twin's (word order alone, no other scene in the way).

    python -m benchmarks.bench_default [--kinds conv_lstm,conv,lstm,serial] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.results_io import RESULTS_DIR, write_results
from pipeline.cli import setup_logging
from pipeline.config import load_config
from pipeline.evaluation.evaluator import TWIN_CHOICE, WORD_ORDER_SUBSET
from pipeline.training.trainer import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="conv_lstm,conv,lstm,serial")
    parser.add_argument("--epochs", type=int, default=60, help="text-image epochs of every row (the rows of the results file ran 60)")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the rows of kinds not trained now from benchmarks/results/default.json (each row says when it ran)")
    args = parser.parse_args(argv)
    setup_logging()
    rows = []
    for kind in args.kinds.split(","):
        overrides = [f"text.kind={kind}", "data.modalities=text,image", "train.pairs=text-image", f"train.epochs={args.epochs}",
                     f"name=bench-{kind}"]
        start = time.time()
        result = train(load_config("default", overrides), export=False, verbose=0)
        report = json.loads((result.run_dir / "run.json").read_text())["test"]
        rows.append({
            "kind": kind, "command": "python -m pipeline train --config default " + " ".join(f"--set {o}" for o in overrides),
            "seconds": round(time.time() - start), "run_dir": str(result.run_dir),
            "text->image": report["text->image"], "word_order_subset": report[WORD_ORDER_SUBSET], "image->text": report["image->text"],
            "twin_choice": report[TWIN_CHOICE], "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        })
    if args.keep_others:
        previous = json.loads((RESULTS_DIR / "default.json").read_text())
        rows += [{**r, "measured": r.get("measured", previous["machine"]["date"][:10])} for r in previous["rows"]
                 if r["kind"] not in {row["kind"] for row in rows}]
    md = ["# Text models on the default dataset (test split)", "",
          "`make bench-default`. Text and images only; everything else as in the `default` config (its text model: `conv_lstm`,",
          "Conv1D features read by a BiLSTM, beside the Conv1D max pool). The word-order subset is",
          "the captions of colour-swapped twin scenes (same words as the twin's captions, in another order); twin choice is",
          "the share of those captions that score their own image above their twin's (chance 50%).", "",
          "| text model | text→image R@1 | R@5 | R@10 | word-order subset R@1 | R@5 | twin choice (%) | image→text R@1 | train time (s) | measured |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        t, w, i = r["text->image"], r["word_order_subset"], r["image->text"]
        md.append(
            f"| {r['kind']} | {t['R@1']:.1f} | {t['R@5']:.1f} | {t['R@10']:.1f} | {w['R@1']:.1f} | {w['R@5']:.1f} "
            f"| {r['twin_choice']['accuracy']:.1f} | {i['R@1']:.1f} | {r['seconds']} | {r.get('measured', '')} |"
        )
    md += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows]
    json_path, md_path = write_results("default", {"rows": rows}, "\n".join(md))
    print("\n".join(md))
    print(f"\nwritten: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
