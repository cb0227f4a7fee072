"""Flickr8k as people download it.

Captions come from ``captions.txt`` (CSV ``image,caption``) or ``Flickr8k.token.txt``
(``<image>#<n>\t<caption>``); images from ``images/``, ``Flicker8k_Dataset/`` or
``Flickr8k_Dataset/``; splits from ``Flickr_8k.{train,dev,test}Images.txt``, any of which may
be absent (images in no list go to split ``unassigned``). One row per caption.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from pipeline.data.manifest import Manifest, ManifestError, Problem, row_problems
from pipeline.modalities.names import AUDIO, IMAGE

CAPTION_FILES = ("captions.txt", "Flickr8k.token.txt")
IMAGE_FOLDERS = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset")
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def _find(root: Path, names) -> Path | None:
    for name in names:
        if (root / name).exists():
            return root / name
    return None


def _read_captions(path: Path) -> tuple[list[tuple[str, str, int]], list[Problem]]:
    """(image, caption, source line) triples and the lines that could not be parsed."""
    rows, problems = [], []
    with path.open(encoding="utf-8", newline="") as handle:
        if path.name == "Flickr8k.token.txt":
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                key, sep, caption = line.partition("\t")
                if not sep:
                    problems.append(
                        Problem("bad_line", f"{path.name} line {number}: expected '<image>#<n><TAB><caption>'")
                    )
                    continue
                rows.append((key.split("#")[0].strip(), caption.strip(), number))
        else:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or [h.strip().lower() for h in header[:2]] != [IMAGE, "caption"]:
                raise ManifestError(f"{path}: expected a CSV header 'image,caption', found {header!r}.")
            for number, fields in enumerate(reader, start=2):
                if not fields:
                    continue
                image = fields[0].strip()
                caption = ",".join(fields[1:]).strip()  # unquoted commas inside a caption
                rows.append((image, caption, number))
    return rows, problems


class Flickr8kAdapter:
    name = "flickr8k"
    description = "captions.txt or Flickr8k.token.txt, an images folder and Flickr_8k.*Images.txt split lists"

    def detect(self, root: Path) -> bool:
        return root.is_dir() and _find(root, CAPTION_FILES) is not None

    def load(self, root: Path) -> Manifest:
        captions_path = _find(root, CAPTION_FILES)
        if captions_path is None:
            raise ManifestError(f"{root}: no captions.txt or Flickr8k.token.txt.")
        image_dir = _find(root, IMAGE_FOLDERS)
        image_prefix = f"{image_dir.name}/" if image_dir is not None else ""
        split_of: dict[str, str] = {}
        for split, name in SPLIT_FILES.items():
            if (root / name).is_file():
                for line in (root / name).read_text().split():
                    split_of[line.strip()] = split
        rows, problems = _read_captions(captions_path)
        records = []
        for image, caption, number in rows:
            records.append(
                {
                    "item_id": Path(image).stem,
                    "split": split_of.get(image, "unassigned"),
                    "text": caption,
                    IMAGE: image_prefix + image,
                    AUDIO: "",
                    "label": "",
                    "source_line": number,
                }
            )
        if not records:
            raise ManifestError(f"{captions_path}: no captions found.")
        frame = pd.DataFrame.from_records(records)
        manifest = Manifest(root=root, frame=frame.drop(columns=["source_line"]), format=self.name)
        for row in manifest.frame.index[manifest.frame["text"] == ""]:
            line = frame.at[row, "source_line"]
            manifest.problems.append(
                Problem(
                    "empty_caption",
                    f"empty caption ({captions_path.name} line {line})",
                    row=int(row),
                    file=manifest.frame.at[row, IMAGE],
                )
            )
        manifest.problems.extend(problems)
        manifest.problems.extend(row_problems(manifest.frame))
        return manifest
