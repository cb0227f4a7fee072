"""``dataset.json``: what a built dataset folder is (its name and version), read in one place."""

from __future__ import annotations

import json
from pathlib import Path


def built_version(root: Path, dataset: str) -> int | None:
    """The version of the ``dataset`` built in ``root``, or None if ``root`` holds no such build."""
    info = Path(root) / "dataset.json"
    if not info.is_file():
        return None
    try:
        values = json.loads(info.read_text())
    except ValueError:
        return None  # a damaged marker: rebuild
    return values.get("version") if values.get("dataset") == dataset else None
