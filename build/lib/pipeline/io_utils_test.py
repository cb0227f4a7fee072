import os
import subprocess
import sys

import pytest

from pipeline.io_utils import atomic_path, remove_abandoned_temporaries, write_text_atomic


def test_a_failed_write_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "report.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "index"
    for version in ("1", "2"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "version").write_text(version)
    assert (target / "version").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    abandoned = tmp_path / f".index.{dead_pid}.abc123.tmp"
    (abandoned / "part").mkdir(parents=True)
    live = tmp_path / f".index.{os.getpid()}.def456.tmp"  # a writer that is still running (this process)
    live.mkdir()
    unrelated = tmp_path / f".other.{dead_pid}.x.tmp"
    unrelated.write_text("")
    assert remove_abandoned_temporaries(tmp_path / "index") == 1
    assert not abandoned.exists() and live.exists() and unrelated.exists()
