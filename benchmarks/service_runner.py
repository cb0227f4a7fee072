"""Runs ``python -m pipeline serve`` in the background (real uvicorn, a free port): for the
benchmarks and the tests that need a live service, including ones that kill and restart it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """One ``pipeline serve`` process over ``index``; its output goes to a log file (a pipe
    nobody reads would block a chatty server). ``stop(signal.SIGKILL)`` kills it the hard way;
    ``start()`` again serves the same index on the same port."""

    def __init__(
        self, index: str | Path, models_dir: Path | None = None, token: str | None = None, timeout: float = 180
    ):
        self.index, self.timeout = str(index), timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        if models_dir is not None:
            self.env["PIPELINE_MODELS_DIR"] = str(models_dir)
        self.env.pop("PIPELINE_API_TOKEN", None)
        if token:
            self.env["PIPELINE_API_TOKEN"] = token
        self.log_path = Path(tempfile.mkstemp(prefix="pipeline-serve-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> ServiceProcess:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "serve", "--index", self.index, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.time() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as r:
                    if json.loads(r.read())["status"] == "ok":
                        return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the service exited: {self.log()[-3000:]}") from None
                if time.time() > deadline:
                    raise RuntimeError(f"the service did not answer /healthz within {self.timeout:.0f} s") from None
                time.sleep(0.5)

    def stop(self, how: int = signal.SIGTERM) -> int:
        """Stops the process with ``how``; its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(how)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def running_service(
    index: str | Path, models_dir: Path | None = None, token: str | None = None, timeout: float = 180
) -> Iterator[str]:
    """Yields the service's base URL once ``/healthz`` answers; stops it afterwards."""
    service = ServiceProcess(index, models_dir, token, timeout)
    try:
        yield service.start().base
    finally:
        service.close()
