"""The environment `make` installs, and the targets that work on the checkout itself
(lint, format, test-fast, clean), started as the Makefile starts them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.make_runner import REPO, VENV, clean_env, run_make

# What a process imports when a command starts: the CLI, TensorBoard (its entry point imports
# pkg_resources), the HParams and projector plugins, KerasTuner, Beam's RunInference, pymilvus
# with Milvus Lite, the service (FastAPI, uvicorn, multipart forms, Prometheus) and its page.
START_UP_IMPORTS = (
    "pipeline.cli",
    "tensorboard.main",
    "tensorboard.plugins.hparams.api",
    "tensorboard.plugins.projector",
    "keras_tuner",
    "apache_beam.ml.inference.base",
    "pipeline.batch_embed.beam_pipeline",
    "pymilvus",
    "milvus_lite",
    "pipeline.retrieval.index_kinds.milvus",
    "fastapi",
    "uvicorn",
    "multipart",
    "prometheus_client",
    "pipeline.search_service.app",
    "tensorflow_io",
    "faiss",
)


def no_deps_packages() -> set[str]:
    """Packages `make` installs with --no-deps (requirements-nodeps.txt), normalised."""
    names = set()
    for line in (REPO / "requirements-nodeps.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_pip_check_finds_no_conflict_but_the_no_deps_installs():
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check", "--disable-pip-version-check"], capture_output=True, text=True
    )
    deliberate = no_deps_packages()
    problems = []
    for line in result.stdout.splitlines():
        if not line.strip() or line.startswith("No broken requirements"):
            continue
        match = re.match(r"(\S+) \S+ requires (\S+), which is not installed\.$", line)
        # A --no-deps package may lack what it declares (that is why it is installed so); any
        # other missing package or any version conflict is drift.
        if match and match.group(1).lower().replace("_", "-") in deliberate:
            continue
        problems.append(line)
    assert not problems, "pip check:\n" + "\n".join(problems)


@pytest.mark.slow
def test_every_package_a_command_starts_with_imports():
    script = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed[name] = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(failed))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", script, *START_UP_IMPORTS], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failed, failed
    page = REPO / "pipeline" / "search_service" / "static" / "index.html"
    assert "<script" in page.read_text()  # the page the service serves at /, with its script


def test_tensorboard_starts_its_program(tmp_path):
    """TensorBoard's own entry point as the venv installs it (it imports pkg_resources)."""
    result = subprocess.run(
        [str(VENV / "bin" / "tensorboard"), "--version_tb"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", result.stdout.strip())


@pytest.mark.slow
def test_make_test_fast_collects_no_slow_test():
    result = run_make("test-fast", "PYTEST_ARGS=--collect-only", "TEST_WORKERS=0", env=dict(os.environ))
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert collected, result.stdout
    assert not [t for t in collected if t.startswith(("tests/test_make_targets.py", "tests/test_tuning.py"))]
    assert any(t.startswith("pipeline/") for t in collected)


@pytest.fixture
def tree(tmp_path):
    """A folder with the project's lint and format rules."""
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    return tmp_path


def test_make_lint_fails_on_a_lint_error_and_passes_clean_code(tree):
    (tree / "clean.py").write_text('"""A clean module."""\n\nVALUE = [1, 2, 3]\n')
    run_make("lint", env=dict(os.environ), cwd=tree)
    (tree / "unused.py").write_text("import os\n\nVALUE = 1\n")
    failed = run_make("lint", env=dict(os.environ), cwd=tree, check=False)
    assert failed.returncode != 0 and "unused.py" in failed.stdout and "F401" in failed.stdout


def test_make_format_rewrites_code_in_the_projects_style(tree):
    (tree / "messy.py").write_text("import os\nVALUE = [1,2 ,3]\n")
    run_make("format", env=dict(os.environ), cwd=tree)
    assert (tree / "messy.py").read_text() == "VALUE = [1, 2, 3]\n"  # the unused import fixed, then formatted
    run_make("lint", env=dict(os.environ), cwd=tree)


def test_make_clean_removes_the_environment_and_caches_only(tmp_path):
    for folder in (
        ".venv/bin",
        ".venv-torch/bin",
        ".pytest_cache",
        "saved_models/cache/x",
        "saved_models/runs/r",
        "data/default",
    ):
        (tmp_path / folder).mkdir(parents=True)
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(tmp_path), "-f", str(REPO / "Makefile"), "clean"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(os.environ),
    )
    assert result.returncode == 0, result.stderr
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_dir()}
    assert left == {"saved_models", "saved_models/runs", "saved_models/runs/r", "data", "data/default"}
