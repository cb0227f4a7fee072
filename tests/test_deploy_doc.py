"""docs/deploy.md followed step by step, everything but running TF Serving itself: its REST
API is emulated (tests/fake_tf_serving.py) and the page's own curl lines are run against it."""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.fake_tf_serving import FakeTFServing

pytestmark = pytest.mark.slow
DOC = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


def bash_lines(text: str) -> list[str]:
    """The commands of the page's ```bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def test_the_deployment_page_step_by_step(smoke_index, isolated_models_dir, tiny_default_dataset, tmp_path, capsys):
    commands = bash_lines(DOC.read_text())
    # 1. Export: `make export` runs `python -m pipeline export --index default`; here the index is the test's.
    assert commands[0] == "make export" and "python -m pipeline export --index default" in DOC.read_text()
    makefile = (DOC.parent.parent / "Makefile").read_text()
    assert re.search(r"^export:.*\n\t\$\(PY\) -m pipeline export --index \$\(or \$\(INDEX\),default\)", makefile, re.M)
    assert main(["export", "--index", "tiny"]) == 0
    for name in ("text_encoder", "image_encoder", "audio_encoder", "retriever"):
        assert any((isolated_models_dir / name).glob("*/saved_model.pb")), name

    # 2. The docker command mounts saved_models/ where models.config says the models are.
    docker = next(c for c in commands if c.startswith("docker run"))
    mount = re.search(r'-v "\$PWD/saved_models:(/\S+)"', docker).group(1)
    config_file = re.search(r"--model_config_file=(\S+)", docker).group(1)
    assert config_file == f"{mount}/models.config"
    config = (isolated_models_dir / "models.config").read_text()
    for base_path in re.findall(r'base_path: "([^"]+)"', config):
        assert base_path.startswith(mount + "/") and (isolated_models_dir / base_path[len(mount) + 1 :]).is_dir()

    # 3. and 4. Every curl and query-serving line, against the emulated server, from a folder
    # where data/default is the test's dataset.
    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    os.symlink(tiny_default_dataset, work / "data" / "default")
    with FakeTFServing(isolated_models_dir) as url:
        rest = [c for c in commands if c.startswith(("curl", "printf"))]
        assert len([c for c in rest if c.startswith("curl")]) == 5
        for command in rest:
            script = "set -euo pipefail\n" + command.replace("http://localhost:8501", url)
            done = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True)
            assert done.returncode == 0 and not done.stderr, (command, done.stderr)
            if command.startswith("curl"):
                answer = json.loads(done.stdout)
                assert "error" not in answer and ("predictions" in answer or "model_version_status" in answer), (
                    command,
                    answer,
                )
                if ":predict" in command:
                    assert len(answer["predictions"]) == (2 if "two green stars" in command else 1), command
        queries = [c for c in commands if c.startswith("python -m pipeline query-serving")]
        assert len(queries) == 2
        old = Path.cwd()
        os.chdir(work)
        try:
            for command in queries:
                argv = shlex.split(
                    command.replace("http://localhost:8501", url).replace("--index default", "--index tiny")
                )[3:]
                capsys.readouterr()
                assert main(argv) == 0, command
                assert "1." in capsys.readouterr().out, command  # a ranked hit was printed
        finally:
            os.chdir(old)
