"""The base config as the first trial, and the trial summary."""

import json

import pytest

from pipeline.config import read_config_file
from pipeline.tuning.search_space import Param
from pipeline.tuning.tuner import base_values, read_trials, write_summary

SPACE = (
    Param("text.kind", choices=("conv", "serial")),
    Param("text.kernel_sizes", choices=((2, 3), (2, 3, 4))),
    Param("train.learning_rate", min=1e-3, max=5e-3, sampling="log"),
)


def test_base_values_are_the_configs_own_in_the_oracles_form():
    # smoke: serial, kernels (2, 3), lr 2e-3; list choices are stored as their string form.
    assert base_values(SPACE, read_config_file("smoke")) == {
        "text.kind": "serial",
        "text.kernel_sizes": "[2, 3]",
        "train.learning_rate": 0.002,
    }


def test_a_base_outside_the_space_is_not_a_trial():
    base = read_config_file("smoke")
    assert base_values((Param("text.kind", choices=("conv", "lstm")),), base) is None
    assert base_values((Param("train.learning_rate", min=3e-3, max=5e-3),), base) is None


def test_summary_keeps_a_resumed_trials_last_record_and_sorts_best_first(tmp_path):
    records = [
        {"trial": "0", "dev_rsum": 10.0, "seconds": 60, "epochs_run": 2, "values": {"text.kind": "conv"}},
        {"trial": "1", "dev_rsum": 5.0, "seconds": 30, "epochs_run": 1, "values": {"text.kind": "serial"}},
        {"trial": "1", "dev_rsum": 20.0, "seconds": 90, "epochs_run": 3, "values": {"text.kind": "serial"}},
    ]
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [r["dev_rsum"] for r in read_trials(tmp_path)] == [10.0, 20.0]
    lines = write_summary(tmp_path, first_values={"text.kind": "conv"}).read_text().splitlines()
    assert lines[2] == "| 1 | 20.0 | 1.5 | 3 | serial |"
    assert lines[3] == "| 0 (base) | 10.0 | 1.0 | 2 | conv |"


def test_trial_values_turn_list_and_boolean_choices_back():
    import keras_tuner as kt

    from pipeline.tuning.tuner import _declare, trial_values

    space = SPACE + (Param("text.bidirectional", choices=(True, False)),)
    hp = kt.HyperParameters()
    for param in space:
        _declare(hp, param)
    hp.values.update({"text.kernel_sizes": "[2, 3, 4]", "text.bidirectional": 0})
    values = trial_values(space, hp)
    assert values["text.kernel_sizes"] == (2, 3, 4) and values["text.bidirectional"] is False


@pytest.mark.parametrize(
    "epochs,audio_epochs,trial_epochs,expected",
    [
        (60, 20, 15, 5),  # a quarter of the run, a quarter of the audio phase: 20 * 15 / 60
        (60, 20, 2, 1),  # 0.67 rounds to 1: each phase keeps an epoch
        (60, 20, 1, 0),  # a one-epoch trial has no room for two phases
        (10, 9, 5, 4),  # 4.5 rounds to 4 (Python's round), below the trial's 5 epochs
        (60, 0, 15, None),  # no audio phase: left alone
    ],
)
def test_shortened_trials_keep_the_audio_phase_in_proportion(epochs, audio_epochs, trial_epochs, expected):
    from pipeline.config import TrainConfig
    from pipeline.tuning.tuner import shortened_epochs

    settings = shortened_epochs(TrainConfig(epochs=epochs, audio_epochs=audio_epochs), trial_epochs)
    assert settings["train.epochs"] == trial_epochs
    assert settings.get("train.audio_epochs") == expected


def test_a_shortened_trial_of_the_default_config_is_a_valid_config():
    from pipeline.config import apply_overrides, from_dict, read_config_file
    from pipeline.tuning.search_space import overrides
    from pipeline.tuning.tuner import shortened_epochs

    base = read_config_file("default")
    config = from_dict(apply_overrides(base, overrides(shortened_epochs(from_dict(base).train, 8))))
    assert (config.train.epochs, config.train.audio_epochs) == (8, 2)  # 8 of 38 audio epochs: 8 * 8 / 38 = 1.68
