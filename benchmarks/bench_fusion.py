"""make bench-fusion: hybrid items (a photo and its title, a scene and its words) searched as one thing.

Each item is made of its image (and sound, where it has one) and ONE of its captions, its
"title"; the queries are its other captions. Text→item R@1/5/10 are reported for the item
scored by each modality alone (image, sound, title) and by the fusion network's vector of all of
them, on:

- Flickr8k dev (1,000 photos, titles = each photo's first caption, 4,000 queries): one run of
  the `flickr8k` config per fusion strategy, trained with the item-level pair text-item (the
  item fused from the photo and another of its captions than the query, modality dropout), plus
  the plain `flickr8k` run (text-image only; its fusion untrained) as the reference;
- the default dataset's test split (300 scenes, title = first caption, sound = the spoken
  caption): the run `make train` made (``--default-run``), if given.

    python -m benchmarks.bench_fusion [--strategies average,weighted,concat_dense,gated] [--default-run latest]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.results_io import RESULTS_DIR, write_results
from pipeline.cli import setup_logging
from pipeline.config import FUSION_STRATEGIES, load_config
from pipeline.evaluation.embedder import embed_split, fuse_items
from pipeline.evaluation.retrieval_metrics import retrieval_report

KS = ("R@1", "R@5", "R@10")
# The Conv1D text model: the strategies are compared with one text tower, and conv trains in
# a third of conv_lstm's time here (benchmarks/results/flickr8k.md), twice per step with the
# item's words.
FLICKR8K_BASE = ["text.kind=conv"]


def hybrid_scores(model, embeddings) -> dict[str, dict]:
    """Text→item reports: titles are each item's first caption, queries its other captions."""
    owner = embeddings.owners["text"]
    n = len(embeddings.item_ids)
    first = np.full(n, -1)
    for row in range(len(owner) - 1, -1, -1):
        first[owner[row]] = row
    usable = first >= 0
    queries = np.array([row for row in range(len(owner)) if first[owner[row]] != row])
    if not usable.all() or not len(queries):
        raise ValueError("every item needs a title and at least one other caption")
    item_vectors = {"title": embeddings.vectors["text"][first]}
    for m in model.content:
        if m in embeddings.vectors:
            item_vectors[m] = embeddings.vectors[m][np.argsort(embeddings.owners[m])]
    query_vectors = embeddings.vectors["text"][queries]
    relevant = owner[queries][:, None] == np.arange(n)[None, :]
    reports = {f"{m} alone": retrieval_report(query_vectors @ v.T, relevant) for m, v in item_vectors.items()}
    modality_vectors = {("text" if m == "title" else m): v for m, v in item_vectors.items()}
    masks = {m: np.ones(n, "float32") for m in modality_vectors}
    if "text" in model.fused:
        reports["fused"] = retrieval_report(query_vectors @ fuse_items(model, modality_vectors, masks).T, relevant)
    content = {m: v for m, v in modality_vectors.items() if m != "text"}
    if len(content) > 1:
        reports["fused without the title"] = retrieval_report(
            query_vectors @ fuse_items(model, content, masks).T, relevant
        )
    return reports


def flickr8k_row(name: str, overrides: list[str]) -> dict:
    from pipeline.run_artifacts import input_config_for
    from pipeline.training.trainer import train

    overrides = [*FLICKR8K_BASE, *overrides]
    config = load_config("flickr8k", [*overrides, f"name=fusion-{name.replace(' ', '-')}"])
    start = time.time()
    result = train(config, evaluate_test=False, verbose=0, mark_latest=False)
    seconds = time.time() - start
    embeddings = embed_split(
        result.model,
        result.vectorizer,
        input_config_for(config),
        result.manifest,
        config.data.dev_split,
        image_features=result.image_features,
    )
    return {
        "dataset": "flickr8k dev",
        "name": name,
        "strategy": config.fusion.strategy,
        "run_dir": str(result.run_dir),
        "command": "python -m pipeline train --config flickr8k " + " ".join(f"--set {o}" for o in overrides),
        "train_seconds": round(seconds),
        "reports": hybrid_scores(result.model, embeddings),
    }


def default_row(run: str) -> dict:
    from pipeline.data.adapters import load_dataset
    from pipeline.data.named_datasets import resolve_data_path
    from pipeline.inference import Encoder

    encoder = Encoder.from_run(run)
    config = encoder.config
    manifest = load_dataset(resolve_data_path(config.data.path))
    embeddings = embed_split(encoder.model, encoder.vectorizer, encoder.input_config, manifest, config.data.test_split)
    return {
        "dataset": "default test",
        "name": f"make train ({config.fusion.strategy})",
        "strategy": config.fusion.strategy,
        "run_dir": str(encoder.run_dir),
        "command": f"make train (the run's config: {encoder.run_dir / 'config.toml'})",
        "train_seconds": None,
        "reports": hybrid_scores(encoder.model, embeddings),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Hybrid items: one image (and sound) and one caption, searched as one thing",
        "",
        "`make bench-fusion`. Each item is its image (and its spoken caption, on the default dataset) plus ONE of its",
        "captions, its title (the first); the queries are its other captions. Text→item recall when the item is scored",
        "by one of its parts alone, and by the fusion network's vector of all of them (`fused`). Flickr8k rows: the",
        "`flickr8k` config (with the `conv` text model) trained with the item-level pair `text-item` and each fusion",
        "strategy; `text-image only` is the plain config (no loss reaches its fusion network: `weighted` at its even start).",
        "",
        "| dataset | run | item scored by | R@1 | R@5 | R@10 | queries | items | train time |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        time_cell = f"{row['train_seconds'] / 60:.1f} min" if row["train_seconds"] else "–"
        for scoring, r in row["reports"].items():
            lines.append(
                f"| {row['dataset']} | {row['name']} | {scoring} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} "
                f"| {r['queries']} | {r['gallery']} | {time_cell} |"
            )
    lines += ["", "Fused against the better single part (R@1 points):", ""]
    for row in rows:
        reports = row["reports"]
        if "fused" in reports:
            single = max((k for k in reports if k.endswith(" alone")), key=lambda k: reports[k]["R@1"])
            gain = reports["fused"]["R@1"] - reports[single]["R@1"]
            lines.append(
                f"- {row['dataset']}, {row['name']}: fused {reports['fused']['R@1']:.1f} vs {single} "
                f"{reports[single]['R@1']:.1f}: {gain:+.1f}"
            )
    lines += ["", "Commands:", ""] + [f"- {row['name']}: `{row['command']}`" for row in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(FUSION_STRATEGIES))
    parser.add_argument(
        "--default-run", default=None, help="also measure this run of the default config on the default dataset"
    )
    parser.add_argument("--no-flickr8k", action="store_true")
    parser.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the rows of datasets not measured now from benchmarks/results/fusion.json",
    )
    args = parser.parse_args(argv)
    setup_logging()
    start = time.time()
    rows = []
    if not args.no_flickr8k:
        rows.append(flickr8k_row("text-image only", []))
        for strategy in args.strategies.split(","):
            rows.append(flickr8k_row(strategy, ["train.pairs=text-image,text-item", f"fusion.strategy={strategy}"]))
    if args.default_run:
        rows.append(default_row(args.default_run))
    if args.keep_others:
        measured = {row["dataset"] for row in rows}
        previous = json.loads((RESULTS_DIR / "fusion.json").read_text())["rows"]
        rows = [r for r in previous if r["dataset"] not in measured] + rows
    payload = {"rows": rows, "minutes": round((time.time() - start) / 60, 1)}
    text = markdown(rows) + f"\n\nTime of the rows measured in this run: {payload['minutes']} min.\n"
    json_path, md_path = write_results("fusion", payload, text)
    print(text)
    print(f"written: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
