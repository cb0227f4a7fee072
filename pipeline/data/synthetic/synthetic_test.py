import json
from collections import Counter

import numpy as np
import pytest
import pandas as pd
import soundfile as sf

from pipeline.data.adapters import load_dataset
from pipeline.data.synthetic import grammar
from pipeline.data.synthetic.build import DefaultDatasetConfig, plan_split
from pipeline.data.synthetic.scenes import Scene, SceneObject


def two_objects(top_colour="red", bottom_colour="blue"):
    return Scene(
        (
            SceneObject("circle", top_colour, "small", 0.5, 0.25),
            SceneObject("square", bottom_colour, "large", 0.5, 0.75),
        ),
        "vertical",
        "plain",
        ((100, 100, 100), (90, 90, 90)),
    )


def twin_groups(items):
    groups = {}
    for item in items:
        if item.contrast_group:
            groups.setdefault(item.contrast_group, []).append(item)
    return groups


def test_word_order_carries_meaning():
    scene = two_objects()
    red_circle_above = grammar.Meaning(
        (("circle", "red", None), ("square", "blue", None)), relations=((0, "above", 1),)
    )
    blue_circle_above = grammar.Meaning(
        (("circle", "blue", None), ("square", "red", None)), relations=((0, "above", 1),)
    )
    square_above = grammar.Meaning((("square", "blue", None), ("circle", "red", None)), relations=((0, "above", 1),))
    assert grammar.satisfies(scene, red_circle_above)
    assert not grammar.satisfies(scene, blue_circle_above)
    assert not grammar.satisfies(scene, square_above)
    assert not grammar.satisfies(scene, grammar.Meaning((("circle", "red", "large"),)))  # wrong size
    assert not grammar.satisfies(scene, grammar.Meaning((("circle", "red", None),), exact_count=1))


def test_every_caption_is_true_of_its_scene():
    rng = np.random.default_rng(0)
    from pipeline.data.synthetic.scenes import sample_scene

    for i in range(300):
        scene = sample_scene(rng)
        for text, meaning in grammar.captions(scene, seed=i):
            assert grammar.satisfies(scene, meaning), text


def test_test_split_captions_pick_out_exactly_one_scene():
    items = plan_split("test", 80, DefaultDatasetConfig(seed=5))
    for item in items:
        for text, meaning in item.captions:
            matches = [other.item_id for other in items if grammar.satisfies(other.scene, meaning)]
            assert matches == [item.item_id], text


def test_twins_share_words_but_not_meaning():
    groups = twin_groups(plan_split("test", 80, DefaultDatasetConfig(seed=5)))
    assert len(groups) >= 5
    for a, b in groups.values():
        for (ta, _), (tb, _) in zip(a.captions, b.captions):
            assert ta != tb and Counter(ta.split()) == Counter(tb.split())


def test_training_twins_differ_in_colours_or_in_one_shape():
    groups = twin_groups(plan_split("train", 200, DefaultDatasetConfig(seed=5)))
    kinds = Counter()
    for a, b in groups.values():
        pairs = list(zip(a.scene.objects, b.scene.objects))
        assert all((oa.x, oa.y, oa.size) == (ob.x, ob.y, ob.size) for oa, ob in pairs)  # same layout
        shapes = sum(oa.shape != ob.shape for oa, ob in pairs)
        colours = sum(oa.colour != ob.colour for oa, ob in pairs)
        assert (shapes, colours) in ((0, 2), (1, 0)), (a.captions[0][0], b.captions[0][0])
        kinds["shape" if shapes else "colour"] += 1
        for text, meaning in b.captions:
            assert grammar.satisfies(b.scene, meaning), text
    assert kinds["shape"] >= 10 and kinds["colour"] >= 5


def test_built_dataset_layout_and_determinism(tiny_default_dataset, tmp_path):
    from pipeline.data.synthetic.build import build_default_dataset

    info = json.loads((tiny_default_dataset / "dataset.json").read_text())
    assert info["format"] == "embedded-default" and info["synthetic"] is True
    m = load_dataset(tiny_default_dataset)
    assert m.format == "embedded"
    items = m.frame.groupby("split")["item_id"].nunique().to_dict()
    assert items == {"train": 40, "dev": 16, "test": 16}
    assert (m.frame.groupby("item_id")["text"].count() >= 3).all()
    spoken = m.frame[m.frame["audio"] != ""]
    per_item = spoken.groupby("split")["item_id"].value_counts()
    assert (per_item["train"] == 3).all() and len(per_item["train"]) == 40  # every training caption spoken
    assert (per_item["dev"] == 1).all() and (per_item["test"] == 1).all()  # one per scene in dev and test
    assert spoken["audio"].is_unique
    samples, rate = sf.read(tiny_default_dataset / spoken["audio"].iloc[0])
    assert rate == 16000 and samples.ndim == 1 and 0.5 < len(samples) / rate < 10
    again = build_default_dataset(
        tmp_path / "again", DefaultDatasetConfig(seed=7, train=40, dev=16, test=16, speech=False)
    )
    other = pd.read_csv(again / "manifest.csv", dtype=str, keep_default_na=False)
    assert other["text"].tolist() == m.frame["text"].tolist()
    first = m.frame["image"].iloc[0]
    assert (again / first).read_bytes() == (tiny_default_dataset / first).read_bytes()


@pytest.mark.slow
def test_two_builds_of_a_seed_sound_the_same_however_the_work_is_shared(tmp_path, monkeypatch):
    """eSpeak carries state from one utterance to the next; shards in fresh processes make the
    speech independent of which worker said what before."""
    from pipeline.data.synthetic import build

    monkeypatch.setattr(build, "SHARD_SIZE", 8)
    config = DefaultDatasetConfig(seed=3, train=16, dev=8, test=8)
    one = build.build_default_dataset(tmp_path / "one", config, workers=1)
    two = build.build_default_dataset(tmp_path / "two", config, workers=2)
    assert (one / "manifest.csv").read_text() == (two / "manifest.csv").read_text()  # captions and word timings
    clips = sorted(p.name for p in (one / "audio").iterdir())
    assert len(clips) == 16 * 3 + 8 + 8
    assert all((one / "audio" / c).read_bytes() == (two / "audio" / c).read_bytes() for c in clips)


def test_spoken_captions_carry_word_timings(tiny_default_dataset):
    from pipeline.preprocessing.audio_ops import parse_word_timings

    frame = load_dataset(tiny_default_dataset).frame
    spoken = frame[frame["audio"] != ""]
    assert (spoken["audio_words"] != "").all() and (frame.loc[frame["audio"] == "", "audio_words"] == "").all()
    for text, timings, audio in zip(spoken["text"], spoken["audio_words"], spoken["audio"]):
        words = parse_word_timings(timings)
        duration = sf.info(tiny_default_dataset / audio).duration
        starts = [s for _, s, _ in words]
        assert starts == sorted(starts) and all(0 < s <= e <= duration for _, s, e in words)
        # eSpeak may fold a short word into its neighbour, but the words it times are the
        # caption's, in its order.
        said = iter(text.split())
        assert all(any(w == t for t in said) for w, _, _ in words), (text, timings)
        assert len(words) >= 0.7 * len([t for t in text.split() if t != ","])
