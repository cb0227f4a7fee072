"""Runs ``python -m pipeline serve`` in the background (real uvicorn, a free port): for the
benchmark and the tests that need a live service."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

PROJECT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def running_service(index: str | Path, models_dir: Path | None = None, token: str | None = None, timeout: float = 180) -> Iterator[str]:
    """Yields the service's base URL once ``/healthz`` answers; stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    if models_dir is not None:
        env["PIPELINE_MODELS_DIR"] = str(models_dir)
    env.pop("PIPELINE_API_TOKEN", None)
    if token:
        env["PIPELINE_API_TOKEN"] = token
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--index", str(index), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    if json.loads(r.read())["status"] == "ok":
                        break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"the service exited: {server.stdout.read()[-3000:]}") from None
                if time.time() > deadline:
                    raise RuntimeError(f"the service did not answer /healthz within {timeout:.0f} s") from None
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
