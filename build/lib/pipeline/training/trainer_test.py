"""The training steps one at a time, on the tiny default dataset and the smoke config."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import load_config
from pipeline.records import RunRecord
from pipeline.training import trainer


@pytest.fixture(scope="module")
def config(tiny_default_dataset):
    return load_config("smoke", [f"data.path={tiny_default_dataset}", "train.epochs=1", "train.aux_frame_words=0"])


@pytest.fixture(scope="module")
def prepared(config):
    return trainer.prepare_data(config)


def test_prepare_data_selects_the_splits_and_reads_the_training_captions(config, prepared):
    frame = prepared.manifest.frame
    # One row per item (the manifest has one per caption): the fixture builds 40 training scenes.
    assert len(prepared.train_items.frame) == frame.loc[frame["split"] == "train", "item_id"].nunique() == 40
    assert len(prepared.dev_items.frame) == min(16, config.train.dev_items)
    # Every vocabulary word (past the padding and OOV entries) comes from a training caption.
    training_words = {w for texts in prepared.train_items.frame["text"] for t in texts for w in t.lower().split()}
    assert set(prepared.vocabulary[2:]) <= {w.strip(".,") for w in training_words}
    assert prepared.embedding_matrix is None  # the smoke config has no GloVe
    assert prepared.input_config.batch_size == config.train.batch_size


def test_build_model_gives_every_configured_tower(config, prepared):
    model, features = trainer.build_model(config, prepared, tf.distribute.get_strategy())
    assert features is None  # the smoke image CNN trains from pixels: nothing cached
    for name in ("text_encoder", "image_encoder", "audio_encoder"):
        assert hasattr(model, name)
    tokens = prepared.vectorizer(tf.constant(["a red circle"]))
    vector = model.text_encoder(tokens).numpy()
    assert vector.shape == (1, config.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(vector, axis=1), 1.0, rtol=1e-5)


def test_run_phases_then_write_run(config, prepared, tmp_path):
    strategy = tf.distribute.get_strategy()
    model, features = trainer.build_model(config, prepared, strategy)
    history = trainer.run_phases(model, config, prepared, tmp_path, strategy, features)
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    assert (tmp_path / "checkpoints" / "best.weights.h5").is_file()
    record = trainer.write_run(model, config, prepared, tmp_path, history, 1.0, features, evaluate_test=False)
    assert json.loads((tmp_path / "run.json").read_text())["dev"]["rsum"] == pytest.approx(record.dev.rsum)
    assert RunRecord.read(tmp_path) == record
    assert record.epochs_run == 1 and record.test is None
    assert (tmp_path / "model.weights.h5").is_file()


def test_training_does_not_import_serving():
    code = (
        "import sys, pipeline.training.trainer, pipeline.tuning.tuner; "
        "print(sorted(m for m in sys.modules if m.startswith(('pipeline.tf_serving', 'pipeline.search_service'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
