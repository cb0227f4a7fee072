"""``data describe``: counts per split and modality, and every problem found."""

from __future__ import annotations

import dataclasses

import pandas as pd

from pipeline.data.file_check import check_files
from pipeline.data.manifest import SPLITS, Manifest, Problem
from pipeline.modalities import file_modalities


@dataclasses.dataclass
class DatasetReport:
    root: str
    format: str
    counts: pd.DataFrame  # index: split (+ "total"); columns below
    distinct: dict[str, int]  # label and metadata columns → number of distinct values
    problems: list[Problem]
    files_checked: int

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "format": self.format,
            "counts": {split: {k: int(v) for k, v in row.items()} for split, row in self.counts.iterrows()},
            "distinct": self.distinct,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "files_checked": self.files_checked,
        }

    def render(self, max_problems: int = 50) -> str:
        lines = [f"Dataset: {self.root} (format: {self.format})", ""]
        table = self.counts.copy()
        table.index.name = "split"
        lines.append(table.to_string(formatters={c: "{:,}".format for c in table.columns}))
        lines.append("")
        for column, n in self.distinct.items():
            lines.append(f"{column}: {n:,} distinct values")
        lines.append(f"files checked: {self.files_checked:,}")
        if not self.problems:
            lines.append("problems: none")
        else:
            lines.append(f"problems: {len(self.problems):,}")
            for problem in self.problems[:max_problems]:
                lines.append(f"  {problem}")
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems:,} more (use --json for all)")
        return "\n".join(lines)


def count_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows, items and distinct files/captions per split, with a total row."""

    def counts(part: pd.DataFrame) -> dict:
        files = {m.plural: part.loc[part[m.name] != "", m.name].nunique() for m in file_modalities()}
        return {
            "rows": len(part),
            "items": part["item_id"].nunique(),
            "captions": int((part["text"] != "").sum()),
            **files,
            "labelled": int((part["label"] != "").sum()),
        }

    order = [s for s in SPLITS if s in set(frame["split"])] + sorted(set(frame["split"]) - set(SPLITS))
    table = pd.DataFrame({split: counts(frame[frame["split"] == split]) for split in order}).T
    table.loc["total"] = counts(frame)
    return table


def describe(manifest: Manifest, check: bool = True, show_progress: bool = True) -> DatasetReport:
    frame = manifest.frame
    problems = list(manifest.problems)
    files = 0
    if check:
        problems += check_files(manifest, show_progress=show_progress)
        files = sum(frame.loc[frame[m.name] != "", m.name].nunique() for m in file_modalities())
    distinct = {}
    for column in ["label", *manifest.metadata_columns]:
        values = frame.loc[frame[column].astype(str) != "", column]
        if len(values):
            distinct[column] = int(values.nunique())
    return DatasetReport(str(manifest.root), manifest.format, count_table(frame), distinct, problems, files)
