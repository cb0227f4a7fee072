"""``python -m pipeline embed`` (Apache Beam, the DirectRunner's FnApiRunner) and ``index
--from-embeddings``: the same vectors and the same search results as the in-process index,
dead letters for files that cannot be decoded."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.batch_embed.shards import EmbeddingShards
from pipeline.cli import main
from pipeline.retrieval.index_store import SearchIndex
from pipeline.retrieval.searcher import Searcher
from tests.helpers import truncate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(smoke_run, tiny_default_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("beam") / "vectors"
    code = main(
        [
            "embed",
            "--run",
            str(smoke_run),
            "--data",
            str(tiny_default_dataset),
            "--out",
            str(out),
            "--direct_num_workers",
            "2",
        ]
    )
    assert code == 0
    return out


def test_two_workers_give_the_in_process_vectors(embedded, smoke_run, tiny_default_dataset):
    from pipeline.data.adapters import load_dataset
    from pipeline.inference import Encoder
    from pipeline.retrieval.index_builder import embed_items

    shards = EmbeddingShards.open(embedded)
    assert len(shards.record.shards) >= 1 and shards.record.counts["files_failed"] == 0
    beam = shards.embedded_items(keep_captions_of=("train", "dev", "test"))
    local = embed_items(Encoder.from_run(smoke_run), load_dataset(tiny_default_dataset))
    assert beam.metadata["item_id"].tolist() == local.metadata["item_id"].tolist()  # the input's order
    pd.testing.assert_frame_equal(beam.metadata.astype(str), local.metadata.astype(str))
    assert set(local.metadata["modality"]) >= {"image+audio"}  # the fusion of several files is exercised
    cosine = np.sum(beam.vectors * local.vectors, axis=1)  # unit vectors
    assert cosine.min() >= 0.9999
    assert np.sum(beam.content_vectors * local.content_vectors, axis=1).min() >= 0.9999
    assert beam.captions == local.captions
    np.testing.assert_allclose(beam.caption_vectors, local.caption_vectors, atol=1e-5)


def test_an_index_from_the_shards_answers_like_the_in_process_index(
    embedded, smoke_run, tiny_default_dataset, tmp_path, capsys
):
    assert main(["index", "--from-embeddings", str(embedded), "--name", str(tmp_path / "beam")]) == 0
    assert (
        main(["index", "--run", str(smoke_run), "--data", str(tiny_default_dataset), "--name", str(tmp_path / "local")])
        == 0
    )
    beam, local = Searcher.open(tmp_path / "beam"), Searcher.open(tmp_path / "local")
    assert beam.index.record.ranking.method == local.index.record.ranking.method
    captions = pd.read_csv(tiny_default_dataset / "manifest.csv")["text"].dropna().unique().tolist()
    queries = captions[:50]
    assert len(queries) == 50
    for query in queries:
        ids = [[h.item_id for h in s.search_text(query, k=10).hits] for s in (beam, local)]
        assert ids[0] == ids[1], query
    capsys.readouterr()
    assert main(["index", "--from-embeddings", str(tmp_path / "nothing"), "--name", "x"]) == 2
    assert "holds no embeddings.json" in capsys.readouterr().err
    assert main(["index", "--from-embeddings", str(embedded), "--split", "dev", "--name", "x"]) == 2
    assert "cannot go with --from-embeddings" in capsys.readouterr().err


def test_undecodable_files_go_to_the_dead_letters_and_the_rest_is_embedded(smoke_run, tiny_default_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_default_dataset, data)
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    bad_image = data / manifest.loc[manifest["image"] != "", "image"].iloc[0]
    bad_audio = data / manifest.loc[manifest["audio"] != "", "audio"].iloc[3]
    bad_image.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # a JPEG header and nothing of an image
    truncate(bad_audio, keep=0.02)
    out = tmp_path / "vectors"
    assert main(["embed", "--run", str(smoke_run), "--data", str(data), "--out", str(out)]) == 0
    shards = EmbeddingShards.open(out)
    letters = [json.loads(line) for name in shards.record.errors for line in (out / name).read_text().splitlines()]
    assert sorted(letter["path"] for letter in letters) == sorted([str(bad_image), str(bad_audio)])
    assert all(letter["item"] and letter["error"] for letter in letters)
    assert shards.record.counts["files_failed"] == 2
    items = shards.embedded_items()
    assert len(items.metadata) == manifest["item_id"].nunique()  # every item: each still has its captions
    owner = {letter["path"]: letter["item"] for letter in letters}
    by_id = items.metadata.set_index("item_id")
    assert "image" not in by_id.loc[owner[str(bad_image)], "modality"].split("+")
    assert "audio" not in by_id.loc[owner[str(bad_audio)], "modality"].split("+")
    # The folder holds a result now: a second run must not mix its shards with these.
    assert main(["embed", "--run", str(smoke_run), "--data", str(data), "--out", str(out)]) == 2


def test_an_index_of_kind_milvus_from_the_shards(embedded, tmp_path):
    assert main(["index", "--from-embeddings", str(embedded), "--name", str(tmp_path / "m"), "--kind", "milvus"]) == 0
    index = SearchIndex.open(tmp_path / "m")
    scores, rows = index.backend.search(np.asarray(index.vectors[:5]), 1)
    np.testing.assert_array_equal(rows[:, 0], np.arange(5))  # each item is its own nearest


def test_bad_embed_arguments_get_clear_errors(smoke_run, tmp_path, capsys):
    base = ["embed", "--run", str(smoke_run), "--out", str(tmp_path / "out")]
    assert main([*base, "--data", str(tmp_path / "none" / "*.wav")]) == 2
    assert "no file matches" in capsys.readouterr().err
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    assert main([*base, "--data", str(tmp_path / "*.wav"), "--runner", "NoSuchRunner"]) == 2
    assert "Unexpected pipeline runner: NoSuchRunner" in capsys.readouterr().err
    assert main([*base, "--data", str(tmp_path / "*.wav"), "--modalities", "smell"]) == 2
    assert "has no encoder for smell" in capsys.readouterr().err
