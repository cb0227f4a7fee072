"""A manifest written by hand: a CSV or Parquet file with the manifest columns."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.manifest import Manifest, ManifestError, check_columns, read_table, row_problems

MANIFEST_NAMES = ("manifest.csv", "manifest.parquet")


def manifest_file(root: Path) -> Path | None:
    if root.is_file() and root.suffix in (".csv", ".parquet"):
        return root
    for name in MANIFEST_NAMES:
        if (root / name).is_file():
            return root / name
    return None


class ManifestFileAdapter:
    """A CSV/Parquet manifest; paths in it are relative to the file's folder.

    Example:
        item_id,split,text,image,audio,label
        dog1,train,a dog on the grass,photos/dog1.jpg,,dog
    """

    name = "manifest"
    description = "a manifest.csv or .parquet with columns item_id, split, text, image, audio, label"

    def detect(self, root: Path) -> bool:
        return manifest_file(root) is not None

    def load(self, root: Path) -> Manifest:
        path = manifest_file(root)
        if path is None:
            raise ManifestError(f"{root}: no manifest.csv or manifest.parquet here.")
        try:
            frame = read_table(path)
        except Exception as error:  # pandas raises many types for a malformed file
            raise ManifestError(f"{path}: cannot be read as a manifest ({error}).") from error
        check_columns(frame.columns, source=str(path))
        manifest = Manifest(root=path.parent, frame=frame, format=self.name)
        manifest.problems.extend(row_problems(manifest.frame))
        return manifest
