"""make tune: KerasTuner over training runs, driven through main(argv) on the tiny default dataset."""

import os

import pytest

from pipeline.cli import main
from pipeline.config import load_config

pytestmark = pytest.mark.slow

SPACE = """
[params."text.kind"]
choices = ["conv", "serial"]
[params."text.kernel_sizes"]
choices = [[2, 3], [2, 3, 4]]
[params."train.learning_rate"]
min = 1e-3
max = 5e-3
sampling = "log"
"""


def test_two_smoke_trials_write_a_best_config_that_trains(tiny_default_dataset, isolated_models_dir, tmp_path, capsys):
    (tmp_path / "space.toml").write_text(SPACE)
    latest = isolated_models_dir / "runs" / "latest"
    before = os.readlink(latest) if latest.is_symlink() else None
    argv = [
        "tune",
        "--config",
        "smoke",
        "--set",
        f"data.path={tiny_default_dataset}",
        "--space",
        str(tmp_path / "space.toml"),
        "--max-trials",
        "2",
        "--epochs",
        "1",
        "--dir",
        str(tmp_path / "tuning"),
        "--name",
        "smoke-search",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 trial(s)" in out and "best dev rsum" in out
    root = tmp_path / "tuning" / "smoke-search"
    best = load_config(str(root / "best.toml"))  # loads as a config
    assert best.text.kind in ("conv", "serial") and best.text.kernel_sizes in ((2, 3), (2, 3, 4))
    assert 1e-3 <= best.train.learning_rate <= 5e-3
    assert best.train.epochs == load_config("smoke").train.epochs  # the base's epochs, not the trials' 1
    trials = sorted(p.name for p in (root / "trials").iterdir())
    assert len(trials) == 2 and all((root / "trials" / t / "run.json").is_file() for t in trials)
    assert all(load_config(str(root / "trials" / t / "config.toml")).train.epochs == 1 for t in trials)  # --epochs 1
    trial_configs = [load_config(str(root / "trials" / t / "config.toml")) for t in trials]
    assert {c.text.kind for c in trial_configs} <= {"conv", "serial"}
    # The first trial is the base config itself (smoke: serial, kernels 2,3, lr 2e-3), so the
    # search is measured against it under the same trial settings.
    smoke = load_config("smoke")
    first = trial_configs[0]
    assert (first.text.kind, first.text.kernel_sizes, first.train.learning_rate) == (
        smoke.text.kind,
        smoke.text.kernel_sizes,
        smoke.train.learning_rate,
    )
    # summary.md lists both trials with their scores, the base marked.
    summary = (root / "summary.md").read_text().splitlines()
    assert len(summary) == 2 + 2 and sum("(base)" in line for line in summary) == 1
    assert all(f"| {t}" in "\n".join(summary) for t in trials)
    # One HParams log per trial, for TensorBoard's dashboard.
    assert sorted(p.name for p in (root / "hparams").iterdir()) == trials
    assert all(list((root / "hparams" / t).glob("events.out.tfevents*")) for t in trials)
    # Trials do not move saved_models/runs/latest.
    assert (os.readlink(latest) if latest.is_symlink() else None) == before
    # The same command again resumes the finished search: no new trial.
    assert main(argv) == 0
    assert len(list((root / "trials").iterdir())) == 2


@pytest.mark.parametrize(
    "space, message",
    [
        ('[params."text.lstm_unitz"]\nchoices = [64, 128]\n', "text.lstm_unitz"),
        ('[params."text.lstm_units"]\nmin = 0\nmax = 64\n', "text.lstm_units = 0 cannot be tried"),
        ('[params."text.kind"]\nchoices = ["conv", "transformer"]\n', "text.kind = 'transformer' cannot be tried"),
        ('[params."text.dropout"]\nmin = 0.2\nmax = 0.1\n', "text.dropout: min 0.2 is not below max 0.1"),
        ('[params."train.learning_rate"]\nmin = 0.0\nmax = 0.01\nsampling = "log"\n', "train.learning_rate: sampling"),
        ('[params."text.kind"]\nvalues = ["conv"]\n', "text.kind: unknown setting(s) values"),
    ],
)
def test_a_bad_search_space_is_refused_before_any_trial(tmp_path, capsys, space, message):
    (tmp_path / "space.toml").write_text(space)
    assert (
        main(["tune", "--config", "smoke", "--space", str(tmp_path / "space.toml"), "--dir", str(tmp_path / "tuning")])
        == 2
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tuning").exists()  # no trial started, no tuner state written
