"""Hostile input against the search service and the CLI (issue 20): each row of the probe that
found a defect, with variants. The service runs in process over a copy of the smoke index; a
decoder that aborted the process would end this test run, so reaching the asserts is itself
part of each check."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.hostile_media import hostile_uploads, image_bytes, sound_bytes
from pipeline.cli import main
from pipeline.retrieval.index_store import SearchIndex
from pipeline.retrieval.searcher import Searcher
from tests.helpers import write_image
from tests.test_service import TOKEN, make_client

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UPLOAD_LIMIT = 10 * 1024 * 1024  # the service's default: large hostile files reach the media checks


@pytest.fixture(scope="module")
def searcher(smoke_index):
    return Searcher.open(smoke_index)


@pytest.fixture(scope="module")
def client(searcher, smoke_index):
    return make_client(smoke_index, searcher, limit=UPLOAD_LIMIT)


@pytest.fixture
def writable(smoke_index, searcher, tmp_path):
    shutil.copytree(smoke_index, tmp_path / "idx")
    uploads = tmp_path / "uploads"
    client = make_client(
        tmp_path / "idx",
        Searcher(SearchIndex.open(tmp_path / "idx"), searcher.encoder),
        uploads=uploads,
        limit=UPLOAD_LIMIT,
    )
    return client, tmp_path / "idx", uploads


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def upload(client, data: bytes, content_type: str, name: str = "q"):
    return client.post("/search", files={"file": (name, data, content_type)}, data={"k": "3"})


# ---------------------------------------------------------------- rows 1, 3, 5: media that cannot kill or bloat


def test_hostile_media_gets_a_4xx_naming_the_problem_as_a_search_and_as_a_new_item(writable):
    client, folder, uploads = writable
    digest = folder_digest(folder)
    for name, (data, content_type) in hostile_uploads().items():
        started = time.perf_counter()
        answer = upload(client, data, content_type)
        assert answer.status_code in (415, 422), (name, answer.status_code, answer.text)
        assert time.perf_counter() - started < 30, name  # a guard against a decoder loop, not a speed target
        detail = answer.json()["detail"]
        assert "cannot be decoded" in detail or "unsupported media type" in detail, (name, detail)
        added = client.post(
            "/items", files={"file": ("x", data, content_type)}, data={"caption": "hostile"}, headers=AUTH
        )
        assert added.status_code in (415, 422), (name, added.status_code, added.text)
        assert folder_digest(folder) == digest and not (uploads.exists() and any(uploads.iterdir())), name
    assert client.post("/search", json={"query": "a red circle", "k": 1}).status_code == 200  # still serving


def test_rows_1_3_5_name_what_is_wrong(client):
    uploads = hostile_uploads()

    def detail(name):
        return upload(client, *uploads[name]).json()["detail"]

    assert "data chunk declares 4,294,967,280 bytes" in detail("wav data chunk size 0xFFFFFFF0 (row 1)")
    assert "529,000,000 pixels, over the limit of 40,000,000" in detail("png 23000x23000 header (row 3)")
    assert "sample rate of 1 Hz" in detail("wav at 1 Hz (row 5)") and "sample rate of 1 Hz" in detail(
        "wav at 1 Hz, 2 MB (row 5)"
    )
    assert "FLAC stream" in detail("flac claiming more samples than its stream (decoder loop)")
    assert "WebP" in detail("webp")


def test_long_sounds_are_cropped_before_resampling(searcher, tmp_path):
    """A 59 s clip at 44.1 kHz is embedded exactly like its centre alone: the resampler sees
    only the clip length, whatever the file's."""
    rate, seconds = 44100, 59.0
    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * (200 + 5 * t) * t)).astype(np.float32)
    import soundfile as sf

    sf.write(tmp_path / "long.wav", x, rate, subtype="PCM_16")
    clip = searcher.encoder.input_config.audio.clip_seconds
    keep = int(np.ceil(clip * rate))
    start = (len(x) - keep) // 2
    sf.write(tmp_path / "centre.wav", x[start : start + keep], rate, subtype="PCM_16")
    long_vector = searcher.encoder.encode_audio([tmp_path / "long.wav"])
    centre_vector = searcher.encoder.encode_audio([tmp_path / "centre.wav"])
    np.testing.assert_allclose(long_vector, centre_vector, atol=1e-5)


# ---------------------------------------------------------------- rows 2, 4, 8: ids and text that cannot corrupt storage


HOSTILE_CAPTIONS = [
    "a lone \r return",
    "two\nlines",
    "a NUL \x00 inside",
    "quotes \" and ' and, commas",
    "tabs\tand \r\n crlf",
    "émoji 🦓 and 中文",
    "=cmd|' /C calc'!A0",
]


def test_row_2_any_caption_round_trips_exactly_and_survives_a_restart(writable, searcher):
    client, folder, _ = writable
    n = len(SearchIndex.open(folder))
    for i, caption in enumerate(HOSTILE_CAPTIONS):
        answer = client.post(
            "/items", data={"caption": caption, "item_id": f"cap-{i}", "label": caption[:10]}, headers=AUTH
        )
        assert answer.status_code == 201, answer.text
        assert client.get(f"/items/cap-{i}").json()["caption"] == caption.strip()
    reopened = SearchIndex.open(folder)  # what a restarted service reads
    assert len(reopened) == n + len(HOSTILE_CAPTIONS)
    stored = dict(zip(reopened.metadata["item_id"], reopened.metadata["caption"]))
    assert [stored[f"cap-{i}"] for i in range(len(HOSTILE_CAPTIONS))] == [c.strip() for c in HOSTILE_CAPTIONS]
    restarted = make_client(folder, Searcher(reopened, searcher.encoder))
    assert (
        restarted.post("/items", data={"caption": "after the restart", "item_id": "after"}, headers=AUTH).status_code
        == 201
    )


BAD_IDS = [
    "bad\rid",
    "train-0000\x00x",
    "new\nline",
    "tab\tbed",
    "zero\u200bwidth",
    "rtl\u202eid",
    "back\\slash",
    "/leading",
    "a//b",
    "a/../b",
    "x" * 201,
    "a /b",
]


def test_rows_2_4_8_ids_outside_the_rule_are_refused_everywhere_and_change_nothing(writable):
    client, folder, uploads = writable
    digest = folder_digest(folder)
    for item_id in BAD_IDS:
        for files in (None, {"file": ("z.png", image_bytes("PNG"), "image/png")}):
            answer = client.post("/items", data={"caption": "a zebra", "item_id": item_id}, files=files, headers=AUTH)
            assert answer.status_code == 422 and "item id" in answer.json()["detail"], (
                item_id,
                answer.status_code,
                answer.text,
            )
        assert (
            client.post("/feedback", json={"query": "a zebra", "item_id": item_id}, headers=AUTH).status_code == 422
        ), item_id
    assert folder_digest(folder) == digest and not (uploads.exists() and any(uploads.iterdir()))
    assert client.get("/items/train-0000").json()["caption"] != "a zebra"
    assert client.post("/items", data={"caption": "still writable", "item_id": "ok-1"}, headers=AUTH).status_code == 201


def test_row_4_a_nul_id_cannot_shadow_an_existing_item(writable):
    client, folder, _ = writable
    original = client.get("/items/train-0000").json()
    for files in (None, {"file": ("z.png", image_bytes("PNG"), "image/png")}):
        assert (
            client.post(
                "/items", data={"caption": "attacker", "item_id": "train-0000\x00x"}, files=files, headers=AUTH
            ).status_code
            == 422
        )
    assert client.get("/items/train-0000").json() == original
    assert (SearchIndex.open(folder).metadata["item_id"] == "train-0000").sum() == 1


def test_row_8_long_ids_with_files_get_short_safe_file_names(writable):
    client, folder, uploads = writable
    item_id = "é/" + "x" * 190 + "?#"
    answer = client.post(
        "/items", data={"item_id": item_id}, files={"file": ("z.png", image_bytes("PNG"), "image/png")}, headers=AUTH
    )
    assert answer.status_code == 201, answer.text
    (stored,) = list(uploads.iterdir())
    assert len(stored.name) <= 60 and stored.parent == uploads


def test_text_fields_that_are_not_text_are_refused(writable):
    client, _, _ = writable
    assert (
        client.post(
            "/search", content=json.dumps({"query": "\ud800 x"}), headers={"Content-Type": "application/json"}
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/feedback",
            content=json.dumps({"query": "\udfff", "item_id": "train-0000"}),
            headers={"Content-Type": "application/json", **AUTH},
        ).status_code
        == 422
    )
    assert client.post("/items", data={"caption": "x" * 10_001}, headers=AUTH).status_code == 422


# ---------------------------------------------------------------- row 6: concurrent writers and readers


def test_row_6_feedback_adds_and_searches_at_once_never_fail(writable):
    client, folder, _ = writable
    ids = SearchIndex.open(folder).metadata["item_id"].tolist()
    statuses, stop = [], time.time() + 4

    def feedback(worker):
        i = 0
        while time.time() < stop:
            statuses.append(
                client.post(
                    "/feedback", json={"query": f"a red circle {i % 7}", "item_id": ids[i % len(ids)]}, headers=AUTH
                ).status_code
            )
            i += 1

    def search(worker):
        while time.time() < stop:
            statuses.append(
                client.post(
                    "/search", json={"query": "a red circle above a blue square", "k": 5, "ranking": "weighted"}
                ).status_code
            )

    def add(worker):
        i = 0
        while time.time() < stop:
            statuses.append(
                client.post(
                    "/items",
                    data={"caption": f"a new red circle {worker}-{i}", "item_id": f"conc-{worker}-{i}"},
                    headers=AUTH,
                ).status_code
            )
            i += 1

    threads = [threading.Thread(target=f, args=(w,)) for w, f in enumerate([feedback, feedback, search, search, add])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses and all(s in (200, 201) for s in statuses), pd.Series(statuses).value_counts().to_dict()
    assert len(SearchIndex.open(folder)) == len(ids) + statuses.count(201)


def test_a_scorer_being_cloned_while_it_explains_is_never_changed_underneath(searcher):
    naive_bayes = searcher.index.naive_bayes
    errors, stop = [], time.time() + 2

    def explain():
        while time.time() < stop:
            try:
                naive_bayes.explain("a red circle", 0)
            except Exception as error:  # noqa: BLE001 - collected
                errors.append(repr(error))

    thread = threading.Thread(target=explain)
    thread.start()
    clones = 0
    while time.time() < stop:
        twin = naive_bayes.clone()
        clones += 1
    thread.join()
    assert not errors and clones > 1
    np.testing.assert_array_equal(twin.state()[0].toarray(), naive_bayes.state()[0].toarray())
    twin.partial_fit(["zebra"], [0])
    assert twin.state()[1][0] == naive_bayes.state()[1][0] + 1  # the copy learned; the original did not


# ---------------------------------------------------------------- rows 7, 9, 10, 11, 15


@pytest.mark.parametrize("k", ["³", "٣", "1e3", "0x10", " ", "99999999999999999999", "1.5"])
def test_row_7_k_fields_that_are_not_ascii_whole_numbers_get_422(client, k):
    answer = client.post("/search", files={"file": ("q.png", image_bytes("PNG"), "image/png")}, data={"k": k})
    assert answer.status_code == 422, (k, answer.status_code)


def test_row_9_a_failed_add_leaves_no_upload_behind_and_strays_are_swept_at_start(writable, searcher, monkeypatch):
    client, folder, uploads = writable
    import pipeline.retrieval.index_builder as index_builder
    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.search_service.state import upload_name

    def failing(*args, **kwargs):
        raise IndexProblem("the disk is full")

    monkeypatch.setattr(index_builder, "add_to_index", failing)
    answer = client.post(
        "/items", data={"item_id": "doomed"}, files={"file": ("z.png", image_bytes("PNG"), "image/png")}, headers=AUTH
    )
    assert answer.status_code == 422 and "disk is full" in answer.json()["detail"]
    assert not uploads.exists() or not any(uploads.iterdir())
    monkeypatch.undo()
    assert (
        client.post(
            "/items", data={"item_id": "kept"}, files={"file": ("z.png", image_bytes("PNG"), "image/png")}, headers=AUTH
        ).status_code
        == 201
    )
    (uploads / upload_name("killed-before-publishing", ".png")).write_bytes(image_bytes("PNG"))
    (uploads / "notes.txt").write_text("not an upload: never deleted")
    make_client(folder, Searcher(SearchIndex.open(folder), searcher.encoder), uploads=uploads)  # a restart
    assert sorted(p.name.split("-")[0] for p in uploads.iterdir()) == ["kept", "notes.txt"]


def test_row_10_media_links_of_any_id_reach_the_file(writable):
    client, _, _ = writable
    for n, item_id in enumerate(["what?", "a#b", "nested/folder/item", "50% off", "space id", "é+ü&x=1"]):
        picture = image_bytes("PNG", (20 + n, 10))
        answer = client.post(
            "/items",
            data={"item_id": item_id, "caption": f"a linked zebra {n}"},
            files={"file": ("z.png", picture, "image/png")},
            headers=AUTH,
        )
        assert answer.status_code == 201, (item_id, answer.text)
        item = answer.json()
        assert item["media_url"] == f"/items/{urllib.parse.quote(item_id, safe='')}/media"
        assert client.get(item["media_url"]).content == picture and client.get(item["image_url"]).content == picture, (
            item_id
        )
        assert client.get(f"/items/{urllib.parse.quote(item_id, safe='')}").json()["item_id"] == item_id
    hits = client.post("/search", json={"query": "a linked zebra", "k": 50, "ranking": "nb"}).json()["hits"]
    linked = [h for h in hits if h["caption"].startswith("a linked zebra")]
    assert len(linked) == 6 and all(client.get(h["media_url"]).status_code == 200 for h in linked)


def test_row_11_an_oversize_chunked_body_gets_413_on_every_route(client):
    def chunks():
        for _ in range(1100):
            yield b"x" * 10_000

    for path, headers in (
        ("/feedback", {"Content-Type": "application/json", **AUTH}),
        ("/search", {"Content-Type": "application/json"}),
        ("/items", {"Content-Type": "multipart/form-data; boundary=xyz", **AUTH}),
    ):
        answer = client.post(path, content=chunks(), headers=headers)
        assert answer.status_code == 413, (path, answer.status_code, answer.text)
        assert "over the limit" in answer.json()["detail"]


def test_row_15_answers_carry_media_urls_never_server_paths(
    client, searcher, tiny_default_dataset, isolated_models_dir
):
    answers = [
        client.post("/search", json={"query": "a red circle", "k": 20}).json(),
        upload(client, image_bytes("PNG"), "image/png").json(),
        client.get(f"/items/{searcher.index.metadata['item_id'].iloc[0]}").json(),
    ]
    for answer in answers:
        text = json.dumps(answer)
        assert str(tiny_default_dataset) not in text and str(isolated_models_dir) not in text and '"path"' not in text
    assert all(h["media_url"] for h in answers[0]["hits"] if h["modality"] != "text")
    assert {"path", "image_path", "audio_path"}.isdisjoint(
        client.get("/openapi.json").json()["components"]["schemas"]["Hit"]["properties"]
    )


# ---------------------------------------------------------------- rows 12, 13: damaged artifacts are named


def damage(name: str):
    return {
        "embeddings.npy truncated": ("embeddings.npy", lambda p: p.write_bytes(p.read_bytes()[:200])),
        "embeddings.npy garbage": ("embeddings.npy", lambda p: p.write_bytes(b"\x93NUMPY garbage" * 20)),
        "embeddings.npy of another shape": ("embeddings.npy", lambda p: np.save(p, np.zeros((3, 5), np.float32))),
        "lexical.npz truncated": ("lexical.npz", lambda p: p.write_bytes(p.read_bytes()[:100])),
        "metadata.parquet broken": (
            "metadata.parquet",
            lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        ),
        "metadata.parquet of other columns": ("metadata.parquet", lambda p: pd.DataFrame({"x": ["1"]}).to_parquet(p)),
        "index.json broken": ("index.json", lambda p: p.write_text("{not json")),
        "index.json a list": ("index.json", lambda p: p.write_text("[]")),
        "word_head.npz garbage": ("word_head.npz", lambda p: p.write_bytes(b"PK\x03\x04 nope")),
    }[name]


@pytest.mark.parametrize(
    "case",
    [
        "embeddings.npy truncated",
        "embeddings.npy garbage",
        "embeddings.npy of another shape",
        "lexical.npz truncated",
        "metadata.parquet broken",
        "metadata.parquet of other columns",
        "index.json broken",
        "index.json a list",
        "word_head.npz garbage",
    ],
)
def test_row_12_a_damaged_index_is_named_with_what_to_do_and_exit_2(smoke_index, tmp_path, capsys, case):
    folder = tmp_path / "idx"
    shutil.copytree(smoke_index, folder)
    file, hurt = damage(case)
    if not (folder / file).exists():
        pytest.fail(f"the smoke index has no {file}")
    hurt(folder / file)
    for argv in (
        ["search", "--index", str(folder), "a red circle"],
        ["index", "info", "--name", str(folder)],
        ["serve", "--index", str(folder), "--port=-1"],
    ):
        capsys.readouterr()
        assert main(argv) == 2, (case, argv)
        err = capsys.readouterr().err
        assert file in err and ("rebuild" in err.lower()) and "Traceback" not in err, (case, argv, err)


def test_serve_refuses_media_limits_that_would_disable_them(smoke_index, capsys):
    for flag in ("--max-megapixels=0", "--max-audio-seconds=-1"):
        assert main(["serve", "--index", str(smoke_index), flag, "--port=-1"]) == 2
        assert "must be positive" in capsys.readouterr().err


def test_row_13_a_damaged_run_is_named_with_exit_2(smoke_run, tmp_path, capsys, tiny_default_dataset):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    weights = run / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:5000])
    assert main(["evaluate", "--run", str(run), "--data", str(tiny_default_dataset)]) == 2
    err = capsys.readouterr().err
    assert "model.weights.h5 is damaged" in err and "Traceback" not in err
    (run / "run.json").write_text("{")
    assert main(["evaluate", "--run", str(run)]) == 2 and "run.json is damaged" in capsys.readouterr().err


def test_a_version_that_fails_its_own_check_is_never_published(writable, monkeypatch):
    client, folder, _ = writable
    digest = folder_digest(folder)
    import pipeline.retrieval.index_changes as index_changes

    # An add writes one change file (issue 33), checked by reading it back before it is published.
    real = index_changes.AddedItems.from_arrays.__func__

    def reads_back_wrong(cls, arrays):
        change = real(cls, arrays)
        change.metadata.loc[len(change.metadata) - 1, "caption"] = "not what was written"
        return change

    monkeypatch.setattr(index_changes.AddedItems, "from_arrays", classmethod(reads_back_wrong))
    answer = client.post("/items", data={"caption": "a checked write", "item_id": "checked"}, headers=AUTH)
    monkeypatch.undo()
    assert answer.status_code == 422 and "does not read back" in answer.json()["detail"]
    assert folder_digest(folder) == digest and len(list(folder.parent.glob(".idx*"))) == 0


# ---------------------------------------------------------------- row 14: data describe and evaluate say what they skip


def test_row_14_describe_names_empty_caption_files_and_folders_named_like_files(tmp_path, capsys, smoke_run):
    root = tmp_path / "folder"
    for i in range(7):
        write_image(root / f"img{i}.png", colour=(30 * i, 100, 100))
        (root / f"img{i}.txt").write_text(f"a picture number {i}\n")
    (root / "img0.txt").write_text("")  # an empty caption file
    (root / "dir.jpg").mkdir()  # a folder named like an image
    (root / "dir.jpg" / "x").write_text("x")
    (root / "bomb.wav").write_bytes(hostile_uploads()["wav data chunk size 0xFFFFFFF0 (row 1)"][0])
    capsys.readouterr()
    assert main(["data", "describe", str(root)]) == 1
    out = capsys.readouterr().out
    assert "[empty_caption_file] img0.txt" in out and "[not_a_file] dir.jpg" in out
    assert "bomb.wav: cannot be decoded as audio: the WAV's data chunk declares 4,294,967,280 bytes" in out
    assert main(["evaluate", "--run", str(smoke_run), "--data", str(root), "--split", "all"]) == 2
    assert (
        "no usable items with text, image, audio" in capsys.readouterr().err
    )  # the bomb is the only sound: nothing has all three
    (root / "bomb.wav").unlink()
    assert main(["evaluate", "--run", str(smoke_run), "--data", str(root), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "note: evaluated 6 of the 7 items" in out and "2 problem(s)" in out


def test_manifests_with_ids_outside_the_rule_are_refused_naming_the_rows(tmp_path, capsys):
    root = tmp_path / "ds"
    write_image(root / "a.png")
    rows = {"item_id": ["ok", "bad\x1bid", "also\rbad"], "text": ["a", "b", "c"], "image": ["a.png"] * 3}
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    assert main(["data", "describe", str(root / "manifest.parquet")]) == 2
    err = capsys.readouterr().err
    assert "row 1" in err and "row 2" in err and "control character" in err
    (root / "nul.csv").write_bytes(b"item_id,text,image\nok,a,a.png\nbad\x00id,b,a.png\n")
    assert main(["data", "describe", str(root / "nul.csv")]) == 2
    assert "line 3 holds a NUL byte" in capsys.readouterr().err
    assert (
        main(["index", "remove", "--name", "tiny", "bad\x01"]) == 2 and "control character" in capsys.readouterr().err
    )


def test_cli_search_refuses_hostile_files_by_their_header(smoke_index, tmp_path, capsys):
    for name in (
        "wav data chunk size 0xFFFFFFF0 (row 1)",
        "png 23000x23000 header (row 3)",
        "flac claiming more samples than its stream (decoder loop)",
    ):
        data, content_type = hostile_uploads()[name]
        path = tmp_path / ("q.wav" if "wav" in name else "q.png" if "png" in name else "q.flac")
        path.write_bytes(data)
        capsys.readouterr()
        assert (
            main(["search", "--index", "tiny", "--audio" if content_type.startswith("audio") else "--image", str(path)])
            == 2
        )
        err = capsys.readouterr().err
        assert str(path) in err and "cannot be decoded" in err and "Traceback" not in err
    ok = tmp_path / "ok.wav"
    ok.write_bytes(sound_bytes("WAV", 0.5))
    assert main(["search", "--index", "tiny", "--audio", str(ok)]) == 0
