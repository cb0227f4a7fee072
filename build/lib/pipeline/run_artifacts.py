"""What a run folder holds, and reading it back.

run.json             format version, pipeline version, timings, data summary
config.toml          the full experiment config (loadable with --config PATH)
vocab.txt, labels.txt
model.weights.h5     the selected (best dev rsum) weights
history.csv, logs/   Keras history and TensorBoard events
eval/<split>.json|md|png
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline import __version__, paths
from pipeline.config import (
    CONFIG_FORMAT_VERSION,
    ExperimentConfig,
    from_dict,
    fused_modalities,
    read_config_file,
    trains_items,
)
from pipeline.records import RunRecord

RETRAIN = "train again, or pass another --run"  # what to do about a run file that cannot be read
RUN_FORMAT_VERSION = 3  # 2: the scratch image CNN adds a global max pool; 3: text enters the fusion network


class IncompatibleRun(ValueError):
    """A run folder written by another, incompatible version, or incomplete."""


def input_config_for(config: ExperimentConfig, modalities=None, batch_size=None):
    from pipeline.data.input_pipeline import AudioFeatureConfig, InputConfig
    from pipeline.preprocessing.image_ops import ImageAugmentConfig

    i, a = config.image, config.audio
    return InputConfig(
        modalities=tuple(modalities or config.data.modalities),
        batch_size=batch_size or config.train.batch_size,
        image_size=i.image_size,
        backbone=i.backbone,
        image_augment=ImageAugmentConfig(i.crop_min_area, i.flip, i.brightness, i.contrast, i.saturation),
        audio=AudioFeatureConfig(
            clip_seconds=a.clip_seconds,
            n_mels=a.n_mels,
            time_masks=a.time_masks,
            time_width=a.time_width,
            freq_masks=a.freq_masks,
            freq_width=a.freq_width,
            mel_shift=a.mel_shift,
        ),
        cache=config.data.cache,
        seed=config.seed,
        test_views=i.test_views,
        item_text="text" in fused_modalities(config) and trains_items(config),
    )


def resolve_run(run: str | Path) -> Path:
    """A run folder from a path, a folder name under saved_models/runs, or 'latest'."""
    path = Path(run)
    if not path.exists():
        candidate = paths.runs_dir() / str(run)
        if candidate.exists():
            path = candidate
    if not path.is_dir():
        raise IncompatibleRun(f"run folder {run} not found (looked in . and {paths.runs_dir()})")
    return path.resolve()


def run_reference(run_dir: Path) -> str:
    """How other artifacts (an index) name a run: relative to saved_models/runs when it is
    inside it, so a project folder can be moved or copied; otherwise the absolute path.
    ``resolve_run`` reads both."""
    run_dir = Path(run_dir).resolve()
    try:
        return run_dir.relative_to(paths.runs_dir().resolve()).as_posix()
    except ValueError:
        return str(run_dir)


def run_from_reference(reference: str) -> Path:
    """The run folder a ``run_reference`` names (it may no longer exist)."""
    path = Path(reference)
    return path if path.is_absolute() else paths.runs_dir() / path


def read_run_info(run_dir: Path) -> RunRecord:
    """The run's ``run.json`` as a record, after checking the run folder is complete and of
    this version's format; ``IncompatibleRun`` says what is wrong and what to do."""
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise IncompatibleRun(
            f"{run_dir} has no run.json: not a finished training run (train again, or pass another --run)"
        )
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise IncompatibleRun(damaged_message(info_path, error, RETRAIN)) from None
    if not isinstance(info, dict):
        raise IncompatibleRun(damaged_message(info_path, "not a JSON object", RETRAIN))
    version = info.get("run_format_version")
    if version != RUN_FORMAT_VERSION:
        raise IncompatibleRun(
            f"{run_dir} was written with run format {version!r} (pipeline {info.get('pipeline_version', '?')}); this is "
            f"pipeline {__version__}, which reads run format {RUN_FORMAT_VERSION}. Retrain it with this version."
        )
    for name in ("config.toml", "vocab.txt", "model.weights.h5"):
        if not (run_dir / name).is_file():
            raise IncompatibleRun(f"{run_dir} is missing {name}; the run is incomplete")
    try:
        return RunRecord.from_dict(info)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise IncompatibleRun(damaged_message(info_path, f"{type(error).__name__}: {error}", RETRAIN)) from None


def damaged_message(path: Path, error, remedy: str) -> str:
    """The one wording of "this artifact file cannot be read": which file, what was wrong, what to do."""
    reason = (
        error
        if isinstance(error, str)
        else f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else 'unreadable'}"
    )
    return f"{path} is damaged or unreadable ({reason}); {remedy}"


def read_run_config(run_dir: Path) -> ExperimentConfig:
    try:
        values = read_config_file(str(run_dir / "config.toml"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise IncompatibleRun(damaged_message(run_dir / "config.toml", error, RETRAIN)) from None
    if values.get("format_version", CONFIG_FORMAT_VERSION) != CONFIG_FORMAT_VERSION:
        raise IncompatibleRun(
            f"{run_dir}/config.toml has config format {values.get('format_version')}, expected {CONFIG_FORMAT_VERSION}"
        )
    try:
        return from_dict(values)
    except ValueError as error:
        raise IncompatibleRun(f"{run_dir}/config.toml does not fit this version of the pipeline: {error}") from error


def point_latest(run_dir: Path) -> Path:
    """Atomically points saved_models/runs/latest at ``run_dir``."""
    latest = paths.runs_dir() / "latest"
    latest.parent.mkdir(parents=True, exist_ok=True)
    tmp = latest.with_name(f".latest.{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(run_dir, latest.parent))
    os.replace(tmp, latest)
    return latest
