"""TF Serving exports (``export``), checked the way the server would use them, and the REST
client (``query-serving``) against an emulation of the server's REST API."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline.cli import main
from pipeline.tf_serving.client import ServingClient
from tests.fake_tf_serving import FakeTFServing
from tests.helpers import tone, write_audio

pytestmark = pytest.mark.slow
MODELS = ("text_encoder", "image_encoder", "audio_encoder", "retriever")
K = 5


@pytest.fixture(scope="module")
def served(smoke_index, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    assert main(["export", "--index", str(smoke_index), "--out", str(root), "-k", str(K)]) == 0
    return root


@pytest.fixture(scope="module")
def encoder(smoke_run):
    from pipeline.inference import Encoder

    return Encoder.from_run(smoke_run)


def latest(root: Path, name: str) -> Path:
    return max((p for p in (root / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_layout_versions_and_models_config(served, smoke_index):
    for name in MODELS:
        assert (served / name / "1" / "saved_model.pb").is_file() and (served / name / "1" / "variables").is_dir(), name
    config = (served / "models.config").read_text()
    for name in MODELS:
        assert f'name: "{name}"' in config and f'base_path: "/models/{name}"' in config
    assert config.count("config {") == 4 and config.startswith("model_config_list {")
    before = {name: (served / name / "1" / "saved_model.pb").read_bytes() for name in MODELS}
    assert main(["export", "--index", str(smoke_index), "--out", str(served), "-k", str(K)]) == 0
    for name in MODELS:  # a new version beside the old, which is untouched
        assert sorted(p.name for p in (served / name).iterdir()) == ["1", "2"]
        assert (served / name / "1" / "saved_model.pb").read_bytes() == before[name]


def test_signatures_as_saved_model_cli_shows_them(served, encoder):
    from tensorflow.python.tools import saved_model_utils

    dim = encoder.config.embedding_dim
    expected = {
        "text_encoder": ({"text": [-1]}, {"embedding": (tf.float32, [-1, dim])}),
        "image_encoder": ({"image_bytes": [-1]}, {"embedding": (tf.float32, [-1, dim])}),
        "audio_encoder": ({"audio_bytes": [-1]}, {"embedding": (tf.float32, [-1, dim])}),
        "retriever": ({"text": [-1]}, {"item_ids": (tf.string, [-1, K]), "scores": (tf.float32, [-1, K])}),
    }
    for name, (inputs, outputs) in expected.items():
        meta_graph = saved_model_utils.get_meta_graph_def(str(latest(served, name)), "serve")
        signature = meta_graph.signature_def["serving_default"]
        got_inputs = {k: [d.size for d in v.tensor_shape.dim] for k, v in signature.inputs.items()}
        assert got_inputs == inputs, name
        assert all(v.dtype == tf.string.as_datatype_enum for v in signature.inputs.values()), name
        got_outputs = {
            k: (tf.as_dtype(v.dtype), [d.size for d in v.tensor_shape.dim]) for k, v in signature.outputs.items()
        }
        assert got_outputs == outputs, name
        # No op from a library the stock server lacks (tensorflow-io's are named "IO>...").
        ops = {node.op for node in meta_graph.graph_def.node}
        ops |= {node.op for function in meta_graph.graph_def.library.function for node in function.node_def}
        assert not [op for op in ops if op.startswith("IO>")], name


def test_exports_run_in_plain_tensorflow_as_the_server_calls_them(served, tiny_default_dataset, encoder, tmp_path):
    """A fresh process with TensorFlow alone (no tensorflow-io, no project code) loads every
    model and calls serving_default; the answers equal the in-process encoder's."""
    texts = ["a red circle above a blue square", "two green stars"]
    images = sorted((tiny_default_dataset / "images").glob("test-*.png"))[:2]
    clips = sorted((tiny_default_dataset / "audio").glob("test-*.wav"))[:2]
    slow_clip = write_audio(tmp_path / "8k.wav", tone(1.5, 8000, freq=300.0), 8000)  # resampled inside the model
    script = f"""
import json, sys
import tensorflow as tf
paths = {json.dumps({name: str(latest(served, name)) for name in MODELS})}
def call(name, values):
    model = tf.saved_model.load(paths[name])
    return {{k: v.numpy().tolist() if v.dtype != tf.string else [[x.decode() for x in row] for row in v.numpy()]
            for k, v in model.signatures["serving_default"](tf.constant(values)).items()}}
texts = {texts!r}
images = [open(p, "rb").read() for p in {[str(p) for p in images]!r}]
clips = [open(p, "rb").read() for p in {[str(p) for p in [*clips, slow_clip]]!r}]
out = {{"text": call("text_encoder", texts), "image": call("image_encoder", images), "audio": call("audio_encoder", clips),
        "retriever": call("retriever", texts), "tensorflow_io_loaded": "tensorflow_io" in sys.modules,
        "project_loaded": any(m.startswith("pipeline") for m in sys.modules)}}
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["tensorflow_io_loaded"] and not out["project_loaded"]
    np.testing.assert_allclose(out["text"]["embedding"], encoder.encode_text(texts), atol=1e-4)
    np.testing.assert_allclose(out["image"]["embedding"], encoder.encode_image(images), atol=1e-4)
    served_audio = np.asarray(out["audio"]["embedding"])
    np.testing.assert_allclose(
        served_audio[:2], encoder.encode_audio(clips), atol=1e-4
    )  # 16 kHz: decoded exactly alike
    # 8 kHz: the export resamples with resample_fft (tensorflow-io's resampler is not in the stock
    # server); the same steps in process give the same vector. (How close the two resamplers'
    # vectors are depends on the trained model: a cosine of 0.976 to 0.98+ was seen.)
    from pipeline.preprocessing import audio_ops

    a = encoder.input_config.audio
    samples, rate = audio_ops.decode_wav_core(tf.io.read_file(str(slow_clip)))
    spec = audio_ops.log_mel_spectrogram(
        audio_ops.fixed_clip(samples, rate, a.clip_seconds, a.sample_rate, resampler=audio_ops.resample_fft),
        a.sample_rate,
        a.n_mels,
        a.window,
        a.stride,
    )
    np.testing.assert_allclose(
        served_audio[2], encoder.model.audio_encoder(spec[None], training=False).numpy()[0], atol=1e-4
    )
    # The retriever ranks as a search of the index does, with the index's ranking.
    from pipeline.retrieval.searcher import Searcher

    searcher = Searcher.open("tiny")
    for text, ids, scores in zip(texts, out["retriever"]["item_ids"], out["retriever"]["scores"]):
        hits = searcher.search_text(text, k=K).hits
        assert ids == [h.item_id for h in hits]
        np.testing.assert_allclose(scores, [h.score for h in hits], atol=1e-4)


def test_rest_client_and_query_serving_command(served, smoke_index, tiny_default_dataset, encoder, tmp_path, capsys):
    from pipeline.retrieval.searcher import Searcher

    texts = ["a blue square", "one small red circle"]
    images = sorted((tiny_default_dataset / "images").glob("test-*.png"))[:2]
    wav = sorted((tiny_default_dataset / "audio").glob("test-*.wav"))[0]
    flac = tmp_path / "clip.flac"
    import soundfile

    samples, rate = soundfile.read(wav, dtype="float32")
    soundfile.write(flac, samples, rate, format="FLAC", subtype="PCM_16")
    fake = FakeTFServing(served)
    with fake as url:
        client = ServingClient(url)
        assert client.status("retriever")["model_version_status"][0]["state"] == "AVAILABLE"
        np.testing.assert_allclose(client.embed_text(texts), encoder.encode_text(texts), atol=1e-4)
        np.testing.assert_allclose(client.embed_images(images), encoder.encode_image(images), atol=1e-4)
        # FLAC is decoded by the client and sent as WAV; the model sees the same samples.
        np.testing.assert_allclose(client.embed_audio([flac]), encoder.encode_audio([wav]), atol=1e-4)
        expected = [h.item_id for h in Searcher.open(smoke_index).search_text(texts[0], k=K).hits]
        assert [i for i, _ in client.retrieve(texts)[0]] == expected
        pinned = ServingClient(url, version=1).retrieve(texts[:1])[0]
        assert [i for i, _ in pinned] == expected
        image_request = next(r for r in fake.requests if "image_encoder" in r["path"])
        assert all(set(instance) == {"b64"} for instance in image_request["body"]["instances"])  # bytes travel as b64

        capsys.readouterr()
        assert main(["query-serving", "--url", url, "--index", str(smoke_index), texts[0], "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert [h["item_id"] for h in answer["hits"]] == expected and all(h["caption"] for h in answer["hits"])
        assert (
            main(
                [
                    "query-serving",
                    "--url",
                    url,
                    "--index",
                    str(smoke_index),
                    "--image",
                    str(images[0]),
                    "-k",
                    "3",
                    "--json",
                ]
            )
            == 0
        )
        answer = json.loads(capsys.readouterr().out)
        assert len(answer["embedding"]) == encoder.config.embedding_dim and len(answer["hits"]) == 3
        assert main(["query-serving", "--url", url, "a red circle"]) == 0
        assert "retriever at" in capsys.readouterr().out
        # The server's own errors are passed on with its message.
        assert main(["query-serving", "--url", url, "--audio", str(images[0])]) == 2
        assert "cannot decode" in capsys.readouterr().err
    assert main(["query-serving", "--url", url, "a red circle"]) == 2  # server gone
    assert "cannot reach TF Serving" in capsys.readouterr().err
    assert main(["query-serving", "--url", url]) == 2
    assert "exactly one query" in capsys.readouterr().err


def test_export_refuses_what_would_not_match(served, smoke_index, smoke_run, tmp_path, capsys):
    import shutil

    other = tmp_path / "other-run"
    shutil.copytree(smoke_run, other)
    capsys.readouterr()
    assert main(["export", "--run", str(other), "--index", str(smoke_index), "--out", str(tmp_path / "out")]) == 2
    assert "was built by" in capsys.readouterr().err
    assert main(["export", "--index", str(smoke_index), "--out", str(tmp_path / "out"), "-k", "0"]) == 2
    assert "k must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def parity_queries(captions: list[str], count: int = 200, seed: int = 0) -> list[str]:
    """Queries of the index's words mixed with unknown words, punctuation-only queries (no word
    after tokenisation), non-ASCII text and long queries."""
    rng = np.random.default_rng(seed)
    words = sorted({w for c in captions for w in c.split()})
    odd = ["zebra", "Ωμέγα", "日本語", "café", "naïve", "don't", "RED!", "circle's", "🦓", "__", "ＲＥＤ"]
    queries = []
    for i in range(count):
        chosen = list(rng.choice(words + odd, size=rng.integers(1, 7)))
        if i % 25 == 0:
            chosen = ["?!", "...", "—"]
        elif i % 25 == 1:
            chosen = chosen * 40
        queries.append(" ".join(chosen))
    return queries


def test_the_retriever_ranks_as_search_does_for_every_ranking(smoke_index, encoder, tmp_path):
    """200 queries through retrievers with each ranking (dense, nb, weighted, rrf), loaded by
    TensorFlow alone: the ids of ``Searcher.search_text`` on that index, in its order, with
    its scores."""
    from pipeline.retrieval.hybrid import FUSIONS
    from pipeline.retrieval.searcher import Searcher
    from pipeline.tf_serving.export import retriever_archive

    searcher = Searcher.open(smoke_index)
    index = searcher.index
    queries = parity_queries(index.metadata["caption"].tolist())
    weight = 0.3
    folders = {}
    for ranking in FUSIONS:
        archive = retriever_archive(
            encoder.model,
            encoder.vectorizer,
            index.vectors,
            index.metadata["item_id"].tolist(),
            K,
            index.naive_bayes,
            ranking,
            weight,
        )
        folders[ranking] = str(tmp_path / ranking)
        archive.write_out(folders[ranking], verbose=False)
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    script = f"""
import json, sys
import tensorflow as tf
queries = json.load(open("queries.json"))
out = {{}}
for ranking, folder in {folders!r}.items():
    answer = tf.saved_model.load(folder).signatures["serving_default"](tf.constant(queries))
    out[ranking] = {{"ids": [[x.decode() for x in row] for row in answer["item_ids"].numpy()], "scores": answer["scores"].numpy().tolist()}}
out["project_loaded"] = any(m.startswith("pipeline") for m in sys.modules)
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert not served["project_loaded"]
    from tensorflow.python.tools import saved_model_utils

    meta_graph = saved_model_utils.get_meta_graph_def(folders["weighted"], "serve")
    ops = {node.op for function in meta_graph.graph_def.library.function for node in function.node_def}
    # The words are split and scored in the graph (constant patterns give StaticRegexReplace).
    assert {"StaticRegexReplace", "SparseTensorDenseMatMul"} <= ops and not [op for op in ops if op.startswith("IO>")]
    for ranking in FUSIONS:
        for i, query in enumerate(queries):
            hits = searcher.search_text(query, k=K, ranking=ranking, weight=weight).hits
            assert served[ranking]["ids"][i] == [h.item_id for h in hits], (ranking, query)
            np.testing.assert_allclose(served[ranking]["scores"][i], [h.score for h in hits], atol=1e-4, rtol=0)


def test_the_retriever_keeps_ids_that_are_not_ascii(encoder, tmp_path):
    from pipeline.tf_serving.export import retriever_archive

    vectors = encoder.encode_text(["a red circle", "a blue square"])
    archive = retriever_archive(encoder.model, encoder.vectorizer, vectors, ["café-1", "日本-2"], k=2)
    archive.write_out(str(tmp_path / "retriever"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "retriever")).signatures["serving_default"](
        tf.constant(["a red circle"])
    )
    assert [i.decode("utf-8") for i in served["item_ids"].numpy()[0]] == [
        "café-1",
        "日本-2",
    ]  # the query's own vector first
