"""Datasets the project builds itself, by name: where each lives, its version, how to (re)build it.

``resolve_data_path`` turns a config's ``data.path`` into a folder, building a named dataset on
first use and rebuilding one whose recorded version is stale. This is the one place that does
so: ``train``, ``data build`` and the benchmarks all come through here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from pipeline import paths

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NamedDataset:
    """A dataset built by the project.

    Args:
        name: what ``data.path`` says to get it.
        folder: its default folder (under ``PIPELINE_DATA_DIR``).
        version: the version recorded in a built folder (None: not built).
        current: the version this code builds.
        build: builds it into a folder with its default settings.
    """

    name: str
    folder: Callable[[], Path]
    version: Callable[[Path], int | None]
    current: Callable[[], int]
    build: Callable[[Path], object]

    def stale_reason(self, root: Path) -> str | None:
        """Why ``root`` must be (re)built, or None when it holds the current version."""
        found = self.version(Path(root))
        if found == self.current():
            return None
        return "missing" if found is None else f"version {found}, not {self.current()}"


def _default() -> NamedDataset:
    from pipeline.data.synthetic import build

    return NamedDataset(
        "default",
        paths.default_dataset_dir,
        build.dataset_version,
        lambda: build.DATASET_VERSION,
        build.build_default_dataset,
    )


def _digits() -> NamedDataset:
    from pipeline.data import spoken_digits

    def build_digits(root: Path):
        return spoken_digits.build_spoken_digits(
            root,
            paths.shared_dataset("fsdd"),
            paths.shared_dataset("mnist") / "mnist.npz",
            tts_voices=spoken_digits.TTS_VOICES,
        )

    return NamedDataset(
        "digits", paths.digits_dataset_dir, spoken_digits.dataset_version, lambda: spoken_digits.VERSION, build_digits
    )


def _spoken_flickr8k() -> NamedDataset:
    from pipeline.data import spoken_captions

    def build_spoken(root: Path):
        return spoken_captions.build_spoken_flickr8k(
            root, paths.shared_dataset("flickr8k"), spoken_captions.TtsCache.default()
        )

    return NamedDataset(
        "flickr8k-spoken",
        lambda: paths.data_dir() / spoken_captions.DATASET_NAME,
        spoken_captions.dataset_version,
        lambda: spoken_captions.DATASET_VERSION,
        build_spoken,
    )


_NAMED = {"default": _default, "digits": _digits, "flickr8k-spoken": _spoken_flickr8k}


def named_dataset(name: str) -> NamedDataset:
    return _NAMED[name]()


def ensure_dataset(name: str, root: Path | None = None) -> Path:
    """The named dataset's folder, built first where it is missing or stale."""
    dataset = named_dataset(name)
    root = Path(root) if root else dataset.folder()
    why = dataset.stale_reason(root)
    if why:
        log.info("the %s dataset is %s: building it into %s", name, why, root)
        dataset.build(root)
    return root


def resolve_data_path(path: str) -> Path:
    """A config's ``data.path`` as a folder: ``default``, ``digits`` (from the shared FSDD and
    MNIST) and ``flickr8k-spoken`` (eSpeak speech for the shared Flickr8k captions) are built on
    first use; ``shared:NAME`` is the shared dataset NAME (a clear error where it is absent);
    anything else is a folder or file path."""
    if path.startswith("shared:"):
        return paths.shared_dataset(path.split(":", 1)[1])
    if path in _NAMED:
        return ensure_dataset(path)
    return Path(path)
