"""Runs the project's `make` targets the way a user does, from a test.

`make` runs in this checkout with the interpreter that runs the tests as its environment
(``VENV=sys.prefix``), told not to reinstall it (``-o`` on the requirements stamp), so a
test starts the Makefile's own recipe and installs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)


def make_command(target: str, *assignments: str, makefile_dir: Path | None = None) -> list[str]:
    """``make`` with this checkout's Makefile, run in ``makefile_dir`` (default the checkout)."""
    return [
        "make",
        "--no-print-directory",
        "-C",
        str(makefile_dir or REPO),
        "-f",
        str(REPO / "Makefile"),
        f"VENV={VENV}",
        "-o",
        str(VENV / ".requirements.stamp"),
        target,
        *assignments,
    ]


def clean_env(env: dict) -> dict:
    """``env`` without what an enclosing `make test` passes down (its jobserver, its variables)."""
    return {k: v for k, v in env.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "VENV"}}


def run_make(
    target: str, *assignments: str, env: dict, check: bool = True, timeout: float = 600, cwd: Path | None = None
):
    """Runs a target to its end; with ``check``, a failure shows its whole output."""
    result = subprocess.run(
        make_command(target, *assignments, makefile_dir=cwd),
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, f"make {target} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local IPv4 and IPv6 addresses with a socket listening on ``port`` (from /proc/net)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, port_hex = fields[1].split(":")
                if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.add(_address(address, width))
    return found


def _address(hex_address: str, width: int) -> str:
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_address)[::-1])
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, 32, 8)]
    return socket.inet_ntop(socket.AF_INET6, b"".join(words))


class BackgroundTarget:
    """A long-running target (``serve``, ``tensorboard``) in a process group of its own, so
    stopping it stops every process it started."""

    def __init__(self, target: str, *assignments: str, env: dict, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            make_command(target, *assignments),
            env=clean_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, url: str, seconds: float = 120.0) -> bytes:
        """The body of the first 200 answer from ``url``; fails with the log if the target
        exits or does not answer in time."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode} before answering:\n{self.output()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return response.read()
            time.sleep(0.5)
        raise AssertionError(f"no answer from {url} within {seconds:.0f} s:\n{self.output()}")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, seconds: float = 30.0) -> None:
        """SIGTERM to the whole group, then SIGKILL for what is left after ``seconds``."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while self.group_alive() and time.monotonic() < deadline:
            self.process.poll()  # reaps make itself once it has exited
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()


def get_json(url: str, body: dict | None = None):
    """GET, or POST ``body`` as JSON; the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
