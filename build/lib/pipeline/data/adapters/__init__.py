"""Dataset adapters: each turns a folder layout people actually have into a Manifest.

``load_dataset(path)`` detects the layout; ``load_dataset(path, format="fsdd")`` names it.
To add a layout, write an object with ``name``, ``detect(root) -> bool`` and
``load(root) -> Manifest`` and pass it to ``register``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pipeline.data.manifest import Manifest, ManifestError


class DatasetAdapter(Protocol):
    name: str
    description: str

    def detect(self, root: Path) -> bool: ...

    def load(self, root: Path) -> Manifest: ...


_REGISTRY: dict[str, DatasetAdapter] = {}


def register(adapter: DatasetAdapter) -> DatasetAdapter:
    _REGISTRY[adapter.name] = adapter
    return adapter


def adapters() -> dict[str, DatasetAdapter]:
    if not _REGISTRY:
        _register_builtin()
    return dict(_REGISTRY)


def _register_builtin() -> None:
    # Order matters for detection: the most specific layouts first, the plain folder last.
    from pipeline.data.adapters import (
        embedded_adapter,
        esc50_adapter,
        flickr8k_adapter,
        folder_adapter,
        fsdd_adapter,
        manifest_adapter,
    )

    for adapter in (
        embedded_adapter.EmbeddedAdapter(),
        manifest_adapter.ManifestFileAdapter(),
        flickr8k_adapter.Flickr8kAdapter(),
        esc50_adapter.Esc50Adapter(),
        fsdd_adapter.FsddAdapter(),
        folder_adapter.FolderAdapter(),
    ):
        register(adapter)


def detect_format(path: str | Path) -> str:
    root = Path(path)
    for name, adapter in adapters().items():
        if adapter.detect(root):
            return name
    raise ManifestError(
        f"{root}: not a dataset layout this project reads. Expected one of: "
        + "; ".join(f"{a.name} ({a.description})" for a in adapters().values())
    )


def load_dataset(path: str | Path, format: str | None = None) -> Manifest:
    """Reads a dataset folder (or manifest file) into a Manifest."""
    root = Path(path)
    if not root.exists():
        raise ManifestError(f"{root}: no such file or folder.")
    if format is None:
        format = detect_format(root)
    try:
        adapter = adapters()[format]
    except KeyError:
        raise ManifestError(f"Unknown dataset format '{format}'. Known: {', '.join(adapters())}.") from None
    return adapter.load(root)
