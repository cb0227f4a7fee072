"""Typed records of the files the pipeline writes and reads back: a run's ``run.json``, an
index's ``index.json`` and an evaluation report (``eval/<split>.json``).

Each record has one reader (``read``), a ``to_dict`` that gives the JSON written to disk (the
same keys as before records existed, so older files still read) and ``from_dict``. Code reads
attributes, never ``.get`` on a dict: a missing field is an error at the reader, naming the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.evaluation.retrieval_metrics import KS


class RecordError(ValueError):
    """A record file that is missing a field or holds a wrong type; the message names the file."""


def _load_json(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"{path}: {type(error).__name__}: {str(error).strip()[:200]}") from None
    if not isinstance(value, dict):
        raise RecordError(f"{path}: not a JSON object")
    return value


def _read(cls, path: Path, file_name: str, what: str):
    """``cls.from_dict`` of the JSON at ``path`` (a file, or the folder holding ``file_name``)."""
    path = Path(path)
    path = path / file_name if path.is_dir() else path
    values = _load_json(path)
    try:
        return cls.from_dict(values)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RecordError(f"{path}: not {what} ({type(error).__name__}: {error})") from None


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


# ------------------------------------------------------------------ evaluation report


@dataclasses.dataclass(frozen=True)
class DirectionScores:
    """Retrieval figures of one direction (``text->image``), percentages and ranks.

    Args:
        recall: R@K by K (1, 5, 10).
        median_rank / mean_rank: of the first relevant result.
        queries / gallery: how many of each.
        mean_average_precision: class-level mAP where labels exist, else None.
    """

    recall: dict[int, float]
    median_rank: float
    mean_rank: float
    queries: int
    gallery: int
    mean_average_precision: float | None = None

    @classmethod
    def from_dict(cls, values: dict) -> DirectionScores:
        return cls(
            recall={k: _number(values[f"R@{k}"]) for k in KS},
            median_rank=_number(values["MedR"]),
            mean_rank=_number(values["MeanR"]),
            queries=int(values["queries"]),
            gallery=int(values["gallery"]),
            mean_average_precision=_number(values["mAP"]) if "mAP" in values else None,
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {f"R@{k}": v for k, v in self.recall.items()}
        out.update(MedR=self.median_rank, MeanR=self.mean_rank, queries=self.queries, gallery=self.gallery)
        if self.mean_average_precision is not None:
            out["mAP"] = self.mean_average_precision
        return out


@dataclasses.dataclass(frozen=True)
class TwinChoice:
    """The share of twin captions that score their own image above their twin's."""

    accuracy: float
    queries: int

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "queries": self.queries}


TWIN_CHOICE = "text->image (twin choice)"  # the report key of twin_choice (evaluation/evaluator.py)


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Every direction's figures, their rsum and the word-order checks of one evaluated split.

    Args:
        directions: by name: the directions between modalities (their R@K sum is ``rsum``), and
            the extra ones that are not in it (``text->item``, the word-order subset).
        rsum: R@1+5+10 over the directions between modalities.
        twin_choice: the default dataset's twin check, where the split has twins.
    """

    directions: dict[str, DirectionScores]
    rsum: float
    twin_choice: TwinChoice | None = None

    @classmethod
    def from_dict(cls, values: dict) -> EvaluationReport:
        twin = values.get(TWIN_CHOICE)
        return cls(
            directions={
                k: DirectionScores.from_dict(v) for k, v in values.items() if k not in ("rsum", TWIN_CHOICE, "_curves")
            },
            rsum=_number(values["rsum"]),
            twin_choice=TwinChoice(_number(twin["accuracy"]), int(twin["queries"])) if twin else None,
        )

    @classmethod
    def read(cls, path: Path) -> EvaluationReport:
        """An evaluation report's JSON (``eval/<split>.json``)."""
        return _read(cls, path, "", "an evaluation report")

    def to_dict(self) -> dict:
        out: dict[str, Any] = {k: v.to_dict() for k, v in self.directions.items()}
        out["rsum"] = self.rsum
        if self.twin_choice is not None:
            out[TWIN_CHOICE] = self.twin_choice.to_dict()
        return out


# ------------------------------------------------------------------ run.json


@dataclasses.dataclass(frozen=True)
class RunData:
    """What a run was trained on."""

    root: str
    format: str
    train_items: int
    dev_items: int
    skipped_train_rows: int


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """``run.json``: what a finished training run was, and how it did.

    Args:
        run_format_version: the layout of the run folder (``run_artifacts.RUN_FORMAT_VERSION``).
        audio_frames / image_feature_dim: the input shapes the model was built with.
        dev / test: reports of the selected epoch; ``dev_report`` / ``test_report`` their files.
        exports: the SavedModels ``train`` exported, by model name.
    """

    run_format_version: int
    pipeline_version: str
    created: str
    config_name: str
    data: RunData
    audio_frames: int | None
    image_feature_dim: int | None
    epochs_run: int
    train_seconds: float
    dev: EvaluationReport
    dev_report: dict[str, str]
    test: EvaluationReport | None = None
    test_report: dict[str, str] = dataclasses.field(default_factory=dict)
    exports: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> RunRecord:
        return cls(
            run_format_version=values["run_format_version"],
            pipeline_version=str(values["pipeline_version"]),
            created=str(values["created"]),
            config_name=str(values["config_name"]),
            data=RunData(**values["data"]),
            audio_frames=values["audio_frames"],
            image_feature_dim=values["image_feature_dim"],
            epochs_run=int(values["epochs_run"]),
            train_seconds=_number(values["train_seconds"]),
            dev=EvaluationReport.from_dict(values["dev"]),
            dev_report={k: str(v) for k, v in values["dev_report"].items()},
            test=EvaluationReport.from_dict(values["test"]) if "test" in values else None,
            test_report={k: str(v) for k, v in values.get("test_report", {}).items()},
            exports={k: str(v) for k, v in values.get("exports", {}).items()},
        )

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """``run.json`` at ``path`` (a file, or the run folder holding it)."""
        return _read(cls, path, "run.json", "a run record")

    def to_dict(self) -> dict:
        out = {
            "run_format_version": self.run_format_version,
            "pipeline_version": self.pipeline_version,
            "created": self.created,
            "config_name": self.config_name,
            "data": dataclasses.asdict(self.data),
            "audio_frames": self.audio_frames,
            "image_feature_dim": self.image_feature_dim,
            "epochs_run": self.epochs_run,
            "train_seconds": self.train_seconds,
            "dev_report": self.dev_report,
            "dev": self.dev.to_dict(),
        }
        if self.test is not None:
            out["test_report"] = self.test_report
            out["test"] = self.test.to_dict()
        if self.exports:
            out["exports"] = self.exports
        return out

    def write(self, run_dir: Path) -> Path:
        from pipeline.io_utils import write_json_atomic

        path = Path(run_dir) / "run.json"
        write_json_atomic(path, self.to_dict())
        return path


# ------------------------------------------------------------------ index.json


@dataclasses.dataclass(frozen=True)
class RankingChoice:
    """How an index ranks text queries: ``dense``, ``nb`` (the Naive Bayes stage alone),
    ``weighted`` (z-scores mixed with ``weight`` on the dense side) or ``rrf``; ``why`` says how
    it was chosen (measured on held-out captions, or given)."""

    method: str = "dense"
    weight: float = 0.5
    why: str = ""


@dataclasses.dataclass(frozen=True)
class IndexModel:
    """The run that embedded an index's items, and a fingerprint of its weights."""

    run: str
    weights_sha1: str
    config: str


@dataclasses.dataclass(frozen=True)
class IndexRecord:
    """``index.json``: what built an index and how it searches.

    Args:
        kind: the vector index kind (``retrieval/index_kinds/``) and ``params`` its parameters.
        ranking: the default ranking of text queries (stored under the key ``fusion``).
        withhold_captions: the items' own captions were kept out (an evaluation index).
        format_version / dim / items / updated: set when the index is written.
    """

    name: str
    model: IndexModel
    data: str
    split: str
    withhold_captions: bool
    ranking: RankingChoice
    nb_alpha: float
    kind: str = "exact"
    params: dict = dataclasses.field(default_factory=dict)
    format_version: int = 0
    dim: int = 0
    items: int = 0
    updated: str = ""

    @classmethod
    def from_dict(cls, values: dict) -> IndexRecord:
        ranking = values["fusion"]
        return cls(
            name=str(values["name"]),
            model=IndexModel(**values["model"]),
            data=str(values["data"]),
            split=str(values["split"]),
            withhold_captions=bool(values["withhold_captions"]),
            ranking=RankingChoice(
                str(ranking["method"]),
                0.5 if ranking.get("weight") is None else _number(ranking["weight"]),  # null: the "nb" ranking's
                str(ranking.get("why", "")),
            ),
            nb_alpha=_number(values["nb_alpha"]),
            kind=str(values["kind"]),
            params=dict(values.get("params", {})),
            format_version=values["format_version"],
            dim=int(values["dim"]),
            items=int(values["items"]),
            updated=str(values.get("updated", "")),
        )

    @classmethod
    def read(cls, path: Path) -> IndexRecord:
        """``index.json`` at ``path`` (a file, or the index folder holding it)."""
        return _read(cls, path, "index.json", "an index record")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["fusion"] = out.pop("ranking")
        return out


# ------------------------------------------------------------------ cached image features


class CachedImageFeatures(NamedTuple):
    """A frozen backbone's features of a set of images: ``features[i]`` ([dim], or [views, dim]
    with several cached views) belongs to ``images[i]`` (a manifest path)."""

    images: list[str]
    features: Any  # np.ndarray

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])

    def rows_of(self, images) -> list[int]:
        """Rows of ``images`` (manifest paths); ``KeyError`` naming the first one not cached."""
        position = {p: i for i, p in enumerate(self.images)}
        missing = [p for p in images if p not in position]
        if missing:
            raise KeyError(f"no cached features for {len(missing)} image(s), e.g. {missing[0]}")
        return [position[p] for p in images]
