"""A fourth modality defined here alone: nothing under pipeline/ names it.

``vector`` items are ``.npy`` files of 8 floats (a stand-in for a sensor reading or a depth
summary) with a small Dense encoder. Registered, it goes through the real CLI end to end: the
folder adapter finds its files, ``data describe`` checks them, ``train`` learns text↔vector,
the run's test report has both directions, ``index`` embeds the files and ``search`` finds
them by words and by a file.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.cli import main
from pipeline.modalities import Modality, modality, register_modality, unregister_modality
from pipeline.models.layers import L2Normalize
from pipeline.preprocessing.media_check import MediaRejected

pytestmark = pytest.mark.slow
WIDTH = 8
NPY_MAGIC = b"\x93NUMPY"
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "star")


class VectorModality(Modality):
    """``.npy`` files holding float32 [8]."""

    name = "vector"
    extensions = (".npy",)
    media_types = ("application/x-npy",)
    formats = "NumPy .npy (8 float32)"
    noun = "a vector file"

    def sniff(self, header):
        return "npy" if bytes(header).startswith(NPY_MAGIC) else None

    def check(self, data, limits):
        if not bytes(data).startswith(NPY_MAGIC) or len(data) < 10:
            raise MediaRejected("not a .npy file", unsupported=True)
        return None

    def decode(self, data, input_config, training):
        # .npy: magic (6 bytes), version (2), header length (uint16, little-endian), header, then the values.
        header_length = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 8, 2), tf.uint16)[0], tf.int32)
        start = 10 + header_length
        values = tf.io.decode_raw(tf.strings.substr(data, start, tf.strings.length(data) - start), tf.float32)
        return tf.ensure_shape(tf.reshape(values, [WIDTH]), [WIDTH])

    def input_spec(self, input_config):
        return tf.TensorSpec([WIDTH], tf.float32)

    def build_encoder(self, config, dim, context):
        inputs = keras.Input((WIDTH,), name="vector")
        hidden = keras.layers.Dense(32, activation="relu", name="vector_hidden")(inputs)
        out = L2Normalize(name="vector_l2")(keras.layers.Dense(dim, name="vector_projection")(hidden))
        return keras.Model(inputs, out, name="vector_encoder")

    def dummy_input(self, config, context, batch):
        return np.zeros((batch, WIDTH), "float32")


@pytest.fixture()
def vector_modality():
    registered = register_modality(VectorModality())
    yield registered
    unregister_modality("vector")


def write_dataset(root):
    """60 items, 5 per (colour, shape): each item's vector is its concept's direction plus
    noise; its caption names the concept. Folders set the split (train 3, dev 1, test 1 each)."""
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(len(COLOURS) * len(SHAPES), WIDTH)).astype("float32")
    for c, colour in enumerate(COLOURS):
        for s, shape in enumerate(SHAPES):
            for take, split in enumerate(("train", "train", "train", "dev", "test")):
                folder = root / split
                folder.mkdir(parents=True, exist_ok=True)
                stem = f"{colour}-{shape}-{take}"
                noise = 0.1 * rng.normal(size=WIDTH).astype("float32")
                np.save(folder / f"{stem}.npy", (directions[c * len(SHAPES) + s] + noise).astype("float32"))
                (folder / f"{stem}.txt").write_text(f"a {colour} {shape}\nthe {shape} that is {colour}\n")


def test_a_modality_defined_outside_the_package_trains_evaluates_indexes_and_is_searched(
    vector_modality, tmp_path, isolated_models_dir, capsys
):
    assert modality("vector") is vector_modality
    data = tmp_path / "vectors"
    write_dataset(data)
    assert main(["data", "describe", str(data)]) == 0
    described = capsys.readouterr().out
    assert "problems: none" in described
    header = next(line for line in described.splitlines() if line.strip().startswith("rows"))
    assert header.split() == ["rows", "items", "captions", "images", "audio", "vectors", "labelled"]
    total = next(line for line in described.splitlines() if line.startswith("total")).split()
    assert total[1:] == ["120", "60", "120", "0", "0", "60", "0"]  # 60 files, two captions each

    settings = ["data.modalities=text,vector", "train.pairs=text-vector", "train.epochs=25", "train.dev_items=64"]
    overrides = [arg for setting in [f"data.path={data}", *settings] for arg in ("--set", setting)]
    run_dir = tmp_path / "run"
    assert main(["train", "--config", "smoke", *overrides, "--run-dir", str(run_dir), "--quiet", "--no-export"]) == 0
    capsys.readouterr()
    report = json.loads((run_dir / "eval" / "test.json").read_text())
    # 12 test items, one per concept, two captions each: chance R@1 is 1/12 (8.3%).
    assert report["text->vector"]["R@1"] > 50 and report["vector->text"]["R@1"] > 50, report

    assert main(["index", "--run", str(run_dir), "--data", str(data), "--name", "vectors"]) == 0
    capsys.readouterr()
    assert main(["search", "--index", "vectors", "a blue star", "-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["modality"] for h in hits] == ["vector"] * 5
    assert sum("blue-star" in h["item_id"] for h in hits) >= 3 and hits[0]["vector_path"].endswith(".npy")

    query = data / "test" / "green-circle-4.npy"
    assert main(["search", "--index", "vectors", "--vector", str(query), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["item_id"] == "test/green-circle-4"
