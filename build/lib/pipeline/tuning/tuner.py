"""KerasTuner over whole training runs; the objective is dev rsum, the project's own metric.

Each trial trains a run (``pipeline.training.trainer.train``) from the base config with the
trial's values, in ``<tune dir>/trials/<trial id>/``, and reports the best dev rsum of that run.
The tuner's folder makes an interrupted search resumable (run the same command again). Every
trial is logged for TensorBoard's HParams dashboard (``<tune dir>/hparams``). With a frozen
image backbone, the trials share the feature cache in saved_models/cache, so features are
computed once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import keras_tuner as kt
import tensorflow as tf

from pipeline.config import apply_overrides, from_dict, to_toml
from pipeline.io_utils import write_text_atomic
from pipeline.tuning.search_space import Param, overrides, validate_space

log = logging.getLogger(__name__)

OBJECTIVE = "dev_rsum"
ALGORITHMS = ("random", "bayesian", "hyperband")


def _declare(hp: kt.HyperParameters, param: Param) -> None:
    if param.choices:
        # HyperParameters take scalars: a list value is chosen by its string form.
        hp.Choice(param.key, [_hp_value(param, c) for c in param.choices])
    elif param.kind == "int":
        hp.Int(param.key, param.min, param.max, step=param.step or 1, sampling=param.sampling)
    else:
        hp.Float(param.key, param.min, param.max, sampling=param.sampling)


def _hp_value(param: Param, value):
    """A config value as the oracle stores it (list choices by their string form)."""
    return str(list(value)) if isinstance(value, (list, tuple)) else value


def base_values(space: tuple[Param, ...], base: dict) -> dict | None:
    """The base config's own values in the oracle's form, or None when one lies outside the
    space (then the base config cannot be a trial)."""
    config = from_dict(base)
    values = {}
    for param in space:
        value = config
        for part in param.key.split("."):
            value = getattr(value, part)
        if param.choices:
            wanted = tuple(value) if isinstance(value, list) else value
            if wanted not in param.choices:
                return None
        elif not param.min <= value <= param.max:
            return None
        values[param.key] = _hp_value(param, value)
    return values


def trial_values(space: tuple[Param, ...], hp: kt.HyperParameters) -> dict:
    """{config key: value} of a trial, list-valued choices turned back into lists."""
    values = {}
    for param in space:
        value = hp.get(param.key)
        if param.choices and any(isinstance(c, tuple) for c in param.choices):
            value = next(c for c in param.choices if str(list(c)) == value)
        elif param.choices and all(isinstance(c, bool) for c in param.choices):
            value = bool(value)  # KerasTuner keeps boolean choices as 0 and 1
        values[param.key] = value
    return values


def shortened_epochs(train_config, epochs: int) -> dict:
    """``train.epochs`` for a trial of ``epochs``, and ``train.audio_epochs`` shrunk in
    proportion, so that the audio phase keeps its share of a shorter run (one epoch at least,
    while the run has two or more; none in a one-epoch run)."""
    settings = {"train.epochs": epochs}
    if train_config.audio_epochs > 0:
        share = round(train_config.audio_epochs * epochs / train_config.epochs)
        settings["train.audio_epochs"] = min(max(share, 1), epochs - 1)
    return settings


def make_oracle(
    algorithm: str,
    space: tuple[Param, ...],
    max_trials: int,
    seed: int,
    deadline: float | None,
    max_epochs: int,
    first_values: dict | None = None,
):
    """The KerasTuner oracle for ``algorithm``; it stops handing out trials after ``deadline``
    (a time.time() value), so a budget ends the search between trials. With ``first_values``
    (random and bayesian), the first trial uses them: the base config is measured under the
    same trial settings as the rest, so the search can only keep or beat it."""
    bases = {
        "random": kt.oracles.RandomSearchOracle,
        "bayesian": kt.oracles.BayesianOptimizationOracle,
        "hyperband": kt.oracles.HyperbandOracle,
    }
    if algorithm not in bases:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose {', '.join(ALGORITHMS)}")

    class Budgeted(bases[algorithm]):
        def populate_space(self, trial_id):
            if deadline is not None and time.time() > deadline:
                log.info("time budget used: no new trial")
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            if first_values is not None and algorithm != "hyperband" and not self.trials:
                log.info("trial %s: the base config's own values", trial_id)
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(first_values)}
            return super().populate_space(trial_id)

    hp = kt.HyperParameters()
    for param in space:
        _declare(hp, param)
    objective = kt.Objective(OBJECTIVE, "max")
    if algorithm == "hyperband":
        return Budgeted(objective=objective, max_epochs=max_epochs, hyperparameters=hp, seed=seed)
    return Budgeted(objective=objective, max_trials=max_trials, hyperparameters=hp, seed=seed)


class RetrievalTuner(kt.Tuner):
    """Runs each trial as a training run and returns its best dev rsum.

    Args:
        oracle: from ``make_oracle``.
        base: the base config as a raw dict (read_config_file + overrides).
        space: the Params the oracle's hyperparameters stand for.
        directory, project_name: where KerasTuner keeps its state (resumable).
        epochs: epochs per trial (hyperband sets its own per trial).
    """

    def __init__(
        self,
        oracle,
        base: dict,
        space: tuple[Param, ...],
        directory: Path,
        project_name: str,
        epochs: int | None = None,
    ):
        super().__init__(
            oracle=oracle, hypermodel=None, directory=str(directory), project_name=project_name, overwrite=False
        )
        self.base, self.space, self.epochs = base, space, epochs
        self.root = Path(directory) / project_name

    def run_trial(self, trial, *args, **kwargs):
        from pipeline.training.trainer import train

        values = trial_values(self.space, trial.hyperparameters)
        settings = dict(values)
        epochs = trial.hyperparameters.values.get("tuner/epochs") or self.epochs
        if epochs:
            settings.update(shortened_epochs(from_dict(self.base).train, int(epochs)))
        config = from_dict(apply_overrides(self.base, overrides(settings)))
        log.info("trial %s: %s", trial.trial_id, ", ".join(f"{k}={v}" for k, v in values.items()))
        started = time.time()
        result = train(
            config,
            run_dir=self.root / "trials" / trial.trial_id,
            evaluate_test=False,
            verbose=0,
            mark_latest=False,
        )
        score = float(max(result.history.get("dev_rsum", [0.0])))
        self._log_hparams(trial.trial_id, values, score)
        self._record(trial.trial_id, values, score, time.time() - started, len(result.history.get("dev_rsum", [])))
        log.info("trial %s: dev rsum %.1f", trial.trial_id, score)
        return {OBJECTIVE: score}

    def _record(self, trial_id: str, values: dict, score: float, seconds: float, epochs_run: int) -> None:
        """One JSON line per finished trial in ``trials.jsonl`` (read by ``write_summary``)."""
        record = {
            "trial": trial_id,
            "dev_rsum": round(score, 2),
            "seconds": round(seconds, 1),
            "epochs_run": epochs_run,
            "values": {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()},
        }
        with open(self.root / "trials.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def _log_hparams(self, trial_id: str, values: dict, score: float) -> None:
        from tensorboard.plugins.hparams import api as hparams

        shown = {k: (str(v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()}
        with tf.summary.create_file_writer(str(self.root / "hparams" / trial_id)).as_default():
            hparams.hparams(shown, trial_id=trial_id)
            tf.summary.scalar(OBJECTIVE, score, step=1)


@dataclasses.dataclass
class TuningResult:
    best_values: dict
    best_score: float
    best_config_path: Path
    trials: int
    seconds: float


def tune(
    base: dict,
    space: tuple[Param, ...],
    directory: Path,
    algorithm: str = "random",
    max_trials: int = 10,
    budget_minutes: float | None = None,
    epochs: int | None = None,
    seed: int = 0,
    project_name: str = "tuning",
) -> TuningResult:
    """Validates the space, searches it, and writes the best trial's config as
    ``<directory>/<project_name>/best.toml`` (usable with ``train --config PATH``)."""
    validate_space(space, base)
    start = time.time()
    deadline = start + 60 * budget_minutes if budget_minutes else None
    max_epochs = epochs or int(from_dict(base).train.epochs)
    first = base_values(space, base)
    if first is None and algorithm != "hyperband":
        log.warning("the base config has values outside the search space; it is not run as a trial")
    oracle = make_oracle(algorithm, space, max_trials, seed, deadline, max_epochs, first_values=first)
    tuner = RetrievalTuner(oracle, base, space, Path(directory), project_name, epochs=epochs)
    tuner.search()
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise RuntimeError("no trial finished; nothing to choose from")
    values = trial_values(space, best[0].hyperparameters)
    # The base config's epochs, not the trials' (shortened to fit the budget): best.toml is for a full run.
    config = from_dict(apply_overrides(base, overrides(values)))
    path = tuner.root / "best.toml"
    write_text_atomic(path, to_toml(config))
    finished = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    write_summary(tuner.root, first if algorithm != "hyperband" else None)
    return TuningResult(values, float(best[0].score), path, len(finished), time.time() - start)


def read_trials(root: Path) -> list[dict]:
    """The finished trials of a search, one dict per trial id (a resumed trial's last record)."""
    path = Path(root) / "trials.jsonl"
    if not path.exists():
        return []
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["trial"]] = record
    return list(records.values())


def write_summary(root: Path, first_values: dict | None = None) -> Path:
    """``summary.md``: every finished trial, best first, with its values, time and epochs."""
    trials = sorted(read_trials(root), key=lambda r: -r["dev_rsum"])
    keys = list(trials[0]["values"]) if trials else []
    lines = [
        "| trial | dev rsum | min | epochs run | " + " | ".join(keys) + " |",
        "|---|---|---|---|" + "---|" * len(keys),
    ]
    for record in trials:
        label = record["trial"] + (
            " (base)" if first_values is not None and record["trial"] == _first_id(trials) else ""
        )
        cells = [
            str(record["values"][k]) if not isinstance(record["values"][k], float) else f"{record['values'][k]:.3g}"
            for k in keys
        ]
        lines.append(
            f"| {label} | {record['dev_rsum']:.1f} | {record['seconds'] / 60:.1f} | {record['epochs_run']} | "
            + " | ".join(cells)
            + " |"
        )
    path = Path(root) / "summary.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _first_id(trials: list[dict]) -> str:
    return min(record["trial"] for record in trials)
