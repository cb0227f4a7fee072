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

from pipeline.data.item_ids import RULE, is_item_id
from pipeline.data.manifest import SPLIT_ALIASES, Manifest, ManifestError, Problem, row_problems
from pipeline.modalities import file_modalities

SPLIT_FOLDERS = {"train", "dev", "test", *SPLIT_ALIASES}


def hashed_split(item_id: str) -> str:
    bucket = int(hashlib.md5(item_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def extension_owners() -> dict[str, str]:
    """File name ending → the modality that reads it (from the modality registry)."""
    return {extension: m.name for m in file_modalities() for extension in m.extensions}


class FolderAdapter:
    name = "folder"
    description = "a folder of images/audio files with optional sidecar .txt captions"

    def detect(self, root: Path) -> bool:
        if not root.is_dir():
            return False
        owners = extension_owners()
        return any(p.suffix.lower() in owners for p in root.rglob("*") if p.is_file())

    def load(self, root: Path) -> Manifest:
        owners = extension_owners()
        groups: dict[Path, dict] = {}
        problems: list[Problem] = []
        for path in sorted(root.rglob("*")):
            if path.name.startswith("."):
                continue
            suffix = path.suffix.lower()
            rel = path.relative_to(root).as_posix()
            if not path.is_file():
                if (suffix in owners or suffix == ".txt") and path.is_dir():
                    problems.append(
                        Problem(
                            "not_a_file",
                            f"a folder named like a {suffix} file; skipped (rename it if it holds data)",
                            file=rel,
                        )
                    )
                continue
            key = path.with_suffix("")
            if suffix in owners and not is_item_id(key.relative_to(root).as_posix()):
                problems.append(Problem("bad_name", f"its name cannot be an item id; skipped ({RULE})", file=rel))
                continue
            if suffix in owners:
                groups.setdefault(key, {})[owners[suffix]] = path
        if not groups:
            if problems:
                raise ManifestError(f"{root}: no usable media file; " + "; ".join(map(str, problems[:3])))
            kinds = " or ".join(f"{m.name} ({', '.join(m.extensions)})" for m in file_modalities())
            raise ManifestError(f"{root}: no {kinds} files found.")
        records = []
        for key, files in groups.items():
            rel_key = key.relative_to(root)
            item_id = rel_key.as_posix()
            top = rel_key.parts[0].lower() if len(rel_key.parts) > 1 else ""
            split = SPLIT_ALIASES.get(top, top) if top in SPLIT_FOLDERS else hashed_split(item_id)
            caption_file = key.with_suffix(".txt")
            captions = []
            if caption_file.is_file():
                try:
                    captions = [
                        line.strip() for line in caption_file.read_text(encoding="utf-8").splitlines() if line.strip()
                    ]
                except (OSError, UnicodeDecodeError) as error:
                    problems.append(
                        Problem(
                            "unreadable_caption",
                            f"cannot be read as UTF-8 text ({error}); the item has no caption",
                            file=caption_file.relative_to(root).as_posix(),
                        )
                    )
                else:
                    if not captions:
                        problems.append(
                            Problem(
                                "empty_caption_file",
                                "the caption file has no caption; the item has none",
                                file=caption_file.relative_to(root).as_posix(),
                            )
                        )
            base = {
                "item_id": item_id,
                "split": split,
                **{m.name: files[m.name].relative_to(root).as_posix() if m.name in files else "" for m in file_modalities()},
                "label": "",
            }
            for caption in captions or [""]:
                records.append({**base, "text": caption})
        manifest = Manifest(root=root, frame=pd.DataFrame.from_records(records), format=self.name)
        manifest.problems.extend(problems + row_problems(manifest.frame))
        return manifest
