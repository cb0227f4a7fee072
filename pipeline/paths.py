"""The one resolver for the project's folders.

Every path the code reads or writes by default comes from here, so a user can move
them with environment variables instead of editing code:

``<project>`` is the checkout that holds this package (it has ``pyproject.toml``); when the
package is installed elsewhere (``pip install .``), it is the current directory.

- ``PIPELINE_DATA_DIR``: datasets (default ``<project>/data``)
- ``PIPELINE_MODELS_DIR``: runs, exports, indexes and caches (default ``<project>/saved_models``)
- ``PIPELINE_SHARED_DIR``: the optional shared datasets folder (default ``<project>/../shared``)
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The checkout when run from one, else the current directory (an installed package)."""
    return _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()


class SharedDataMissing(FileNotFoundError):
    """A dataset from the shared folder was asked for, but that folder is not here."""


def data_dir() -> Path:
    return Path(os.environ.get("PIPELINE_DATA_DIR", project_root() / "data"))


def models_dir() -> Path:
    return Path(os.environ.get("PIPELINE_MODELS_DIR", project_root() / "saved_models"))


def default_dataset_dir() -> Path:
    return data_dir() / "default"


def digits_dataset_dir() -> Path:
    return data_dir() / "digits"


def cache_dir(*parts: str) -> Path:
    return models_dir().joinpath("cache", *parts)


def runs_dir() -> Path:
    return models_dir() / "runs"


def tuning_dir() -> Path:
    """KerasTuner searches (``pipeline tune``): saved_models/tuning/<search>."""
    return models_dir() / "tuning"


def index_dir(name: str | None = None) -> Path:
    """Search indexes: saved_models/index/<name>."""
    root = models_dir() / "index"
    return root if name is None else root / name


def shared_dir() -> Path:
    return Path(os.environ.get("PIPELINE_SHARED_DIR", project_root().parent / "shared"))


def shared_dataset(name: str) -> Path:
    """Path of ``shared/datasets/<name>``, or a clear error saying what is missing."""
    path = shared_dir() / "datasets" / name
    if not path.exists():
        raise SharedDataMissing(
            f"The shared dataset '{name}' was not found at {path}. It is only needed for the "
            f"real-data benchmarks; the default dataset works without it (make data). Put the "
            f"dataset there, or set PIPELINE_SHARED_DIR to the folder that holds datasets/{name}."
        )
    return path


def shared_keras_home() -> Path | None:
    """A folder usable as KERAS_HOME whose models/ holds shared ImageNet weights, if any."""
    path = shared_dir() / "keras"
    return path if (path / "models").is_dir() else None
