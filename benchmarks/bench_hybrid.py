"""make bench-hybrid: dense, Naive Bayes and hybrid rankings on Flickr8k dev, text→image.

The 1K protocol's text→image direction: the 1,000 dev photos are the collection, indexed as
photos only (their own captions withheld: they are the queries), and each of their 5,000
captions is a query whose one relevant item is its photo. The photos' words for the Naive
Bayes stage are those the word head predicts from their vectors; the head is trained on the
6,000 training photos and their captions, as `python -m pipeline index` trains it.

The fusion weight is tuned on the first two captions of each photo (2,000 queries) and
reported on the other three (3,000 held-out queries), and on all 5,000.

Uses the run saved_models/runs/flickr8k-best (make bench-flickr8k) and its cached image
features (the same vectors `index` would compute, without another backbone pass).

    python -m benchmarks.bench_hybrid [--run flickr8k-best]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from benchmarks.results_io import write_results
from pipeline.cli import setup_logging
from pipeline.retrieval.index_builder import NB_ALPHA, PREDICTED_TOTAL, PREDICTED_WORDS, EmbeddedItems
from pipeline.retrieval.ranking_choice import TUNE_CAPTIONS, WEIGHTS, compare_rankings

log = logging.getLogger("bench_hybrid")


def embedded_split(encoder, manifest, items, features_by_image) -> EmbeddedItems:
    import pandas as pd

    vectors = np.asarray(encoder.model.encode_image_features(np.stack([features_by_image[p] for p in items["image"]])))
    captions = [list(texts) for texts in items["text"]]
    flat = [c for texts in captions for c in texts]
    owner = np.array([i for i, texts in enumerate(captions) for _ in texts])
    metadata = pd.DataFrame(
        {
            "item_id": items["item_id"].to_numpy(),
            "modality": "image",
            "split": items["split"].to_numpy(),
            "label": "",
            "path": items["image"].to_numpy(),
            "caption": [c[0] for c in captions],
            "words_from": "",
        }
    )
    return EmbeddedItems(vectors, metadata, [" ".join(c) for c in captions], encoder.encode_text(flat), owner, flat)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="flickr8k-best")
    parser.add_argument("--alpha", type=float, default=NB_ALPHA, help="Naive Bayes smoothing")
    parser.add_argument("--words", type=int, default=PREDICTED_WORDS, help="predicted words per photo")
    args = parser.parse_args(argv)
    setup_logging()
    start = time.time()
    from pipeline.data.adapters import load_dataset
    from pipeline.data.input_pipeline import select_items
    from pipeline.data.named_datasets import resolve_data_path
    from pipeline.inference import Encoder
    from pipeline.models.image_encoder import build_image_backbone
    from pipeline.preprocessing.image_ops import test_view_names, view_names
    from pipeline.run_artifacts import input_config_for
    from pipeline.training.feature_cache import backbone_features
    from pipeline.training.trainer import training_selection

    encoder = Encoder.from_run(args.run)
    config = encoder.config
    manifest = load_dataset(resolve_data_path(config.data.path), config.data.format or None)
    train_sel, dev_sel = training_selection(config, manifest)
    images = list(train_sel.frame["image"]) + list(dev_sel.frame["image"])
    views = view_names(config.image)
    names, features = backbone_features(
        build_image_backbone(config.image), config.image, input_config_for(config), manifest, images, views=views
    )
    used = len(test_view_names(config.image))
    features_by_image = {
        p: (f[:used] if used > 1 else f[0]) if features.ndim == 3 else f for p, f in zip(names, features)
    }

    train_items = select_items(manifest, config.data.train_split, ("text", "image")).frame.assign(split="train")
    dev_items = dev_sel.frame.assign(split="dev")
    train = embedded_split(encoder, manifest, train_items, features_by_image)
    dev = embedded_split(encoder, manifest, dev_items, features_by_image)
    log.info("embedded %d training and %d dev photos with their captions", len(train.vectors), len(dev.vectors))

    result = compare_rankings(train, dev, encoder.vectorizer.get_vocabulary(), args.alpha, args.words, seed=config.seed)
    rows = result["rows"]
    tune, held = result["queries"]["tuning"], result["queries"]["held_out"]
    payload = {
        "run": str(encoder.run_dir),
        "alpha": args.alpha,
        "predicted_words": args.words,
        "weights_tried": list(WEIGHTS),
        "queries": {**result["queries"], "all": tune + held},
        "choice": result["choice"],
        "gallery": len(dev.vectors),
        "rows": rows,
        "seconds": round(time.time() - start, 1),
    }
    dense_held = rows["dense"]["held_out"]["rsum"]
    lines = [
        "# Hybrid ranking on Flickr8k dev, text→image (make bench-hybrid)",
        "",
        f"Run `{encoder.run_dir.name}`; 1,000 dev photos indexed as photos only (their words: the word head's "
        f"{args.words} most probable words, counts summing to {PREDICTED_TOTAL:g}, head trained on the 6,000 training photos and their captions); "
        f"queries: their 5,000 captions. Naive Bayes smoothing {args.alpha}. Fusion weights (dense share) tuned on "
        f"{tune:,} queries (captions 1–{TUNE_CAPTIONS} of each photo), reported on the {held:,} others and on all.",
        "",
        "| ranking | dense weight | held-out R@1 | R@5 | R@10 | MedR | rsum | all 5,000: R@1 | R@5 | R@10 | rsum |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        h, a = row["held_out"], row["all"]
        weight = "–" if row["weight"] is None else f"{row['weight']:.2f}"
        lines.append(
            f"| {method} | {weight} | {h['R@1']:.1f} | {h['R@5']:.1f} | {h['R@10']:.1f} | {h['MedR']:.0f} | {h['rsum']:.1f} | "
            f"{a['R@1']:.1f} | {a['R@5']:.1f} | {a['R@10']:.1f} | {a['rsum']:.1f} |"
        )
    for method in ("weighted", "rrf"):
        tried = rows[method]["tuning_rsum"]
        lines.append("")
        lines.append(
            f"{method}, tuning rsum by dense weight: " + ", ".join(f"{w:.2f}: {v:.1f}" for w, v in tried.items())
        )
    better = [m for m in ("weighted", "rrf") if rows[m]["held_out"]["rsum"] > dense_held]
    choice = result["choice"]
    lines += [
        "",
        (
            "Hybrid better than dense alone on the held-out queries: "
            + ", ".join(better)
            + f". Chosen (what `python -m pipeline index` stores for such data): {choice['method']}, dense weight {choice['weight']:.2f}."
        )
        if better
        else "No hybrid beats the dense ranking on the held-out queries: the dense ranking stays the default.",
        "",
        f"Command: `make bench-hybrid` ({payload['seconds']:.0f} s).",
    ]
    json_path, md_path = write_results("hybrid", payload, "\n".join(lines))
    print(md_path.read_text())
    print(f"results: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
