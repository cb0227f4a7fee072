"""Retrieval evaluation of a split's embeddings, and its reports (JSON, Markdown, PNG)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from pipeline.evaluation.embedder import SplitEmbeddings
from pipeline.evaluation.retrieval_metrics import KS, recall_curve, retrieval_report, rsum
from pipeline.io_utils import atomic_path, write_json_atomic, write_text_atomic
from pipeline.modalities import modality_names
from pipeline.modalities.names import IMAGE
from pipeline.records import TWIN_CHOICE

WORD_ORDER_SUBSET = "text->image (word-order subset)"


def _relevance(emb: SplitEmbeddings, query: str, gallery: str) -> tuple[np.ndarray, np.ndarray | None]:
    q, g = emb.owners[query], emb.owners[gallery]
    same_item = q[:, None] == g[None, :]
    labels = emb.labels
    if (labels != "").all() and len(set(labels)) > 1:
        same_label = labels[q][:, None] == labels[g][None, :]
        return same_item, same_label
    return same_item, None


def evaluate_embeddings(emb: SplitEmbeddings, with_curves: bool = False, relevance: str = "item") -> dict:
    """Metrics for every direction between the modalities present, rsum, and subsets.

    Keys are like ``"text->image"``, each with R@1/5/10 (percent), MedR, MeanR and, where
    labels define relevance, mAP (percent, a hit being any item with the query's label).
    With ``relevance="label"`` (class-level data, ``train.positives = "label"``), R@K, ranks
    and curves count any item of the query's label as a hit too, not only its own item.
    """
    if relevance not in ("item", "label"):
        raise ValueError(f"relevance must be 'item' or 'label', not {relevance!r}")
    report, curves = {}, {}
    modalities = [m for m in modality_names() if m in emb.vectors]
    for query, gallery in itertools.permutations(modalities, 2):
        similarity = emb.vectors[query] @ emb.vectors[gallery].T
        same_item, same_label = _relevance(emb, query, gallery)
        hits = same_label if relevance == "label" and same_label is not None else same_item
        direction = f"{query}->{gallery}"
        report[direction] = retrieval_report(similarity, hits)
        if same_label is not None:
            report[direction]["mAP"] = retrieval_report(similarity, same_label, with_map=True)["mAP"]
        if with_curves:
            curves[direction] = recall_curve(similarity, hits)
    directions = dict(report)
    report["rsum"] = rsum(directions)
    if "item" in emb.vectors and "text" in emb.vectors:
        similarity = emb.vectors["text"] @ emb.vectors["item"].T
        same_item, same_label = _relevance(emb, "text", "item")
        report["text->item"] = retrieval_report(
            similarity, same_label if relevance == "label" and same_label is not None else same_item
        )
        if same_label is not None:
            report["text->item"]["mAP"] = retrieval_report(similarity, same_label, with_map=True)["mAP"]
    if "text" in emb.vectors and IMAGE in emb.vectors and (emb.contrast_groups != "").any():
        queries = np.where(emb.contrast_groups[emb.owners["text"]] != "")[0]
        similarity = emb.vectors["text"][queries] @ emb.vectors[IMAGE].T
        report[WORD_ORDER_SUBSET] = retrieval_report(
            similarity, emb.owners["text"][queries][:, None] == emb.owners[IMAGE][None, :]
        )
        report[TWIN_CHOICE] = twin_choice(emb, queries)
    if with_curves:
        report["_curves"] = {k: v.tolist() for k, v in curves.items()}
    return report


def twin_choice(emb: SplitEmbeddings, queries: np.ndarray) -> dict:
    """Word order alone: the share of twin captions (``queries``, rows of the text) that score
    their own image above their twin's, the one other item of their contrast group. Unlike
    R@1 on the subset, no other scene can get in the way."""
    image_row = {int(item): row for row, item in enumerate(emb.owners[IMAGE])}
    members: dict[str, list[int]] = {}
    for item, group in enumerate(emb.contrast_groups):
        if group:
            members.setdefault(group, []).append(item)
    wins = []
    for q in queries:
        own = int(emb.owners["text"][q])
        twins = [t for t in members[emb.contrast_groups[own]] if t != own]
        if own in image_row and len(twins) == 1 and twins[0] in image_row:
            text = emb.vectors["text"][q]
            wins.append(
                float(text @ emb.vectors[IMAGE][image_row[own]] > text @ emb.vectors[IMAGE][image_row[twins[0]]])
            )
    return {"accuracy": 100.0 * float(np.mean(wins)) if wins else float("nan"), "queries": len(wins)}


def markdown_table(report: dict, title: str = "") -> str:
    rows = [k for k, v in report.items() if isinstance(v, dict) and "R@1" in v]
    has_map = any("mAP" in report[k] for k in rows)
    head = "| direction | R@1 | R@5 | R@10 | MedR | MeanR |" + (" mAP |" if has_map else "") + " queries | gallery |"
    lines = ([f"## {title}", ""] if title else []) + [head, "|---" * (head.count("|") - 1) + "|"]
    for key in rows:
        r = report[key]
        extra = f" {r['mAP']:.1f} |" if has_map else ""
        if has_map and "mAP" not in r:
            extra = " |"
        lines.append(
            f"| {key} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | {r['MedR']:g} | {r['MeanR']:.1f} |{extra} {r['queries']:,} | {r['gallery']:,} |"
        )
    lines += ["", f"rsum (all directions above the subsets): {report['rsum']:.1f}"]
    if TWIN_CHOICE in report:
        t = report[TWIN_CHOICE]
        lines.append(
            f"{TWIN_CHOICE}: {t['accuracy']:.1f}% of {t['queries']:,} twin captions score their own image above their twin's (chance 50%)"
        )
    return "\n".join(lines)


def plot_curves(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for direction, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=direction)
    for k in KS:
        ax.axvline(k, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="K", ylabel="Recall@K (%)", title=title, ylim=(0, 100), xlim=(1, len(next(iter(curves.values())))))
    ax.set_xscale("log")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_reports(report: dict, json_path: Path, title: str) -> dict[str, Path]:
    """Writes ``json_path`` and, beside it, the Markdown table and the Recall@K plot."""
    json_path = Path(json_path)
    curves = report.pop("_curves", None)
    write_json_atomic(json_path, report)
    md_path = json_path.with_suffix(".md")
    write_text_atomic(md_path, markdown_table(report, title) + "\n")
    written = {"json": json_path, "markdown": md_path}
    if curves:
        png_path = json_path.with_suffix(".png")
        plot_curves(curves, png_path, title)
        written["plot"] = png_path
    return written
