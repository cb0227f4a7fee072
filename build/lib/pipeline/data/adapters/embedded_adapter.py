"""The embedded default dataset that ``make data`` generates (``dataset.json`` + ``manifest.csv``)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.manifest import Manifest, ManifestError, check_columns, read_table, row_problems

FORMAT_NAME = "embedded-default"


class EmbeddedAdapter:
    name = "embedded"
    description = "the synthetic default dataset built by 'make data' (dataset.json + manifest.csv)"

    def detect(self, root: Path) -> bool:
        info = root / "dataset.json"
        if not info.is_file():
            return False
        try:
            return json.loads(info.read_text()).get("format") == FORMAT_NAME
        except ValueError:
            return False

    def load(self, root: Path) -> Manifest:
        path = root / "manifest.csv"
        if not path.is_file():
            raise ManifestError(f"{root}: dataset.json is here but manifest.csv is missing; rebuild with 'make data'.")
        frame = read_table(path)
        check_columns(frame.columns, source=str(path), allowed_extra=("caption_index",))
        manifest = Manifest(root=root, frame=frame, format=self.name)
        manifest.problems.extend(row_problems(manifest.frame))
        return manifest
