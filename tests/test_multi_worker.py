"""``train --set strategy=multi_worker``: two worker processes on this machine (TF_CONFIG,
free ports) train the smoke config like one process with the same global batch."""

import csv
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from pipeline.cli import main

pytestmark = pytest.mark.slow

# Dropout off: the replicas draw their masks from one mirrored seed, so with dropout a
# two-worker run equals a single process only in distribution, not value by value.
NO_DROPOUT = ["text.dropout=0", "image.dropout=0", "audio.dropout=0", "fusion.modality_dropout=0"]
# Measured: per-epoch losses agree to about 1e-4 relative (float32 sums in another order: the
# gradient all-reduce and the synchronized batch-norm moments). A bug in the gather, the
# gradient scale, the clipping or the data shards moves them by 1e-2 or more.
RTOL = 1e-3


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def losses(run_dir):
    with open(run_dir / "history.csv") as handle:
        return np.array([float(row["loss"]) for row in csv.DictReader(handle)])


def test_two_workers_train_like_one_process_with_the_global_batch(tiny_default_dataset, tmp_path, monkeypatch):
    overrides = [f"data.path={tiny_default_dataset}", "train.epochs=2", *NO_DROPOUT]
    sets = [a for o in overrides for a in ("--set", o)]
    common = ["train", "--config", "smoke", *sets, "--no-export", "--no-eval", "--quiet"]
    env = {**os.environ, "PIPELINE_MODELS_DIR": str(tmp_path / "models"), "TF_CPP_MIN_LOG_LEVEL": "2"}

    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    *common,
                    "--set",
                    "strategy=multi_worker",
                    "--run-dir",
                    str(tmp_path / "multi"),
                ],
                env={**env, "TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        logs.append(out)
        assert worker.returncode == 0, out[-3000:]

    # Only the chief wrote a run folder; the other worker's scratch folder is gone.
    assert (tmp_path / "multi" / "run.json").is_file()
    assert not list(tmp_path.glob(".multi.worker-*"))
    digests = [re.search(r"final weights sha1 ([0-9a-f]{40})", log).group(1) for log in logs]
    assert digests[0] == digests[1]  # the workers' weights are identical

    monkeypatch.setenv("PIPELINE_MODELS_DIR", str(tmp_path / "models"))
    assert main([*common, "--run-dir", str(tmp_path / "single")]) == 0
    single, multi = losses(tmp_path / "single"), losses(tmp_path / "multi")
    assert len(single) == len(multi) == 2
    np.testing.assert_allclose(multi, single, rtol=RTOL)


def test_multi_worker_needs_tf_config_and_a_run_dir(tiny_default_dataset, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    base = [
        "train",
        "--config",
        "smoke",
        "--set",
        f"data.path={tiny_default_dataset}",
        "--set",
        "strategy=multi_worker",
    ]
    assert main(base) == 2
    assert "needs --run-dir" in capsys.readouterr().err
    assert main([*base, "--run-dir", "somewhere"]) == 2
    assert "needs TF_CONFIG" in capsys.readouterr().err
