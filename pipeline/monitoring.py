"""The ``tensorboard`` command (registered in pipeline.cli): TensorBoard over the training runs
and the tuning searches, on loopback unless told otherwise.

Training runs write their Keras TensorBoard logs to ``<runs>/<run>/logs`` and tuning searches
their HParams to ``<tuning>/<search>/hparams`` (both under ``PIPELINE_MODELS_DIR``), so one
TensorBoard reads both folders; runs show as ``runs/...`` and ``tuning/...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline import paths


class TensorBoardCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


def log_folders() -> dict[str, Path]:
    """The folders TensorBoard reads, by the name their runs are shown under."""
    return {"runs": paths.runs_dir(), "tuning": paths.tuning_dir()}


def logdir_spec(folders: dict[str, Path]) -> str:
    """TensorBoard's ``--logdir_spec`` value: ``name:path,name:path``. A comma in a path would
    split it, so such a path is refused rather than silently read as two."""
    for path in folders.values():
        if "," in str(path):
            raise TensorBoardCommandError(
                f"{path}: TensorBoard cannot read a folder whose path has a comma; set PIPELINE_MODELS_DIR to another folder"
            )
    return ",".join(f"{name}:{path}" for name, path in folders.items())


def tensorboard_argv(host: str, port: int, folders: dict[str, Path]) -> list[str]:
    """The command line that starts TensorBoard with this interpreter's installation."""
    return [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir_spec",
        logdir_spec(folders),
        "--host",
        host,
        "--port",
        str(port),
    ]


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0: any free one), got {port}")
    return port


def add_tensorboard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=port_number, default=6006, help="port (default 6006; 0 for any free one)")


def run_tensorboard(args: argparse.Namespace) -> int:
    folders = log_folders()
    argv = tensorboard_argv(args.host, args.port, folders)
    if not any(path.is_dir() for path in folders.values()):
        print(
            f"note: no runs yet in {folders['runs']} (make train writes one) and no searches in {folders['tuning']} "
            "(make tune); TensorBoard shows them as they are written."
        )
    print(f"TensorBoard over {', '.join(str(p) for p in folders.values())} at http://{args.host}:{args.port}/")
    sys.stdout.flush()
    # TensorBoard replaces this process, so stopping it (Ctrl-C, a signal) leaves nothing behind.
    os.execv(argv[0], argv)
    return 0  # pragma: no cover (execv does not return)
