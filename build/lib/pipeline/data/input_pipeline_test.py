import logging

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline.data.adapters import load_dataset
from pipeline.data.input_pipeline import (
    AudioFeatureConfig,
    InputConfig,
    make_dataset,
    pair_order,
    select_items,
    select_rows,
)
from pipeline.data.manifest import Manifest
from pipeline.preprocessing import text_ops
from tests.helpers import corrupt, tone, truncate, write_audio, write_image

SMALL_AUDIO = AudioFeatureConfig(clip_seconds=0.5, n_mels=16)


def triple_dataset(root, n=6, broken=None):
    broken = broken or {}
    rows = []
    for i in range(n):
        image = write_image(root / f"img{i}.png", colour=(20 * i, 50, 200))
        audio = write_audio(root / f"a{i}.wav", tone(0.4, 8000, freq=300 + 50 * i), 8000)
        if broken.get(i) == "corrupt_image":
            corrupt(image)
        elif broken.get(i) == "truncated_audio":
            truncate(audio, 0.01)
        elif broken.get(i) == "missing":
            image.unlink()
        rows.append(
            {
                "item_id": f"i{i}",
                "split": "train",
                "text": f"thing number {i}",
                "image": image.name,
                "audio": audio.name,
            }
        )
    return Manifest(root=root, frame=pd.DataFrame(rows), format="manifest")


def config(**kw):
    base = dict(modalities=("text", "image", "audio"), batch_size=4, image_size=32, audio=SMALL_AUDIO, seed=3)
    return InputConfig(**{**base, **kw})


def test_triples_shapes_and_dtypes(tmp_path):
    m = triple_dataset(tmp_path)
    batch = next(iter(make_dataset(m, "train", config(), training=True)))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == tf.float32
    assert batch["audio"].shape == (4, SMALL_AUDIO.frames, 16)
    assert batch["text"].dtype == tf.string and batch["row"].shape == (4,)
    assert float(tf.reduce_min(batch["image"])) >= -1.0 and float(tf.reduce_max(batch["image"])) <= 1.0


def test_vectorized_text_and_pairs(tmp_path):
    m = triple_dataset(tmp_path)
    v = text_ops.build_vectorizer(m.frame["text"], sequence_length=5)
    ds = make_dataset(m, "train", config(modalities=("text", "image")), training=False, vectorizer=v)
    batch = next(iter(ds))
    assert set(batch) == {"row", "item", "text", "image"} and batch["text"].dtype == tf.int64
    assert batch["text"].shape == (4, 5)


def test_same_seed_same_batches_and_eval_is_repeatable(tmp_path):
    m = triple_dataset(tmp_path)
    first = [b["image"].numpy() for b in make_dataset(m, "train", config(), training=True)]
    second = [b["image"].numpy() for b in make_dataset(m, "train", config(), training=True)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    ds = make_dataset(m, "train", config(), training=False)
    e1 = np.concatenate([b["audio"].numpy() for b in ds])
    e2 = np.concatenate([b["audio"].numpy() for b in ds])
    np.testing.assert_array_equal(e1, e2)  # evaluation: no randomness between passes


def test_training_randomness_changes_between_epochs(tmp_path):
    m = triple_dataset(tmp_path)
    ds = make_dataset(m, "train", config(), training=True)
    epoch1 = {int(r): x for b in ds for r, x in zip(b["row"].numpy(), b["image"].numpy())}
    epoch2 = {int(r): x for b in ds for r, x in zip(b["row"].numpy(), b["image"].numpy())}
    common = set(epoch1) & set(epoch2)
    assert common and any(not np.array_equal(epoch1[r], epoch2[r]) for r in common)


def test_bad_rows_are_skipped_with_warning_and_count(tmp_path, caplog):
    broken = {1: "corrupt_image", 2: "truncated_audio", 4: "missing"}
    m = triple_dataset(tmp_path, broken=broken)
    with caplog.at_level(logging.WARNING):
        selection = select_rows(m, "train", ("text", "image", "audio"))
        rows = sorted(
            int(r)
            for b in make_dataset(m, "train", config(), training=False, selection=selection)
            for r in b["row"].numpy()
        )
    assert rows == [0, 3, 5]
    assert sorted({p.row for p in selection.skipped}) == [1, 2, 4]
    assert "skipped 3 bad row(s) of 6" in caplog.text
    assert "img1.png" in caplog.text and "a2.wav" in caplog.text and "img4.png" in caplog.text


def test_rows_missing_a_needed_modality_are_left_out(tmp_path):
    m = triple_dataset(tmp_path)
    m.frame.loc[0, "audio"] = ""
    assert 0 not in select_rows(m, "train", ("text", "audio")).frame.index
    assert 0 in select_rows(m, "train", ("text", "image")).frame.index


def test_no_usable_rows_error_names_split(tmp_path):
    m = triple_dataset(tmp_path, n=2)
    with pytest.raises(ValueError, match="no usable rows with text, image.*0 rows in the split"):
        select_rows(m, "test", ("text", "image"))


def test_default_dataset_pipeline(tiny_default_dataset):
    m = load_dataset(tiny_default_dataset)
    ds = make_dataset(m, "dev", config(batch_size=8, image_size=64), training=False)
    batches = list(ds)
    assert sum(len(b["row"]) for b in batches) == 16  # one spoken caption per dev scene


def test_items_draw_a_caption_per_epoch_and_keep_the_spoken_one(tmp_path):
    rows = []
    for i in range(4):
        image = write_image(tmp_path / f"img{i}.png").name
        audio = write_audio(tmp_path / f"a{i}.wav", tone(0.3, 8000), 8000).name
        rows += [
            {
                "item_id": f"i{i}",
                "split": "train",
                "text": f"caption {i} {k}",
                "image": image,
                "audio": audio if k == 1 else "",
            }
            for k in range(3)
        ]
    m = Manifest(root=tmp_path, frame=pd.DataFrame(rows), format="manifest")
    selection = select_items(m, "train", ("text", "image", "audio"))
    assert selection.frame["audio_text"].tolist() == [f"caption {i} 1" for i in range(4)]
    assert selection.frame["text"].iloc[0] == ["caption 0 0", "caption 0 1", "caption 0 2"]
    ds = make_dataset(m, "train", config(batch_size=4), training=True, selection=selection, by_item=True)
    seen = {}
    for _ in range(6):
        for b in ds:
            for item, text in zip(b["item"].numpy(), b["text"].numpy()):
                seen.setdefault(int(item), set()).add(text.decode())
    assert all(len(texts) > 1 for texts in seen.values())  # captions vary across epochs
    assert all(t.startswith(f"caption {sorted(seen).index(k)} ") for k, texts in seen.items() for t in texts)
    evaluation = next(
        iter(make_dataset(m, "train", config(batch_size=4), training=False, selection=selection, by_item=True))
    )
    assert sorted(evaluation["text"].numpy().astype(str)) == [
        f"caption {i} 0" for i in range(4)
    ]  # first caption, no randomness


def test_item_text_is_another_caption_than_the_query_and_masked_when_there_is_none(tmp_path):
    rows = []
    for i in range(4):
        image = write_image(tmp_path / f"img{i}.png").name
        count = 1 if i == 3 else 3  # item 3 has one caption: no other to fuse
        rows += [
            {"item_id": f"i{i}", "split": "train", "text": f"caption {i} {k}", "image": image} for k in range(count)
        ]
    m = Manifest(root=tmp_path, frame=pd.DataFrame(rows), format="manifest")
    selection = select_items(m, "train", ("text", "image"))
    ds = make_dataset(
        m,
        "train",
        config(modalities=("text", "image"), batch_size=4, item_text=True),
        training=True,
        selection=selection,
        by_item=True,
    )
    titles = set()
    for _ in range(5):
        for b in ds:
            for text, title, mask in zip(b["text"].numpy(), b["item_text"].numpy(), b["item_text_mask"].numpy()):
                text, title = text.decode(), title.decode()
                assert title.split()[1] == text.split()[1]  # the same item's
                if text.startswith("caption 3"):
                    assert mask == 0.0
                else:
                    assert mask == 1.0 and title != text
                    titles.add(title)
    assert len(titles) > 3  # the item's words vary too
    evaluation = next(
        iter(
            make_dataset(
                m,
                "train",
                config(modalities=("text", "image"), item_text=True),
                training=False,
                selection=selection,
                by_item=True,
            )
        )
    )
    assert "item_text" not in evaluation  # outside training an item's words come from the caller


def test_item_keeps_its_other_modalities_when_one_file_is_bad(tmp_path):
    m = triple_dataset(tmp_path, n=3, broken={1: "truncated_audio"})
    items = select_items(m, "train", ("text", "image")).frame
    assert len(items) == 3  # the bad audio does not matter for text-image
    items = select_items(m, "train", ("text", "image", "audio")).frame
    assert items["item_id"].tolist() == ["i0", "i2"]


def test_pair_order_puts_each_pair_in_one_aligned_block():
    groups = ["", "g1", "", "g2", "g1", "g3", "g3", "g3", "", "g2"]
    order = pair_order(groups, seed=0)
    assert sorted(order) == list(range(len(groups)))  # a permutation: nothing lost or repeated
    blocks = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert sorted(blocks[0]) == [1, 4] and sorted(blocks[1]) == [3, 9]  # the two pairs
    # g3 has three members: not a pair, so its members are shuffled in with the single items
    assert {p for b in blocks[2:] for p in b} == {0, 2, 5, 6, 7, 8}
    assert pair_order(groups, seed=0) == order


def test_training_batches_keep_contrast_pairs_together(tmp_path):
    rows = []
    for i in range(10):
        image = write_image(tmp_path / f"img{i}.png", colour=(20 * i, 50, 200)).name
        audio = write_audio(tmp_path / f"a{i}.wav", tone(0.2 + 0.05 * i, 8000), 8000).name  # clips of different lengths
        group = f"pair{i // 2}" if i < 6 else ""  # items 0-5 form three pairs, 6-9 stand alone
        rows += [
            {
                "item_id": f"i{i}",
                "split": "train",
                "text": f"caption {i} {k}",
                "image": image,
                "audio": audio if k == 0 else "",
                "contrast_group": group,
            }
            for k in range(2)
        ]
    m = Manifest(root=tmp_path, frame=pd.DataFrame(rows), format="manifest")
    selection = select_items(m, "train", ("text", "image", "audio"))
    assert selection.frame["contrast_group"].tolist()[:2] == ["pair0", "pair0"]
    cfg = config(batch_size=4)
    ds = make_dataset(m, "train", cfg, training=True, selection=selection, by_item=True, keep_groups=True)
    assert int(ds.cardinality()) == 2  # known, as Keras needs for an epoch's steps: 10 items, batches of 4
    partner = {f"i{i}": f"i{i ^ 1}" for i in range(6)}
    orders = []
    for _ in range(4):
        order = []
        for b in ds:
            ids = [m.frame["item_id"].iloc[int(r)] for r in b["row"].numpy()]
            assert all(partner[i] in ids for i in ids if i in partner), ids  # no twin without its partner
            assert b["text"].shape == (len(ids),)  # captions came through the pair blocks as strings
            order += ids
        assert len(order) == len(set(order)) == 8  # two full batches of 4 out of 10; the rest dropped
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1  # the blocks are reshuffled every epoch


def test_word_timings_become_frame_labels_through_pair_blocks(tmp_path, caplog):
    # 0.5 s clips at 10 ms hops: 50 frames. Item i says "red" in [0.1, 0.2) s and "disc" in
    # [0.2, 0.4) s, so frames 10-19 (centres 0.105 ... 0.195 s) hear red and 20-39 disc.
    vocabulary = ["", "[UNK]", "red", "disc"]
    rows = []
    for i in range(6):
        image = write_image(tmp_path / f"img{i}.png").name
        audio = write_audio(tmp_path / f"a{i}.wav", tone(0.3, 8000), 8000).name  # shorter than the clip: no crop
        timings = "Red:0.1:0.2 disc,:0.2:0.4" if i < 4 else ("red:0.1" if i == 4 else "")
        group = f"pair{i // 2}" if i < 2 else ""
        rows.append(
            {
                "item_id": f"i{i}",
                "split": "train",
                "text": "red disc",
                "image": image,
                "audio": audio,
                "contrast_group": group,
                "audio_words": timings,
            }
        )
    m = Manifest(root=tmp_path, frame=pd.DataFrame(rows), format="manifest")
    selection = select_items(m, "train", ("text", "image", "audio"))
    expected = np.zeros(50, int)
    expected[10:20], expected[20:40] = 2, 3
    with caplog.at_level(logging.WARNING):
        ds = make_dataset(
            m,
            "train",
            config(batch_size=6),
            training=True,
            selection=selection,
            by_item=True,
            keep_groups=True,
            word_vocabulary=vocabulary,
        )
    assert "1 clip(s) with unreadable audio_words" in caplog.text and "red:0.1" in caplog.text
    b = next(iter(ds))
    assert b["audio_words"].shape == (6, 50) and b["audio"].shape[1] == 50
    for row, labels, timed in zip(b["row"].numpy(), b["audio_words"].numpy(), b["audio_words_timed"].numpy()):
        item = m.frame["item_id"].iloc[int(row)]
        if int(item[1:]) < 4:
            np.testing.assert_array_equal(labels, expected)  # case and punctuation standardised like the text
            assert timed == 1.0
        else:
            assert timed == 0.0 and not labels.any()  # unreadable or no timings: left out of the loss


def test_training_draws_one_of_an_items_clips_with_its_own_transcript(tmp_path):
    # Every caption of an item is spoken; clip k of item i is a tone of its own length, so the
    # drawn clip can be told from its spectrogram's non-silent frames.
    rows = []
    for i in range(4):
        image = write_image(tmp_path / f"img{i}.png").name
        for k in range(3):
            audio = write_audio(tmp_path / f"a{i}_{k}.wav", tone(0.1 * (k + 1), 16000), 16000).name
            rows.append({"item_id": f"i{i}", "split": "train", "text": f"caption {k}", "image": image, "audio": audio})
    m = Manifest(root=tmp_path, frame=pd.DataFrame(rows), format="manifest")
    selection = select_items(m, "train", ("text", "image", "audio"))
    assert selection.frame["audio_clips"].iloc[0] == ["a0_0.wav", "a0_1.wav", "a0_2.wav"]
    unmasked = AudioFeatureConfig(clip_seconds=0.5, n_mels=16, time_masks=0, freq_masks=0)
    ds = make_dataset(
        m, "train", config(batch_size=4, audio=unmasked), training=True, selection=selection, by_item=True
    )
    drawn = set()
    for _ in range(5):
        for b in ds:
            for spec, said in zip(b["audio"].numpy(), b["audio_text"].numpy()):
                loud = int((spec.max(axis=1) > spec.min() + 5).sum())  # ~10 frames per 0.1 s of tone
                k = int(said.decode().split()[1])
                assert abs(loud - 10 * (k + 1)) <= 2, (loud, said)  # the transcript is the drawn clip's
                drawn.add(k)
    assert drawn == {0, 1, 2}
    evaluation = next(
        iter(make_dataset(m, "train", config(batch_size=4), training=False, selection=selection, by_item=True))
    )
    assert evaluation["audio"].shape == (4, 50, 16)  # evaluation: each item's first clip, decoded once


def test_cached_feature_views_one_per_epoch_in_training_the_first_otherwise(tmp_path):
    m = triple_dataset(tmp_path, n=4)
    paths = m.frame["image"].tolist()
    views = np.stack([np.zeros((4, 3)), np.ones((4, 3))], axis=1).astype("float32")  # view 0 all 0, view 1 all 1
    cfg = config(modalities=("text", "image"))
    ds = make_dataset(m, "train", cfg, training=False, image_features=(paths, views))
    assert all(float(tf.reduce_max(b["image_features"])) == 0.0 for b in ds)
    ds = make_dataset(m, "train", cfg, training=True, image_features=(paths, views), by_item=True)
    drawn = np.concatenate([b["image_features"].numpy()[:, 0] for _ in range(5) for b in ds])
    assert set(drawn.tolist()) == {0.0, 1.0}  # 20 draws of two views
    assert next(iter(ds))["image_features"].shape == (4, 3)


def test_cached_feature_views_kept_for_test_time_averaging_outside_training(tmp_path):
    m = triple_dataset(tmp_path, n=4)
    paths = m.frame["image"].tolist()
    views = np.stack([np.full((4, 3), v) for v in range(3)], axis=1).astype("float32")  # view v all v
    cfg = config(modalities=("text", "image"), test_views=2)
    batch = next(iter(make_dataset(m, "train", cfg, training=False, image_features=(paths, views))))
    assert batch["image_features"].shape == (4, 2, 3)
    np.testing.assert_array_equal(
        batch["image_features"].numpy()[:, :, 0], [[0, 1]] * 4
    )  # the first two views, in order
    trained = next(iter(make_dataset(m, "train", cfg, training=True, image_features=(paths, views), by_item=True)))
    assert trained["image_features"].shape == (4, 3)  # training still draws one view


def test_undecodable_esc50_clips_are_counted_and_skipped(tmp_path, caplog):
    # An ESC-50 layout with a truncated FLAC and a file that is not audio at all: both are
    # skipped with a warning naming them; the good clips are read.
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for i, state in enumerate(["ok", "truncated", "ok", "garbage", "ok"]):
        path = write_audio(tmp_path / "audio" / f"1-{i}-A-0.flac", tone(0.4, 16000, 300 + 40 * i), 16000)
        if state == "truncated":
            truncate(path, 0.02)
        elif state == "garbage":
            corrupt(path)
        rows.append(f"1-{i}-A-0.flac,1,0,dog,False,{i},A")
    (tmp_path / "esc50.csv").write_text("\n".join(rows) + "\n")
    manifest = load_dataset(tmp_path)
    manifest.frame["split"] = "train"
    with caplog.at_level(logging.WARNING):
        selection = select_items(manifest, "train", ("text", "audio"))
    assert sorted(selection.frame["item_id"]) == ["1-0-A-0", "1-2-A-0", "1-4-A-0"]
    assert len(selection.skipped) == 2 and "1-1-A-0.flac" in caplog.text and "1-3-A-0.flac" in caplog.text
    ds = make_dataset(
        manifest, "train", config(modalities=("text", "audio")), training=False, selection=selection, by_item=True
    )
    assert sum(int(b["audio"].shape[0]) for b in ds) == 3
