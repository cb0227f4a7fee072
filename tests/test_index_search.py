"""The index and search commands, driven through main(argv) on the tiny default dataset."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.retrieval.index_store import SearchIndex
from pipeline.retrieval.searcher import QueryError, Searcher
from tests.helpers import corrupt, write_flickr8k_folder, write_image

pytestmark = pytest.mark.slow


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def search_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_index_folder_holds_vectors_metadata_and_the_lexical_model(smoke_index, tiny_default_dataset):
    info = json.loads((smoke_index / "index.json").read_text())
    index = SearchIndex.open(smoke_index)
    manifest = pd.read_csv(tiny_default_dataset / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(index) == manifest["item_id"].nunique() == info["items"]
    assert index.vectors.shape == (len(index), info["dim"])
    np.testing.assert_allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-4)
    assert isinstance(index.vectors, np.memmap)
    assert set(index.metadata.columns) >= {"item_id", "modality", "split", "label", "path", "caption"}
    assert set(index.metadata["split"]) == {"train", "dev", "test"}
    # Every scene has a picture; those with spoken captions are fused image+audio items.
    assert set(index.metadata["modality"]) <= {"image", "image+audio"} and "image+audio" in set(
        index.metadata["modality"]
    )
    assert index.naive_bayes.items == len(index)
    assert not any(p.suffix == ".pkl" for p in smoke_index.iterdir())
    assert not Path(info["model"]["run"]).is_absolute()  # named relative to saved_models/runs


def test_an_index_still_works_after_the_models_folder_moves(
    smoke_index, isolated_models_dir, tmp_path, monkeypatch, capsys
):
    moved = tmp_path / "moved"
    shutil.copytree(isolated_models_dir / "runs", moved / "runs", symlinks=True)
    shutil.copytree(smoke_index, moved / "index" / "tiny")
    expected = search_json(capsys, "--index", "tiny", "a blue square", "-k", "3")
    monkeypatch.setenv("PIPELINE_MODELS_DIR", str(moved))
    assert search_json(capsys, "--index", "tiny", "a blue square", "-k", "3") == expected
    assert Searcher.open("tiny").encoder.run_dir.is_relative_to(moved.resolve())  # the moved run, not the original


def test_text_search_ranks_by_the_dense_score_like_numpy(smoke_index, smoke_run, capsys):
    from pipeline.inference import Encoder

    query = "a red circle above a blue square"
    out = search_json(capsys, "--index", "tiny", query, "-k", "5", "--ranking", "dense")
    index = SearchIndex.open(smoke_index)
    expected = index.vectors @ Encoder.from_run(smoke_run).encode_text([query])[0]
    top = np.argsort(-expected, kind="stable")[:5]
    assert [h["item_id"] for h in out["hits"]] == index.metadata["item_id"].iloc[top].tolist()
    np.testing.assert_allclose([h["dense_score"] for h in out["hits"]], expected[top], atol=1e-4)
    # The dense ranking never reads the Naive Bayes stage (issue 33): no NB score, no NB words.
    assert all(h["nb_log_proba"] is None and h["nb_words"] == [] for h in out["hits"])
    weighted = search_json(capsys, "--index", "tiny", query, "-k", "5", "--ranking", "weighted")
    assert all(
        h["nb_words"] and h["nb_words"][0][0] in query.split() for h in weighted["hits"]
    )  # why: the words that weighed


def test_a_batch_of_text_queries_answers_each_as_alone(smoke_index):
    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.retrieval.searcher import TextQuery

    searcher = Searcher.open(smoke_index)
    queries = [
        TextQuery("a red circle", 3),
        TextQuery("  "),
        TextQuery("zebra giraffe", 4, ranking="weighted"),
        TextQuery("a blue square above a star", 5, {"split": "test"}, "nb"),
        TextQuery("a red circle", 2, {"colour": "red"}),
    ]
    results = searcher.search_texts(queries)
    assert isinstance(results[1], QueryError) and isinstance(
        results[4], IndexProblem
    )  # each error stays with its query
    for query, result in zip(queries, results):
        if not isinstance(result, Exception):
            alone = searcher.search_text(query.query, query.k, query.filters, query.ranking)
            assert result.to_dict() == alone.to_dict()
    assert results[2].ranking == "dense" and any("only its prior" in n for n in results[2].notes)


def test_hybrid_rankings_fuse_the_dense_and_nb_scores(smoke_index, capsys):
    from pipeline.retrieval.hybrid import fuse

    query = "a green triangle"
    every = search_json(capsys, "--index", "tiny", query, "-k", "200", "--ranking", "nb")  # both scores of each
    hits = {h["item_id"]: h for h in every["hits"]}
    row = {item: i for i, item in enumerate(SearchIndex.open(smoke_index).metadata["item_id"])}
    ids = sorted(hits, key=row.get)  # the searcher's candidate order (ties in a ranking go to the lower row)
    d = np.array([[hits[i]["dense_score"] for i in ids]])
    n = np.array([[hits[i]["nb_log_proba"] for i in ids]])
    for ranking in ("weighted", "rrf"):
        fused = search_json(capsys, "--index", "tiny", query, "-k", "3", "--ranking", ranking, "--weight", "0.7")
        expected = [ids[j] for j in np.argsort(-fuse(d, n, ranking, 0.7)[0], kind="stable")[:3]]
        assert [h["item_id"] for h in fused["hits"]] == expected, ranking
    nb_only = search_json(capsys, "--index", "tiny", query, "-k", "1", "--ranking", "nb")
    assert nb_only["hits"][0]["nb_log_proba"] == pytest.approx(max(n[0]), abs=1e-4)


def test_filters_on_metadata(smoke_index, capsys):
    audio = search_json(capsys, "--index", "tiny", "a circle", "-k", "50", "--where", "modality=audio")
    assert audio["hits"] and all("audio" in h["modality"].split("+") for h in audio["hits"])
    dev = search_json(capsys, "--index", "tiny", "a circle", "-k", "50", "--where", "split=dev")
    assert len(dev["hits"]) == 16
    capsys.readouterr()
    assert main(["search", "--index", "tiny", "a circle", "--where", "colour=red"]) == 2
    assert "cannot filter on 'colour'" in capsys.readouterr().err


def test_image_query_ranks_by_cosine_like_numpy(smoke_index, smoke_run, tiny_default_dataset, capsys):
    from pipeline.inference import Encoder

    index = SearchIndex.open(smoke_index)
    image = tiny_default_dataset / index.metadata["path"].iloc[0]
    out = search_json(capsys, "--index", "tiny", "--image", str(image), "-k", "3", "--where", "split=test")
    assert out["ranking"] == "dense" and any("dense score" in n for n in out["notes"])
    expected = index.vectors @ Encoder.from_run(smoke_run).encode_image([image])[0]
    expected[(index.metadata["split"] != "test").to_numpy()] = -np.inf
    top = np.argsort(-expected, kind="stable")[:3]
    assert [h["item_id"] for h in out["hits"]] == index.metadata["item_id"].iloc[top].tolist()


def test_add_and_remove_without_rebuilding(smoke_index, smoke_run, tmp_path, capsys):
    shutil.copytree(smoke_index, tmp_path / "copy")
    before = SearchIndex.open(tmp_path / "copy")
    n = len(before)
    extra = write_flickr8k_folder(
        tmp_path / "extra",
        {
            "test": {
                "zebra.jpg": ((240, 240, 240), ["a zebra crossing a river"]),
                "kite.jpg": ((20, 200, 20), ["a kite"]),
            }
        },
    )
    assert main(["index", "add", "--name", str(tmp_path / "copy"), "--data", str(extra)]) == 0
    after = SearchIndex.open(tmp_path / "copy")
    assert len(after) == n + 2 and after.naive_bayes.items == n + 2
    np.testing.assert_array_equal(np.asarray(after.vectors[:n]), np.asarray(before.vectors))  # old rows untouched
    assert "zebra" in after.naive_bayes.word_index  # a word new to the index's vocabulary
    out = search_json(capsys, "--index", str(tmp_path / "copy"), "zebra", "-k", "1", "--ranking", "nb")
    assert out["hits"][0]["item_id"] == "zebra"

    removed = after.metadata["item_id"].iloc[:3].tolist()
    assert main(["index", "remove", "--name", str(tmp_path / "copy"), *removed]) == 0
    final = SearchIndex.open(tmp_path / "copy")
    assert len(final) == n - 1 and not set(removed) & set(final.metadata["item_id"])
    out = search_json(capsys, "--index", str(tmp_path / "copy"), "a circle", "-k", "500")
    assert not set(removed) & {h["item_id"] for h in out["hits"]}
    capsys.readouterr()
    assert main(["index", "remove", "--name", str(tmp_path / "copy"), "no-such-item"]) == 2
    assert "has no item(s) no-such-item" in capsys.readouterr().err
    assert len(SearchIndex.open(tmp_path / "copy")) == n - 1
    assert main(["index", "info", "--name", str(tmp_path / "copy")]) == 0
    assert "2 change file(s) since the base" in capsys.readouterr().out
    assert main(["index", "compact", "--name", str(tmp_path / "copy")]) == 0
    assert "2 change file(s) folded into a new base" in capsys.readouterr().out
    compacted = SearchIndex.open(tmp_path / "copy")
    assert len(compacted) == compacted.rows == n - 1 and not (tmp_path / "copy" / "changes.json").exists()
    again = search_json(capsys, "--index", str(tmp_path / "copy"), "a circle", "-k", "500")
    assert [(h["item_id"], round(h["score"], 6)) for h in again["hits"]] == [
        (h["item_id"], round(h["score"], 6)) for h in out["hits"]
    ]  # a compaction changes no ranking


def test_feedback_teaches_the_nb_stage_online(smoke_index, tmp_path):
    shutil.copytree(smoke_index, tmp_path / "fb")
    index = SearchIndex.open(tmp_path / "fb")
    target = index.metadata["item_id"].iloc[7]
    before = index.naive_bayes.log_proba(["circle"])[0][7]
    index.feedback(["circle circle circle"], [target])
    reopened = SearchIndex.open(tmp_path / "fb")  # saved
    assert reopened.naive_bayes.log_proba(["circle"])[0][7] > before
    with pytest.raises(ValueError, match="no item"):
        reopened.feedback(["x"], ["nope"])


def test_interrupted_build_leaves_the_old_index_searchable(
    smoke_index, smoke_run, tiny_default_dataset, tmp_path, monkeypatch, capsys
):
    shutil.copytree(smoke_index, tmp_path / "idx")
    digest = folder_digest(tmp_path / "idx")
    expected = search_json(capsys, "--index", str(tmp_path / "idx"), "a blue square", "-k", "5")

    from pipeline.retrieval import naive_bayes

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed halfway through writing")

    monkeypatch.setattr(naive_bayes.NaiveBayesScorer, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        main(
            [
                "index",
                "--run",
                str(smoke_run),
                "--data",
                str(tiny_default_dataset),
                "--name",
                str(tmp_path / "idx"),
                "--kind",
                "hnsw",
            ]
        )
    monkeypatch.undo()
    assert folder_digest(tmp_path / "idx") == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no half-written folder left
    assert search_json(capsys, "--index", str(tmp_path / "idx"), "a blue square", "-k", "5") == expected

    # Killed between the two renames of the swap: the previous version is restored on open.
    (tmp_path / "idx").rename(tmp_path / ".idx.old")
    assert search_json(capsys, "--index", str(tmp_path / "idx"), "a blue square", "-k", "5") == expected


def test_a_build_process_killed_halfway_leaves_the_old_index(
    smoke_index, smoke_run, tiny_default_dataset, tmp_path, capsys
):
    import os
    import signal
    import subprocess
    import sys
    import time

    shutil.copytree(smoke_index, tmp_path / "idx")
    digest = folder_digest(tmp_path / "idx")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    # A real process, slowed down after it wrote part of the new version (a large index takes
    # minutes there), killed with SIGKILL: no exception handler or finally clause runs.
    script = (
        "import sys, time\n"
        "from pipeline.retrieval import naive_bayes\n"
        "save = naive_bayes.NaiveBayesScorer.save\n"
        "def slow(self, path):\n"
        "    save(self, path)\n"
        "    time.sleep(600)\n"
        "naive_bayes.NaiveBayesScorer.save = slow\n"
        "from pipeline.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [
        "index",
        "--run",
        str(smoke_run),
        "--data",
        str(tiny_default_dataset),
        "--name",
        str(tmp_path / "idx"),
        "--ranking",
        "dense",
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not list(tmp_path.glob(".idx.*.tmp/lexical.npz")):
        time.sleep(0.05)  # until part of the new version is on disk
    assert process.poll() is None, "the build finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert folder_digest(tmp_path / "idx") == digest
    out = search_json(capsys, "--index", str(tmp_path / "idx"), "a blue square", "-k", "3")
    assert len(out["hits"]) == 3
    # The dead build's half-written folder is cleared by the next change of that index.
    assert list(tmp_path.glob(".idx.*.tmp"))
    assert main(["index", "remove", "--name", str(tmp_path / "idx"), out["hits"][0]["item_id"]]) == 0
    assert not list(tmp_path.glob(".idx.*.tmp"))


def test_an_item_vector_fuses_its_words_image_and_sound_and_withheld_words_stay_out(
    smoke_index, smoke_run, tiny_default_dataset, tmp_path
):
    """An indexed item is fusion(mean of its captions' vectors, image, audio), worked out with
    NumPy (the default strategy, average: the normalised mean of the parts). With
    --withhold-captions, its words stay out."""
    from pipeline.inference import Encoder

    encoder = Encoder.from_run(smoke_run)
    index = SearchIndex.open(smoke_index)
    manifest = pd.read_csv(tiny_default_dataset / "manifest.csv", dtype=str, keep_default_na=False)
    row = int(np.flatnonzero(index.metadata["modality"] == "image+audio")[0])
    item_id = index.metadata["item_id"].iloc[row]
    rows = manifest[manifest["item_id"] == item_id]
    words = encoder.encode_text(rows["text"].tolist()).mean(axis=0)
    parts = {
        "text": words / np.linalg.norm(words),
        "image": encoder.encode_image([str(tiny_default_dataset / rows["image"].iloc[0])])[0],
        "audio": encoder.encode_audio([str(tiny_default_dataset / p) for p in rows["audio"] if p][:1])[0],
    }
    assert encoder.model.fused == ("text", "image", "audio") and encoder.config.fusion.strategy == "average"

    def weighted(names):
        fused = sum(parts[n] for n in names) / len(names)
        return fused / np.linalg.norm(fused)

    np.testing.assert_allclose(index.vectors[row], weighted(["text", "image", "audio"]), atol=1e-4)
    assert (
        main(
            [
                "index",
                "--run",
                str(smoke_run),
                "--data",
                str(tiny_default_dataset),
                "--name",
                str(tmp_path / "withheld"),
                "--ranking",
                "dense",
                "--withhold-captions",
            ]
        )
        == 0
    )
    withheld = SearchIndex.open(tmp_path / "withheld")
    np.testing.assert_allclose(withheld.vectors[withheld.row_of[item_id]], weighted(["image", "audio"]), atol=1e-4)


def test_items_without_text_get_predicted_words(smoke_run, tiny_default_dataset, tmp_path, capsys):
    assert (
        main(
            [
                "index",
                "--run",
                str(smoke_run),
                "--data",
                str(tiny_default_dataset),
                "--name",
                str(tmp_path / "pics"),
                "--split",
                "test",
                "--withhold-captions",
            ]
        )
        == 0
    )
    index = SearchIndex.open(tmp_path / "pics")
    assert (index.metadata["words_from"] == "predicted").all()
    counts, _ = index.naive_bayes.state()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    np.testing.assert_allclose(totals, 10.0, rtol=1e-5)  # ten predicted words' worth per photo
    assert index.word_head is not None
    out = search_json(capsys, "--index", str(tmp_path / "pics"), "a red circle", "-k", "3", "--ranking", "nb")
    assert out["hits"] and out["hits"][0]["nb_log_proba"] is not None


def test_bad_queries_get_clear_messages_and_change_nothing(smoke_index, smoke_run, tmp_path, capsys):
    digest = folder_digest(smoke_index)

    def error(*args):
        capsys.readouterr()
        assert main(["search", "--index", "tiny", *args]) == 2
        return capsys.readouterr().err

    assert "the query is empty" in error("   ")
    assert "give exactly one query" in error()
    broken = corrupt(write_image(tmp_path / "broken.png"))
    message = error("--image", str(broken))
    assert str(broken) in message and "cannot be decoded as image" in message
    assert "no such file" in error("--audio", str(tmp_path / "missing.wav"))
    assert "no index 'nope'" in main_err(capsys, ["search", "--index", "nope", "dog"])

    out = search_json(capsys, "--index", "tiny", "xylophone quasar", "-k", "3")
    assert out["hits"] and any("Naive Bayes stage has only its prior" in n for n in out["notes"])
    assert any("xylophone" in n for n in out["notes"])

    searcher = Searcher.open("tiny")
    with pytest.raises(QueryError, match=f"must have {searcher.index.dim} values"):
        searcher.search_vector(np.ones(searcher.index.dim + 1, "float32"))
    hits = searcher.search_vector(searcher.index.vectors[4]).hits
    assert hits[0].item_id == searcher.index.metadata["item_id"].iloc[4]
    assert folder_digest(smoke_index) == digest


def main_err(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_an_index_from_a_changed_model_is_refused(smoke_run, tiny_default_dataset, tmp_path, capsys):
    run = shutil.copytree(smoke_run, tmp_path / "run")
    assert (
        main(
            [
                "index",
                "--run",
                str(run),
                "--data",
                str(tiny_default_dataset),
                "--name",
                str(tmp_path / "old"),
                "--split",
                "dev",
            ]
        )
        == 0
    )
    digest = folder_digest(tmp_path / "old")
    import h5py

    with h5py.File(
        run / "model.weights.h5", "r+"
    ) as weights:  # retrained, say: other weights under the same run folder

        def bump(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and obj.size > 1:
                obj[...] = obj[...] + 0.01

        weights.visititems(bump)
    message = main_err(capsys, ["search", "--index", str(tmp_path / "old"), "a circle"])
    assert "weights have changed" in message and "Rebuild it" in message
    extra = write_flickr8k_folder(tmp_path / "extra", {"test": {"x.jpg": ((1, 2, 3), ["a thing"])}})
    assert "weights have changed" in main_err(
        capsys, ["index", "add", "--name", str(tmp_path / "old"), "--data", str(extra)]
    )
    assert folder_digest(tmp_path / "old") == digest
