"""Every `make` target a user runs, started as the Makefile starts it (tests/make_runner.py).

The targets work in a models folder of this file's own (PIPELINE_MODELS_DIR) on the tiny
default dataset (PIPELINE_DATA_DIR, so the configs' ``data.path = "default"`` is that one);
``make train CONFIG=smoke`` makes the run the other targets use. ``TARGET_TESTS`` names the
test that starts each target in `make help`, and a test checks that none is left out.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import urllib.parse
from pathlib import Path

import pytest

from tests.make_runner import REPO, BackgroundTarget, free_port, get_json, listening_addresses, run_make

pytestmark = pytest.mark.slow

# The test that starts each target. Targets no test starts say why, and what checks them.
TARGET_TESTS = {
    "help": "tests/test_make_targets.py::test_make_help_lists_every_target_and_each_has_a_test",
    "venv": "tests/test_environment.py::test_pip_check_finds_no_conflict_but_the_no_deps_installs",
    "data": "tests/test_make_targets.py::test_make_data_builds_a_dataset_where_DATA_DIR_says",
    "describe": "tests/test_make_targets.py::test_make_describe_counts_the_dataset",
    "train": "tests/test_make_targets.py::test_make_train_trains_indexes_and_exports",
    "tune": "tests/test_make_targets.py::test_make_tune_runs_a_trial_and_logs_its_hparams",
    "evaluate": "tests/test_make_targets.py::test_make_evaluate_reports_recall_on_a_split",
    "index": "tests/test_make_targets.py::test_make_index_then_export_serves_a_new_index",
    "export": "tests/test_make_targets.py::test_make_index_then_export_serves_a_new_index",
    "serve": "tests/test_make_targets.py::test_make_serve_answers_on_loopback_and_stops_whole",
    "search": "tests/test_make_targets.py::test_make_search_prints_k_hits",
    "tensorboard": "tests/test_make_targets.py::test_make_tensorboard_serves_the_runs_scalars_and_the_trials_hparams",
    "test": "not from a test: .ci/run starts it (the suite itself)",
    "test-fast": "tests/test_environment.py::test_make_test_fast_collects_no_slow_test",
    "lint": "tests/test_environment.py::test_make_lint_fails_on_a_lint_error_and_passes_clean_code",
    "format": "tests/test_environment.py::test_make_format_rewrites_code_in_the_projects_style",
    "clean": "tests/test_environment.py::test_make_clean_removes_the_environment_and_caches_only",
}
# Benchmarks take minutes to hours and rewrite benchmarks/results; tests/test_benchmarks.py
# checks their arithmetic, and each result file names the commit that produced it.
BENCHMARK_PREFIX = "bench-"


def help_targets() -> list[str]:
    """The targets with a `## ` help text in the Makefile, in order."""
    lines = (REPO / "Makefile").read_text().splitlines()
    return [
        line.split(":", 1)[0] for line in lines if ":" in line and " ## " in line and not line.startswith(("\t", "#"))
    ]


@pytest.fixture(scope="module")
def make_env(tiny_default_dataset, tmp_path_factory) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "MAKE", "MFLAGS"))}
    env["PIPELINE_MODELS_DIR"] = str(tmp_path_factory.mktemp("make-models"))
    env["PIPELINE_DATA_DIR"] = str(tiny_default_dataset.parent)
    return env


@pytest.fixture(scope="module")
def models_dir(make_env):
    return Path(make_env["PIPELINE_MODELS_DIR"])


@pytest.fixture(scope="module")
def made_run(make_env, models_dir, tiny_default_dataset):
    """`make train` of the smoke config: train, evaluate, index "smoke", export."""
    result = run_make("train", "CONFIG=smoke", f"DATA_DIR={tiny_default_dataset}", "ARGS=--quiet", env=make_env)
    return (models_dir / "runs" / "latest").resolve(), result


@pytest.fixture(scope="module")
def tuned_search(make_env, models_dir, made_run):
    """`make tune` of the smoke config: one trial of one epoch, in saved_models/tuning/make-smoke."""
    result = run_make(
        "tune", "CONFIG=smoke", "BUDGET=10", "ARGS=--max-trials 1 --epochs 1 --name make-smoke", env=make_env
    )
    return models_dir / "tuning" / "make-smoke", result


def test_make_help_lists_every_target_and_each_has_a_test(make_env):
    targets = help_targets()
    shown = run_make("help", env=make_env).stdout
    for target in targets:
        assert f"make {target} " in shown, target
    phony = next(line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    assert set(phony.split(":", 1)[1].split()) == set(targets), "a .PHONY target without a help line, or the reverse"
    untested = [t for t in targets if t not in TARGET_TESTS and not t.startswith(BENCHMARK_PREFIX)]
    assert not untested, f"targets no test starts: {untested}"
    assert set(TARGET_TESTS) <= set(targets), "TARGET_TESTS names a target the Makefile no longer has"
    for target, test in TARGET_TESTS.items():
        if "::" in test:
            path, name = test.split("::")
            module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
            assert callable(getattr(module, name, None)), f"{target}: {test} does not exist"


def test_make_data_builds_a_dataset_where_DATA_DIR_says(make_env, tmp_path):
    out = tmp_path / "small"
    run_make("data", f"DATA_DIR={out}", "ARGS=--items 6,2,2 --no-speech --workers 1", env=make_env)
    with (out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    items = {split: {r["item_id"] for r in rows if r["split"] == split} for split in ("train", "dev", "test")}
    assert {k: len(v) for k, v in items.items()} == {"train": 6, "dev": 2, "test": 2}
    assert all((out / r["image"]).is_file() for r in rows)
    # A second call leaves a built dataset alone.
    before = (out / "manifest.csv").stat().st_mtime_ns
    run_make("data", f"DATA_DIR={out}", env=make_env)
    assert (out / "manifest.csv").stat().st_mtime_ns == before


def test_make_describe_counts_the_dataset(make_env, tiny_default_dataset):
    shown = run_make("describe", f"DATA={tiny_default_dataset}", env=make_env).stdout
    assert "train" in shown and "40" in shown  # the tiny dataset's 40 training scenes


def test_make_train_trains_indexes_and_exports(made_run, models_dir):
    run, result = made_run
    record = json.loads((run / "run.json").read_text())
    assert record["config_name"] == "smoke" and record["epochs_run"] == 2
    assert "text->image" in record["test"]
    index = json.loads((models_dir / "index" / "smoke" / "index.json").read_text())
    assert index["items"] > 0
    assert (models_dir / "models.config").is_file()
    served = [p.parent.parent.name for p in models_dir.glob("*/[0-9]*/saved_model.pb")]
    assert {"text_encoder", "image_encoder", "audio_encoder", "retriever"} <= set(served)


def test_make_evaluate_reports_recall_on_a_split(made_run, make_env, tiny_default_dataset):
    run, _ = made_run
    shown = run_make("evaluate", f"RUN={run}", f"DATA={tiny_default_dataset}", "SPLIT=dev", env=make_env).stdout
    assert "R@1" in shown
    report = json.loads((run / "eval" / f"{tiny_default_dataset.name}-dev.json").read_text())
    assert 0 <= report["text->image"]["R@1"] <= 100


def test_make_index_then_export_serves_a_new_index(made_run, make_env, models_dir, tiny_default_dataset):
    run, _ = made_run
    run_make("index", f"RUN={run}", f"DATA={tiny_default_dataset}", "NAME=made-hnsw", "KIND=hnsw", env=make_env)
    index = json.loads((models_dir / "index" / "made-hnsw" / "index.json").read_text())
    assert index["kind"] == "hnsw"
    before = {p.name for p in (models_dir / "retriever").iterdir()}
    shown = run_make("export", "INDEX=made-hnsw", env=make_env).stdout
    assert "models.config" in shown
    new = {p.name for p in (models_dir / "retriever").iterdir()} - before
    assert len(new) == 1 and (models_dir / "retriever" / new.pop() / "saved_model.pb").is_file()


def test_make_search_prints_k_hits(made_run, make_env):
    shown = run_make("search", "Q=a red circle", "INDEX=smoke", "K=3", env=make_env).stdout
    ranks = [line.split(".")[0].strip() for line in shown.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert ranks == ["1", "2", "3"], shown
    missing = run_make("search", "INDEX=smoke", env=make_env, check=False)
    assert missing.returncode == 2 and "usage: make search" in missing.stdout


def test_make_serve_answers_on_loopback_and_stops_whole(made_run, make_env, tmp_path):
    port = free_port()
    service = BackgroundTarget("serve", "INDEX=smoke", f"PORT={port}", env=make_env, log_path=tmp_path / "serve.log")
    try:
        health = json.loads(service.wait_for(f"http://127.0.0.1:{port}/healthz"))
        assert health["status"] == "ok" and health["index"] == "smoke" and health["items"] > 0
        hits = get_json(f"http://127.0.0.1:{port}/search", {"query": "a red circle", "k": 2})["hits"]
        assert len(hits) == 2
        assert listening_addresses(port) == {"127.0.0.1"}  # HOST's default: loopback only
    finally:
        service.stop()
    assert not service.group_alive()


def test_make_tune_runs_a_trial_and_logs_its_hparams(tuned_search):
    root, result = tuned_search
    trials = [json.loads(line) for line in (root / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 1 and trials[0]["epochs_run"] == 1
    assert "best dev rsum" in result.stdout
    assert list((root / "hparams" / trials[0]["trial"]).glob("events.out.tfevents*"))


def test_make_tensorboard_serves_the_runs_scalars_and_the_trials_hparams(made_run, tuned_search, make_env, tmp_path):
    run, _ = made_run
    search, _ = tuned_search
    trial = json.loads((search / "trials.jsonl").read_text().splitlines()[0])
    port = free_port()
    board = BackgroundTarget("tensorboard", f"PORT={port}", env=make_env, log_path=tmp_path / "tensorboard.log")
    base = f"http://127.0.0.1:{port}"
    train_run = f"runs/{run.name}/logs/train"
    hparams_run = f"tuning/make-smoke/hparams/{trial['trial']}"
    try:
        board.wait_for(f"{base}/data/runs")
        assert listening_addresses(port) == {"127.0.0.1"}  # HOST's default: loopback only
        runs = _poll(lambda: get_json(f"{base}/data/runs"), lambda r: {train_run, hparams_run} <= set(r))
        assert {train_run, hparams_run} <= set(runs), runs
        tags = get_json(f"{base}/data/plugin/scalars/tags")[train_run]
        assert {"epoch_loss", "epoch_dev_rsum", "epoch_dev_text_to_image_R1", "epoch_learning_rate"} <= set(tags)
        # The losses TensorBoard returns are the ones the run's history.csv recorded, epoch by epoch.
        with (run / "history.csv").open() as handle:
            history = list(csv.DictReader(handle))
        for tag, column in (("epoch_loss", "loss"), ("epoch_dev_rsum", "dev_rsum")):
            query = urllib.parse.urlencode({"run": train_run, "tag": tag})
            points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
            assert [step for _, step, _ in points] == list(range(len(history))), tag
            for (_, _, value), row in zip(points, history):
                assert math.isclose(value, float(row[column]), rel_tol=1e-5), (tag, value, row[column])
        # The trial's hyperparameters and its objective, as the HParams dashboard shows them.
        groups = get_json(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "startIndex": 0,
                "sliceSize": 100,
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            },
        )["sessionGroups"]
        group = next(g for g in groups if g["name"].endswith(trial["trial"]))
        assert set(trial["values"]) <= set(group["hparams"]), group["hparams"]
        objective = [m["value"] for m in group["metricValues"] if m["name"]["tag"] == "dev_rsum"]
        assert objective and math.isclose(objective[0], trial["dev_rsum"], abs_tol=0.01)
    finally:
        board.stop()
    assert not board.group_alive()


def _poll(read, done, seconds: float = 60.0):
    """``read()`` until ``done`` holds of it (TensorBoard loads event files after it starts)."""
    import time

    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(1.0)
        value = read()
    return value
