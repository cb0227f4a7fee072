"""The real audio datasets end to end (needs ../shared): the spoken-digits build and its
speaker split, evaluation on a speaker never heard, and an ESC-50 run warm-started from the
digits run's audio encoder."""

import json
import logging

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.data.spoken_digits import speaker_folder

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory, shared_datasets):
    out = tmp_path_factory.mktemp("data") / "digits"
    assert main(["data", "digits", "--out", str(out)]) == 0
    return out


def test_the_digits_split_is_by_speaker(digits_folder):
    frame = pd.read_csv(digits_folder / "manifest.csv", dtype=str)
    speakers = frame.groupby("split")["speaker"].agg(set).to_dict()
    # The test speaker is never heard in training or early stopping (dev is the training
    # speakers' last takes); the synthetic eSpeak voices only ever train.
    assert not speakers["test"] & (speakers["train"] | speakers["dev"])
    real = {"jackson", "lucas", "nicolas", "yweweler"}
    synthetic = {f"espeak{index}" for index in range(60)}
    assert speakers == {"test": {"theo"}, "dev": real, "train": real | synthetic}
    # 5 speakers x 10 digits x 50 takes, plus 60 voices x 10 digits in train.
    assert len(frame) == 2500 + 600
    assert frame.groupby("split").size().to_dict() == {"dev": 200, "test": 500, "train": 1800 + 600}
    assert set(frame.loc[frame["split"] == "dev", "item_id"].str.split("_").str[2].astype(int)) == {45, 46, 47, 48, 49}


def test_evaluate_on_an_unseen_speakers_recordings_and_warm_start_esc50(
    digits_folder, shared_datasets, isolated_models_dir, tmp_path, caplog
):
    assert (
        main(
            [
                "train",
                "--config",
                "digits",
                "--set",
                f"data.path={digits_folder}",
                "--set",
                "train.epochs=1",
                "--set",
                "name=digits-test",
                "--no-export",
                "--quiet",
            ]
        )
        == 0
    )
    run = (isolated_models_dir / "runs" / "latest").resolve()
    folder = speaker_folder(shared_datasets / "fsdd", "theo", tmp_path / "theo")
    report_path = tmp_path / "theo.json"
    assert (
        main(["evaluate", "--run", str(run), "--data", str(folder), "--split", "all", "--json", str(report_path)]) == 0
    )
    report = json.loads(report_path.read_text())
    assert report["audio->text"]["queries"] == 500 and 0 <= report["audio->text"]["mAP"] <= 100
    assert set(report) >= {"audio->text", "text->audio", "rsum"}
    with caplog.at_level(logging.INFO):
        assert (
            main(
                [
                    "train",
                    "--config",
                    "esc50",
                    "--set",
                    "train.epochs=1",
                    "--set",
                    f"audio.init_from={run}",
                    "--set",
                    "name=esc50-test",
                    "--no-export",
                    "--no-eval",
                    "--quiet",
                ]
            )
            == 0
        )
    assert "layers initialised from" in caplog.text
    assert (
        main(
            [
                "train",
                "--config",
                "esc50",
                "--set",
                "train.epochs=1",
                "--set",
                f"audio.init_from={tmp_path / 'nope'}",
                "--quiet",
            ]
        )
        == 2
    )
