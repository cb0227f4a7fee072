"""A plain folder of images and/or audio files, with optional sidecar ``.txt`` captions.

``photo.jpg`` + ``photo.txt`` (one caption per line) + ``photo.wav`` become rows of one
item ``photo``; a file with no caption becomes an image- or audio-only row. Top-level
folders named ``train``, ``dev``/``val`` and ``test`` set the split; otherwise the split
is drawn from a hash of the item id (80% train, 10% dev, 10% test), stable across runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from pipeline.data.manifest import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, SPLIT_ALIASES, Manifest, ManifestError, row_problems

SPLIT_FOLDERS = {"train", "dev", "test", *SPLIT_ALIASES}


def hashed_split(item_id: str) -> str:
    bucket = int(hashlib.md5(item_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


class FolderAdapter:
    name = "folder"
    description = "a folder of images/audio files with optional sidecar .txt captions"

    def detect(self, root: Path) -> bool:
        if not root.is_dir():
            return False
        return any(p.suffix.lower() in IMAGE_EXTENSIONS + AUDIO_EXTENSIONS for p in root.rglob("*") if p.is_file())

    def load(self, root: Path) -> Manifest:
        groups: dict[Path, dict] = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            suffix = path.suffix.lower()
            key = path.with_suffix("")
            if suffix in IMAGE_EXTENSIONS:
                groups.setdefault(key, {})["image"] = path
            elif suffix in AUDIO_EXTENSIONS:
                groups.setdefault(key, {})["audio"] = path
        if not groups:
            raise ManifestError(f"{root}: no image ({', '.join(IMAGE_EXTENSIONS)}) or audio ({', '.join(AUDIO_EXTENSIONS)}) files found.")
        records = []
        for key, files in groups.items():
            rel_key = key.relative_to(root)
            item_id = rel_key.as_posix()
            top = rel_key.parts[0].lower() if len(rel_key.parts) > 1 else ""
            split = SPLIT_ALIASES.get(top, top) if top in SPLIT_FOLDERS else hashed_split(item_id)
            caption_file = key.with_suffix(".txt")
            captions = []
            if caption_file.is_file():
                captions = [line.strip() for line in caption_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            base = {
                "item_id": item_id,
                "split": split,
                "image": files["image"].relative_to(root).as_posix() if "image" in files else "",
                "audio": files["audio"].relative_to(root).as_posix() if "audio" in files else "",
                "label": "",
            }
            for caption in captions or [""]:
                records.append({**base, "text": caption})
        manifest = Manifest(root=root, frame=pd.DataFrame.from_records(records), format=self.name)
        manifest.problems.extend(row_problems(manifest.frame))
        return manifest
