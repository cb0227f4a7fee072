"""The train → evaluate → export path, driven through main(argv) on the tiny default dataset."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline.cli import main
from tests.helpers import tone, write_audio, write_image

pytestmark = pytest.mark.slow
DIRECTION_KEYS = {"R@1", "R@5", "R@10", "MedR", "MeanR"}


def test_run_folder_contents(smoke_run, isolated_models_dir):
    for name in (
        "run.json",
        "config.toml",
        "vocab.txt",
        "model.weights.h5",
        "history.csv",
        "eval/test.json",
        "eval/test.md",
        "eval/test.png",
    ):
        assert (smoke_run / name).is_file(), name
    assert list((smoke_run / "logs").rglob("events.out.tfevents*")), "no TensorBoard events"
    assert (smoke_run / "logs" / "projector" / "projector_config.pbtxt").is_file()
    report = json.loads((smoke_run / "eval" / "test.json").read_text())
    for direction in ("text->image", "image->text", "audio->image", "text->audio"):
        assert DIRECTION_KEYS <= set(report[direction]), direction
    assert report["rsum"] == pytest.approx(
        sum(report[d][f"R@{k}"] for d in report if "->" in d and "(" not in d and d != "text->item" for k in (1, 5, 10))
    )
    history = (smoke_run / "history.csv").read_text().splitlines()
    assert "dev_rsum" in history[0] and len(history) == 3  # header + 2 epochs


def test_exports_reload_and_match_in_memory_encoder(smoke_run, isolated_models_dir, tiny_default_dataset):
    from pipeline.inference import Encoder

    encoder = Encoder.from_run(smoke_run)
    info = json.loads((smoke_run / "run.json").read_text())
    texts = ["a red circle above a blue square", "just one green star"]
    images = sorted((tiny_default_dataset / "images").glob("test-*.png"))[:3]
    clips = sorted((tiny_default_dataset / "audio").glob("test-*.wav"))[:2]
    cases = {
        "text_encoder": (tf.constant(texts), encoder.encode_text(texts)),
        "image_encoder": (tf.constant([p.read_bytes() for p in images]), encoder.encode_image(images)),
        "audio_encoder": (tf.constant([p.read_bytes() for p in clips]), encoder.encode_audio(clips)),
    }
    for name, (raw, expected) in cases.items():
        path = Path(info["exports"][name])
        assert path.parent == isolated_models_dir / name and path.name.isdigit()
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
        loaded = tf.saved_model.load(str(path))
        served = loaded.signatures["serving_default"](raw)["embedding"].numpy()
        np.testing.assert_allclose(served, expected, atol=1e-4, err_msg=name)


def test_export_versions_count_up(smoke_run, isolated_models_dir):
    from pipeline.inference import Encoder
    from pipeline.tf_serving.export import export_encoders

    encoder = Encoder.from_run(smoke_run)
    before = sorted(int(p.name) for p in (isolated_models_dir / "text_encoder").iterdir() if p.name.isdigit())
    out = export_encoders(encoder.model, encoder.vectorizer, encoder.config)
    assert int(out["text_encoder"].name) == before[-1] + 1
    assert all((isolated_models_dir / "text_encoder" / str(v) / "saved_model.pb").exists() for v in before)


def test_evaluate_on_a_dataset_seen_only_at_evaluation(smoke_run, tmp_path, capsys):
    colours = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}
    for name, rgb in colours.items():
        write_image(tmp_path / "test" / f"{name}.png", colour=rgb)
        (tmp_path / "test" / f"{name}.txt").write_text(f"a {name} square\nsomething {name}\n")
    report_path = tmp_path / "report.json"
    code = main(
        ["evaluate", "--run", str(smoke_run), "--data", str(tmp_path), "--split", "test", "--json", str(report_path)]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert set(report) >= {"text->image", "image->text", "rsum"} and "audio->image" not in report
    assert report["text->image"]["queries"] == 6 and report["text->image"]["gallery"] == 3
    assert DIRECTION_KEYS <= set(report["image->text"])
    assert report_path.with_suffix(".md").is_file() and report_path.with_suffix(".png").is_file()
    assert "| text->image |" in capsys.readouterr().out


def test_incompatible_run_folder_stops_at_once(smoke_run, tmp_path, capsys):
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(smoke_run, old, ignore=shutil.ignore_patterns("logs", "backup", "checkpoints"))
    info = json.loads((old / "run.json").read_text())
    info["run_format_version"] = 0
    (old / "run.json").write_text(json.dumps(info))
    assert main(["evaluate", "--run", str(old)]) == 2
    assert "written with run format 0" in capsys.readouterr().err
    (old / "run.json").unlink()
    assert main(["evaluate", "--run", str(old)]) == 2
    assert "not a finished training run" in capsys.readouterr().err


def test_unknown_config_key_and_bad_value(capsys):
    assert main(["train", "--config", "smoke", "--set", "text.knd=lstm"]) == 2
    assert "unknown config key 'text.knd' (did you mean 'text.kind'?)" in capsys.readouterr().err
    assert main(["train", "--config", "smoke", "--set", "text.kind=transformer"]) == 2
    assert "text.kind = 'transformer' is not one of" in capsys.readouterr().err
    assert main(["train", "--config", "nosuch"]) == 2
    assert "no config named 'nosuch'" in capsys.readouterr().err


def test_dataset_without_needed_modalities_stops_at_once(tmp_path, capsys):
    for i in range(3):
        write_image(tmp_path / f"p{i}.png")
        (tmp_path / f"p{i}.txt").write_text("a picture\n")
    assert main(["train", "--config", "smoke", "--set", f"data.path={tmp_path}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the dataset has no audio" in err and "--set data.modalities=text,image" in err


def test_frame_word_head_without_word_timings_stops_at_once(tmp_path, capsys):
    rows = ["item_id,split,text,image,audio,label"]
    for i in range(4):
        write_image(tmp_path / f"p{i}.png")
        write_audio(tmp_path / f"a{i}.wav", tone(0.3), 16000)
        rows += [f"i{i},{split},a picture,p{i}.png,a{i}.wav," for split in ("train", "dev")]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    assert (
        main(
            [
                "train",
                "--config",
                "smoke",
                "--set",
                f"data.path={tmp_path}",
                "--set",
                "train.aux_frame_words=1",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "needs word timings" in err and "audio_words" in err and "train.aux_frame_words=0" in err


def test_resume_after_interruption(tiny_default_dataset, tmp_path):
    from pipeline.config import load_config
    from pipeline.training.callbacks import StopAfterEpochs
    from pipeline.training.trainer import train

    config = load_config("smoke", [f"data.path={tiny_default_dataset}", "train.epochs=3"])
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=run_dir, extra_callbacks=[StopAfterEpochs(1)], evaluate_test=False, verbose=0)
    assert not (run_dir / "run.json").exists()  # not finished, so not a usable run
    result = train(config, run_dir=run_dir, evaluate_test=False, verbose=0)
    epochs = [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]  # epoch 0 from the first attempt, 1 and 2 after resuming
    assert len(result.history["loss"]) == 2


def test_the_same_seed_gives_the_same_run(tiny_default_dataset, tmp_path):
    """Two trainings of one config and seed, the audio phase and the fused item words included,
    end with the same weights and the same dev figures, bit for bit."""
    from pipeline.config import load_config
    from pipeline.training.trainer import train

    config = load_config("smoke", [f"data.path={tiny_default_dataset}", "train.epochs=2", "train.audio_epochs=1"])
    runs = [
        train(config, run_dir=tmp_path / f"run{i}", evaluate_test=False, verbose=0, mark_latest=False) for i in range(2)
    ]
    for a, b in zip(runs[0].model.weights, runs[1].model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    reports = [json.loads((r.run_dir / "run.json").read_text())["dev"] for r in runs]
    assert reports[0] == reports[1]


def test_mirrored_strategy_on_two_logical_cpus(tiny_default_dataset, tmp_path):
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pipeline.config import load_config
from pipeline.training.trainer import make_strategy, train
assert make_strategy("mirrored").num_replicas_in_sync == 2
config = load_config("smoke", ["data.path={tiny_default_dataset}", "strategy=mirrored", "train.epochs=1"])
result = train(config, run_dir=r"{tmp_path / "run"}", evaluate_test=False, verbose=0)
print("REPLICAS", result.model.distribute_strategy.num_replicas_in_sync, "LOSS", result.history["loss"][-1])
"""
    env = {**os.environ, "PIPELINE_MODELS_DIR": str(tmp_path / "models"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("REPLICAS")][0]
    assert line.split()[1] == "2" and np.isfinite(float(line.split()[3]))


def test_shipped_configs_load_and_shared_data_is_named_when_missing(monkeypatch, tmp_path, capsys):
    from pipeline.config import load_config, named_configs

    assert {"default", "smoke", "flickr8k"} <= set(named_configs())
    for name in named_configs():
        load_config(name)
    monkeypatch.setenv("PIPELINE_SHARED_DIR", str(tmp_path / "nowhere"))
    assert main(["train", "--config", "flickr8k"]) == 2
    err = capsys.readouterr().err
    assert "shared dataset 'flickr8k' was not found" in err and "PIPELINE_SHARED_DIR" in err


def test_test_report_is_recorded_without_export(tiny_default_dataset, isolated_models_dir, tmp_path, capsys, caplog):
    """Also: output that is not a terminal (pytest's capture) gets one log line per epoch and
    no progress bar; the run folder holds every model's summary."""
    run_dir = tmp_path / "no-export"
    argv = [
        "train",
        "--config",
        "smoke",
        "--set",
        f"data.path={tiny_default_dataset}",
        "--set",
        "train.epochs=2",
        "--run-dir",
        str(run_dir),
        "--no-export",
    ]
    caplog.set_level("INFO", logger="pipeline.training.callbacks")
    assert main(argv) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert "text->image" in info["test"] and "exports" not in info
    printed = capsys.readouterr()
    assert (
        "\r" not in printed.out and "step" not in printed.out and "━" not in printed.out
    )  # Keras's bar and step lines
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss " in line and "dev rsum" in line for line in epoch_lines)
    summary = (run_dir / "model_summary.txt").read_text()
    for part in ('"text_encoder"', '"image_encoder"', '"audio_encoder"', '"fusion"', "Conv1D", "LSTM", "Dense"):
        assert part in summary, part


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def test_audio_phase_trains_audio_last_against_frozen_text_and_image(tiny_default_dataset, tmp_path):
    import keras

    from pipeline.config import load_config
    from pipeline.training.trainer import audio_parts, train

    class Snapshots(keras.callbacks.Callback):
        """The towers' weights when each phase (fit) begins and when each epoch ends."""

        def __init__(self):
            super().__init__()
            self.at_begin, self.at_end, self.scales, self.steps, self.audio_trained = [], {}, [], {}, []

        def snapshot(self):
            return {
                name: _weights(getattr(self.model, name)) for name in ("text_encoder", "image_encoder", "audio_encoder")
            }

        def on_train_begin(self, logs=None):
            self.at_begin.append(self.snapshot())
            self.scales.append(float(self.model.scale))
            trained = {id(v) for v in self.model.trainable_weights}
            self.audio_trained.append(any(id(v) in trained for part in audio_parts(self.model) for v in part.weights))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.steps[epoch] = epoch, 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps[self.epoch] += 1

        def on_epoch_end(self, epoch, logs=None):
            self.at_end[epoch] = self.snapshot()

    # smoke: batches of 8; the audio phase takes batches of 4, so twice the steps per epoch.
    config = load_config(
        "smoke",
        [f"data.path={tiny_default_dataset}", "train.epochs=3", "train.audio_epochs=1", "train.audio_batch_size=4"],
    )
    run_dir = tmp_path / "run"
    snapshots = Snapshots()
    result = train(config, run_dir=run_dir, extra_callbacks=[snapshots], evaluate_test=False, verbose=0)
    rows = (run_dir / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert [line.split(",")[0] for line in rows[1:]] == ["0", "1", "2"]
    assert len(snapshots.at_begin) == 2  # two phases, two fits
    audio_loss = [line.split(",")[header.index("loss_audio_image")] for line in rows[1:]]
    assert float(audio_loss[2]) > 0  # the audio pairs are trained in the last epoch
    items = json.loads((run_dir / "run.json").read_text())["data"]["train_items"]
    assert snapshots.steps == {0: items // 8, 1: items // 8, 2: items // 4}

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    text_image_phase, audio_phase = snapshots.at_begin[0], snapshots.at_begin[1]
    # Text-image phase: the audio encoder and its heads are not trained (not even handed to the
    # optimizer, which would warn of their missing gradients); the text and image towers are.
    assert snapshots.audio_trained == [False, True]
    assert same(text_image_phase["audio_encoder"], snapshots.at_end[1]["audio_encoder"])
    assert not same(text_image_phase["text_encoder"], snapshots.at_end[1]["text_encoder"])
    # Audio phase: the text and image towers are frozen; the audio encoder learns.
    for name in ("text_encoder", "image_encoder"):
        assert same(audio_phase[name], snapshots.at_end[2][name]), name
    assert not same(audio_phase["audio_encoder"], snapshots.at_end[2]["audio_encoder"])
    # The audio phase starts from the configured temperature again (1 / 0.07 by default).
    assert snapshots.scales[1] == pytest.approx(1 / config.train.temperature, rel=1e-5)
    assert result.model.text_encoder.trainable and result.model.image_encoder.trainable  # unfrozen after training


def test_resume_in_the_audio_phase_skips_the_finished_text_image_phase(tiny_default_dataset, tmp_path):
    from pipeline.config import load_config
    from pipeline.training.callbacks import StopAfterEpochs
    from pipeline.training.trainer import train

    config = load_config("smoke", [f"data.path={tiny_default_dataset}", "train.epochs=4", "train.audio_epochs=2"])
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # stops after epoch 3, the first audio epoch
        train(config, run_dir=run_dir, extra_callbacks=[StopAfterEpochs(3)], evaluate_test=False, verbose=0)
    assert (run_dir / "checkpoints" / "text-image.weights.h5").exists()
    result = train(config, run_dir=run_dir, evaluate_test=False, verbose=0)
    epochs = [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]  # only the last audio epoch ran after resuming
    assert len(result.history["loss"]) == 1


def test_audio_epochs_must_leave_epochs_for_text_and_images(capsys):
    from pipeline.cli import main

    assert main(["train", "--config", "smoke", "--set", "train.epochs=3", "--set", "train.audio_epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "train.audio_epochs (3) must be fewer than train.epochs (3)" in err and "--set train.audio_epochs=1" in err
    assert main(["train", "--config", "smoke", "--set", "train.audio_epochs=-1"]) == 2
    assert "train.audio_epochs must be 0 (off)" in capsys.readouterr().err
    assert main(["train", "--config", "smoke", "--set", "train.audio_batch_size=-8"]) == 2
    assert "train.audio_batch_size must be 0 (= train.batch_size)" in capsys.readouterr().err
    # Without audio there is no audio phase, so any number of epochs will do.
    from pipeline.config import load_config

    load_config(
        "default", ["data.modalities=text,image", "train.pairs=text-image", "train.epochs=5"]
    )  # validates, or raises


def test_a_model_without_text_trains_all_together_and_refuses_phases(tiny_default_dataset, tmp_path, capsys):
    # Without a pair that leaves audio out there is nothing to train before the audio phase.
    from pipeline.config import load_config
    from pipeline.training.trainer import train

    image_audio = [
        f"data.path={tiny_default_dataset}",
        "data.modalities=image,audio",
        "train.pairs=audio-image",
        "train.epochs=2",
    ]
    assert (
        main(
            [
                "train",
                "--config",
                "smoke",
                *[a for o in image_audio for a in ("--set", o)],
                "--set",
                "train.audio_epochs=1",
            ]
        )
        == 2
    )
    assert "has no pair without audio" in capsys.readouterr().err
    result = train(load_config("smoke", image_audio), run_dir=tmp_path / "run", evaluate_test=False, verbose=0)
    assert (
        len(result.history["loss"]) == 2 and result.model.image_encoder.trainable
    )  # the model has no text encoder to unfreeze
