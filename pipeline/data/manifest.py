"""The dataset model: one manifest row per pairing of modalities.

A manifest is a pandas DataFrame with the columns ``item_id, split, text, image, audio,
label`` (modality columns may be empty) and file paths relative to the dataset root.
Rows that share an ``item_id`` describe the same item (e.g. the five captions of one
Flickr8k photo). Adapters may add metadata columns (``speaker``, ``fold``, ...); a
manifest written by hand may add its own, named ``meta_*``.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
from pathlib import Path

import pandas as pd

from pipeline.data.item_ids import RULE, item_id_problem
from pipeline.io_utils import atomic_path
from pipeline.modalities import modality_names
from pipeline.modalities.names import AUDIO, IMAGE

# Columns any manifest may carry, read by training where present.
OPTIONAL_COLUMNS = {
    "contrast_group": "items sharing a group (e.g. colour-swapped twins) are batched together as hard negatives",
    "audio_words": "when each word of the row's text is heard in its audio: 'word:start:end ...' in seconds",
    "speaker": "who speaks in the row's audio (kept for speaker-split reports)",
}


def modality_columns() -> tuple[str, ...]:
    """One column per registered modality (``pipeline.modalities``): text, image, audio, ..."""
    return modality_names()


def core_columns() -> tuple[str, ...]:
    """The columns every manifest has once read (a modality's may be empty)."""
    return ("item_id", "split", *modality_columns(), "label")

SPLITS = ("train", "dev", "test", "unassigned")
SPLIT_ALIASES = {"val": "dev", "valid": "dev", "validation": "dev", "training": "train", "testing": "test"}

# Column names people often use for the manifest's own, for "did you mean" hints.
COLUMN_SYNONYMS = {
    "id": "item_id",
    "item": "item_id",
    "key": "item_id",
    "caption": "text",
    "captions": "text",
    "sentence": "text",
    "description": "text",
    "query": "text",
    "picture": IMAGE,
    "photo": IMAGE,
    "img": IMAGE,
    "image_path": IMAGE,
    "filename": IMAGE,
    "sound": AUDIO,
    "speech": AUDIO,
    "wav": AUDIO,
    "audio_path": AUDIO,
    "class": "label",
    "category": "label",
    "target": "label",
    "subset": "split",
    "fold": "split",
}



class ManifestError(ValueError):
    """A manifest that cannot be used at all; the message says what is wrong and what is expected."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, named precisely enough to fix it."""

    kind: str  # missing_file | unreadable_file | empty_caption | no_modality | unknown_split | ...
    message: str
    row: int | None = None  # manifest row (0-based)
    file: str | None = None  # path relative to the dataset root

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.file:
            where.append(self.file)
        prefix = f"[{self.kind}] " + (" ".join(where) + ": " if where else "")
        return prefix + self.message


@dataclasses.dataclass
class Manifest:
    """A dataset: its root folder, its rows, the adapter that read it and the problems seen so far."""

    root: Path
    frame: pd.DataFrame
    format: str
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self.frame = normalize_frame(self.frame, source=str(self.root))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in core_columns()]

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]

    def modalities(self) -> list[str]:
        return [m for m in modality_columns() if (self.frame[m] != "").any()]

    def resolve(self, relative: str) -> Path:
        return self.root / relative

    def save(self, path: str | Path) -> Path:
        """Writes the manifest as CSV or Parquet (by extension), atomically."""
        path = Path(path)
        if path.suffix != ".parquet" and self.frame.map(lambda v: "\x00" in str(v)).to_numpy().any():
            raise ManifestError(
                f"{path}: a value holds a NUL character, which CSV cannot keep; save the manifest as .parquet"
            )
        with atomic_path(path) as tmp:
            if path.suffix == ".parquet":
                self.frame.to_parquet(tmp, index=False)
            else:
                # Every field quoted: a caption's lone carriage return would otherwise end its row.
                self.frame.to_csv(tmp, index=False, quoting=csv.QUOTE_ALL)
        return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads a CSV or Parquet manifest with every cell as a string ('' when empty)."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        return frame.astype(object).where(frame.notna(), "").astype(str)
    with open(path, "rb") as handle:
        for line, text in enumerate(handle, start=1):
            if b"\x00" in text:  # pandas' CSV reader silently cuts a value at a NUL
                raise ManifestError(
                    f"{path}: line {line} holds a NUL byte, which a CSV manifest cannot carry; remove it, "
                    f"or write the manifest as .parquet"
                )
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def check_columns(columns, source: str, allowed_extra=()) -> None:
    """Rejects columns a manifest does not understand, with a did-you-mean hint."""
    unknown = [
        c
        for c in columns
        if c not in core_columns() and c not in OPTIONAL_COLUMNS and c not in allowed_extra and not c.startswith("meta_")
    ]
    if not unknown:
        return
    hints = []
    for column in unknown:
        guess = COLUMN_SYNONYMS.get(column.lower()) or next(
            iter(difflib.get_close_matches(column.lower(), core_columns(), n=1)), None
        )
        hints.append(f"'{column}'" + (f" (did you mean '{guess}'?)" if guess else ""))
    raise ManifestError(
        f"{source}: unknown column(s) {', '.join(hints)}. A manifest has the columns "
        f"{', '.join(core_columns())} (any modality may be empty), optionally {', '.join(OPTIONAL_COLUMNS)}; "
        f"extra metadata columns must be named meta_<something>."
    )


def normalize_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Fills in the defaults of a manifest and checks that it can be used at all."""
    frame = frame.copy()
    present = [m for m in modality_columns() if m in frame.columns]
    if not present:
        raise ManifestError(
            f"{source}: no modality column. Expected at least one of {', '.join(modality_columns())} "
            f"(found columns: {', '.join(map(str, frame.columns)) or 'none'})."
        )
    for column in core_columns():
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.fillna("")
    for column in core_columns():
        frame[column] = frame[column].astype(str).str.strip()
    frame.loc[frame["item_id"] == "", "item_id"] = [f"row{i}" for i in frame.index[frame["item_id"] == ""]]
    bad_ids = [(row, str(error)) for row, value in frame["item_id"].items() if (error := item_id_problem(value))]
    if bad_ids:
        listed = "; ".join(f"row {row}: {message.split('; ')[0]}" for row, message in bad_ids[:5])
        more = f" (and {len(bad_ids) - 5} more rows)" if len(bad_ids) > 5 else ""
        raise ManifestError(
            f"{source}: {len(bad_ids)} row(s) have an item id that cannot be stored: {listed}{more}. "
            f"Fix them in the manifest: {RULE}."
        )
    frame["split"] = frame["split"].str.lower().replace(SPLIT_ALIASES)
    frame.loc[frame["split"] == "", "split"] = "unassigned"
    if len(frame) == 0:
        raise ManifestError(f"{source}: the manifest has no rows.")
    usable = (frame[list(modality_columns())] != "").any(axis=1)
    if not usable.any():
        raise ManifestError(
            f"{source}: none of the {len(frame)} rows has a text, image or audio value, so there "
            f"is nothing to train or search on."
        )
    ordered = list(core_columns()) + [c for c in frame.columns if c not in core_columns()]
    return frame[ordered].reset_index(drop=True)


def row_problems(frame: pd.DataFrame) -> list[Problem]:
    """Problems visible in the table alone (no file access)."""
    problems = []
    no_modality = (frame[list(modality_columns())] == "").all(axis=1)
    for row in frame.index[no_modality]:
        problems.append(Problem("no_modality", "no text, image or audio in this row", row=int(row)))
    unknown_split = ~frame["split"].isin(SPLITS)
    for row in frame.index[unknown_split]:
        split = frame.at[row, "split"]
        problems.append(Problem("unknown_split", f"split '{split}' is not one of {', '.join(SPLITS)}", row=int(row)))
    return problems
