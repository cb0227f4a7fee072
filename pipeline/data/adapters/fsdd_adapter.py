"""The Free Spoken Digit Dataset: ``{digit}_{speaker}_{take}.wav`` recordings.

Text is the digit as a word, the label is the digit and the speaker is kept as a column.
Split by take, as FSDD's own README suggests: takes 0-4 test, 5-9 dev, the rest train.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from pipeline.data.manifest import Manifest, ManifestError, Problem, row_problems
from pipeline.modalities.names import AUDIO, IMAGE

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PATTERN = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")


def recordings_dir(root: Path) -> Path:
    return root / "recordings" if (root / "recordings").is_dir() else root


def split_for_take(take: int) -> str:
    return "test" if take < 5 else "dev" if take < 10 else "train"


class FsddAdapter:
    name = "fsdd"
    description = "Free Spoken Digit Dataset: a recordings/ folder of {digit}_{speaker}_{take}.wav"

    def detect(self, root: Path) -> bool:
        folder = recordings_dir(root)
        if not folder.is_dir():
            return False
        names = [p.name for p in folder.iterdir() if p.suffix == ".wav"]
        return bool(names) and sum(bool(PATTERN.match(n)) for n in names) > 0.5 * len(names)

    def load(self, root: Path) -> Manifest:
        folder = recordings_dir(root)
        prefix = f"{folder.name}/" if folder != root else ""
        records, problems = [], []
        for path in sorted(folder.glob("*.wav")):
            match = PATTERN.match(path.name)
            if not match:
                problems.append(
                    Problem("bad_name", "not named {digit}_{speaker}_{take}.wav; skipped", file=prefix + path.name)
                )
                continue
            digit, speaker, take = int(match[1]), match[2], int(match[3])
            records.append(
                {
                    "item_id": path.stem,
                    "split": split_for_take(take),
                    "text": DIGIT_WORDS[digit],
                    IMAGE: "",
                    AUDIO: prefix + path.name,
                    "label": str(digit),
                    "speaker": speaker,
                }
            )
        if not records:
            raise ManifestError(f"{folder}: no {{digit}}_{{speaker}}_{{take}}.wav recordings.")
        manifest = Manifest(root=root, frame=pd.DataFrame.from_records(records), format=self.name)
        manifest.problems.extend(problems + row_problems(manifest.frame))
        return manifest
