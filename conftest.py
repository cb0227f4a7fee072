"""Shared fixtures. Tests never write into the repository: caches and runs go to a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("PIPELINE_SHARED_DIR", Path(__file__).resolve().parent.parent / "shared"))


def pytest_configure(config):
    import logging

    # Milvus Lite stops its servers at exit and logs it, after pytest has closed its streams.
    logging.getLogger("milvus_lite").setLevel(logging.WARNING)
    config.addinivalue_line("markers", "shared: needs the ../shared datasets (runs in CI, skipped elsewhere)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


# Fixtures that train or build: a test using one is slow whatever its own marks say (make test-fast).
SLOW_FIXTURES = frozenset({"smoke_run", "smoke_index", "tiny_default_dataset", "shared_datasets"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())) or "shared" in item.keywords:
            item.add_marker(pytest.mark.slow)
    if (SHARED / "datasets").is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the shared datasets at {SHARED} (set PIPELINE_SHARED_DIR)")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def isolated_models_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved_models")
    old = os.environ.get("PIPELINE_MODELS_DIR")
    os.environ["PIPELINE_MODELS_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PIPELINE_MODELS_DIR", None)
    else:
        os.environ["PIPELINE_MODELS_DIR"] = old


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    return SHARED / "datasets"


@pytest.fixture(scope="session")
def tiny_default_dataset(tmp_path_factory) -> Path:
    """A small build of the embedded default dataset (real generator, fewer scenes)."""
    from pipeline.data.synthetic.build import DefaultDatasetConfig, build_default_dataset

    out = tmp_path_factory.mktemp("data") / "default"
    build_default_dataset(out, DefaultDatasetConfig(seed=7, train=40, dev=16, test=16), workers=2)
    return out


@pytest.fixture(scope="session")
def smoke_run(tiny_default_dataset, isolated_models_dir):
    # The default config's audio readout (pooled frames and the transcript the text encoder
    # reads), so the export of that composite encoder is checked (test_train_evaluate_export).
    readout = ["--set", "train.aux_frame_words=1", "--set", "audio.readout=both"]
    from pipeline.cli import main

    code = main(["train", "--config", "smoke", "--set", f"data.path={tiny_default_dataset}", *readout, "--quiet"])
    assert code == 0
    latest = isolated_models_dir / "runs" / "latest"
    return latest.resolve()


@pytest.fixture(scope="session")
def smoke_index(smoke_run, tiny_default_dataset, isolated_models_dir):
    """The index "tiny" over every item of the tiny dataset, built by the smoke run."""
    from pipeline.cli import main

    assert main(["index", "--run", str(smoke_run), "--data", str(tiny_default_dataset), "--name", "tiny"]) == 0
    return isolated_models_dir / "index" / "tiny"
