"""README.md's "Use your own data" section, run as written on a folder of 20 captioned photos.

Every line of its bash block runs, in order, from the project folder, with only ``PHOTOS``
pointed at the test's folder. ``make venv`` is left out (the suite already runs inside that
environment) and ``make serve`` is checked through the command it runs: the service starts on
the new index and answers a search.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def section_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line.split(" #", 1)[0].strip() for line in block.splitlines() if line.split(" #", 1)[0].strip()]


def captioned_photos(folder: Path, count: int = 20) -> None:
    """JPEG photos of a coloured square on a coloured ground, each with two captions; the first is
    named as the README's example photo."""
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 30)}
    names = list(colours)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        fg, bg = names[i % 4], names[(i // 4 + 1 + i % 4) % 4]
        pixels = np.zeros((96, 96, 3), np.uint8) + np.array(colours[bg], np.uint8)
        x, y = rng.integers(8, 48, size=2)
        pixels[y : y + 40, x : x + 40] = colours[fg]
        stem = "beach01" if i == 0 else f"photo{i:02d}"
        Image.fromarray(pixels).save(folder / f"{stem}.jpg", quality=90)
        (folder / f"{stem}.txt").write_text(f"a {fg} square on {bg}\na {bg} picture with a {fg} block\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_use_your_own_data_as_written(tmp_path):
    commands = section_commands()
    assert commands[0].startswith("PHOTOS=") and commands[1] == "make venv"
    assert commands[-1].startswith("make serve INDEX=my_photos")
    photos = tmp_path / "my_photos"
    captioned_photos(photos)
    pipeline = ROOT / ".venv" / "bin" / "pipeline"
    if not pipeline.exists():  # a suite run from another environment: the same command, by module
        pipeline = f"{sys.executable} -m pipeline"
    env = {**os.environ, "PIPELINE_MODELS_DIR": str(tmp_path / "models"), "PHOTOS": str(photos)}
    outputs = []
    for command in commands[2:-1]:
        command = command.replace(".venv/bin/pipeline", str(pipeline))
        done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    assert "problems: none" in outputs[0]  # data describe
    assert (tmp_path / "models" / "index" / "my_photos" / "index.json").is_file()
    # The image search, again with --json: the photo finds itself first (the same preprocessing
    # embeds it for the index and for the query).
    again = subprocess.run(
        ["bash", "-c", commands[-2].replace(".venv/bin/pipeline", str(pipeline)) + " --json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(again.stdout)["hits"][0]["item_id"] == "beach01", again.stdout[-2000:]

    # make serve INDEX=my_photos runs `pipeline serve --index my_photos` (Makefile), here on a free port.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve:.*\n\t\$\(PY\) -m pipeline serve --index \$\(or \$\(INDEX\),default\)", makefile, re.M)
    port = free_port()
    argv = [*str(pipeline).split(), "serve", "--index", "my_photos", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, answer = time.time() + 120, None
        while time.time() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/search",
                    data=json.dumps({"query": "a red square", "k": 3}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
                break
            except OSError:
                time.sleep(0.5)
        assert answer is not None, server.stderr.read().decode()[-3000:] if server.poll() is not None else "no answer"
        assert len(answer["hits"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
