"""Builds the embedded default dataset: synthetic scenes, captions and spoken captions.

Deterministic from a seed; no download. Layout of the output folder:

    dataset.json   format, seed, counts (marks the folder for the 'embedded' adapter)
    manifest.csv   one row per caption: item_id, split, text, image, audio, label, ...,
                   audio_words (when each spoken word is heard: "word:start:end ..." in seconds)
    images/<item>.png, audio/<item>-<caption>.wav (16 kHz mono, spoken captions: every
    caption in the training split, one per scene in dev and test)

In the dev and test splits every caption is true of its own scene and of no other scene
in the split. In every split part of the scenes come as colour-swapped twins whose
captions have the same words in another order (column ``contrast_group``), so a model that
ignores word order cannot tell them apart. In the training split, part of the other scenes
come with a twin that differs in one object's shape. Training batches keep twins together,
so each is the other's hard negative.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.adapters.embedded_adapter import FORMAT_NAME
from pipeline.data.synthetic import grammar
from pipeline.data.synthetic.scenes import COLOURS, SHAPES, Scene, render_scene, sample_scene
from pipeline.io_utils import atomic_path
from pipeline.progress import progress
from pipeline.modalities.names import AUDIO, IMAGE

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}
# Twins swap two colour words; both must be single words that take the same article ("a"),
# or the swap would change the bag of words ("a little orange" vs "a green").
TWIN_COLOURS = tuple(c for c in COLOURS if len(grammar.COLOUR_WORDS[c]) == 1 and c[0] not in "aeiou")
# 2: colour-swapped twins in training; 3: shape twins in training, word timings of the speech;
# 4: the same speech from every build (see render_shard).
DATASET_VERSION = 4
# Items rendered by one fresh worker process (render_shard).
SHARD_SIZE = 250


@dataclasses.dataclass(frozen=True)
class DefaultDatasetConfig:
    """Args:
    seed: everything is derived from it.
    train, dev, test: number of scenes (items) per split.
    image_size: side of the square PNG images.
    captions_per_item: captions per scene (one of them is also spoken, in dev and test).
    train_speak_all: in the training split every caption is also spoken (each by its own voice).
    twin_fraction: share of dev/test two-object scenes made as colour-swapped pairs.
    train_twin_fraction: the same share in the training split (hard negatives for training).
    train_shape_twin_fraction: share of the other training scenes paired with a twin that
        differs in one object's shape (hard negatives that make shape matter).
    speech: synthesise spoken captions (needs espeakng-loader).
    """

    seed: int = 1234
    train: int = 1900
    dev: int = 300
    test: int = 300
    image_size: int = 128
    captions_per_item: int = 3
    twin_fraction: float = 0.8
    train_twin_fraction: float = 0.8
    train_shape_twin_fraction: float = 0.5
    train_speak_all: bool = True
    speech: bool = True


@dataclasses.dataclass
class PlannedItem:
    item_id: str
    split: str
    scene: Scene
    captions: list[tuple[str, grammar.Meaning]]
    spoken: tuple[int, ...]  # which captions are spoken
    contrast_group: str = ""


def _swap_colours(scene: Scene) -> Scene:
    a, b = scene.objects[0], scene.objects[1]
    objects = (dataclasses.replace(a, colour=b.colour), dataclasses.replace(b, colour=a.colour), *scene.objects[2:])
    return dataclasses.replace(scene, objects=objects)


def _change_a_shape(scene: Scene, rng: np.random.Generator) -> Scene:
    """The scene with one object's shape changed (to one no other object has)."""
    k = int(rng.integers(len(scene.objects)))
    taken = {o.shape for o in scene.objects}
    shape = str(rng.choice([s for s in SHAPES if s not in taken]))
    objects = tuple(dataclasses.replace(o, shape=shape) if i == k else o for i, o in enumerate(scene.objects))
    return dataclasses.replace(scene, objects=objects)


def _swap_caption(text: str, meaning: grammar.Meaning, c0: str, c1: str) -> tuple[str, grammar.Meaning]:
    swap = {c0: c1, c1: c0}
    words = [swap.get(w, w) for w in text.split()]
    for i in range(len(words) - 1):  # articles follow the colour words they now precede
        if words[i] in ("a", "an"):
            words[i] = "an" if words[i + 1][0] in "aeiou" else "a"
    mentions = tuple((s, swap.get(c, c), z) for s, c, z in meaning.mentions)
    return " ".join(words), dataclasses.replace(meaning, mentions=mentions)


def _conflicts(scene: Scene, meanings, accepted: list[PlannedItem]) -> bool:
    """True if a new scene's captions fit an accepted scene, or an accepted caption fits it."""
    kinds = {(o.shape, o.colour) for o in scene.objects}
    for item in accepted:
        other = {(o.shape, o.colour) for o in item.scene.objects}
        for meaning in meanings:
            if {(s, c) for s, c, _ in meaning.mentions} <= other and grammar.satisfies(item.scene, meaning):
                return True
        for _, meaning in item.captions:
            if {(s, c) for s, c, _ in meaning.mentions} <= kinds and grammar.satisfies(scene, meaning):
                return True
    return False


def plan_split(split: str, count: int, config: DefaultDatasetConfig) -> list[PlannedItem]:
    """Scenes and captions of one split; dev/test enforce unique captions and add twins."""
    rng = np.random.default_rng([config.seed, SPLIT_CODES[split]])
    strict = split != "train"
    items: list[PlannedItem] = []
    attempts = 0
    while len(items) < count:
        attempts += 1
        if attempts > 50 * count:
            raise RuntimeError(f"could not place {count} distinct {split} scenes; lower the count")
        scene = sample_scene(rng)
        caption_seed = int(rng.integers(2**31))
        captions = grammar.captions(scene, caption_seed, config.captions_per_item)
        first = int(rng.integers(config.captions_per_item))
        count_spoken = config.captions_per_item if split == "train" and config.train_speak_all else 1
        spoken = tuple((first + j) % config.captions_per_item for j in range(count_spoken))
        for text, meaning in captions:
            assert grammar.satisfies(scene, meaning), f"grammar bug: {text!r} is false of its own scene"
        group = [(scene, captions)]
        make_twin = (
            len(scene.objects) == 2  # 3-object captions name one object twice: a swap would change the words
            and len(items) + 2 <= count
            and rng.random() < (config.twin_fraction if strict else config.train_twin_fraction)
            and scene.objects[0].colour in TWIN_COLOURS
            and scene.objects[1].colour in TWIN_COLOURS
            and scene.objects[0].colour != scene.objects[1].colour
            and scene.objects[0].shape != scene.objects[1].shape
        )
        if make_twin:
            twin = _swap_colours(scene)
            c0, c1 = scene.objects[0].colour, scene.objects[1].colour
            group.append((twin, [_swap_caption(t, m, c0, c1) for t, m in captions]))
        elif not strict and len(items) + 2 <= count and rng.random() < config.train_shape_twin_fraction:
            twin = _change_a_shape(scene, rng)
            group.append((twin, grammar.captions(twin, caption_seed, config.captions_per_item)))
        if strict:
            placed: list[PlannedItem] = []
            ok = True
            for s, caps in group:
                if _conflicts(s, [m for _, m in caps], items + placed) or not all(
                    grammar.satisfies(s, m) for _, m in caps
                ):
                    ok = False
                    break
                placed.append(PlannedItem("", split, s, caps, spoken))
            if not ok:
                continue
        contrast = f"{split}-pair{len(items):04d}" if len(group) == 2 else ""
        for s, caps in group:
            items.append(PlannedItem(f"{split}-{len(items):04d}", split, s, caps, spoken, contrast))
    return items


def format_word_timings(words, offset: float = 0.0) -> str:
    """Word timings as the manifest's ``audio_words`` text: "word:start:end ..." in seconds."""
    return " ".join(f"{w.word.lower()}:{w.start + offset:.3f}:{w.end + offset:.3f}" for w in words)


# Worker side: one eSpeak instance per process.
_SPEAKER = None


def _init_worker(speech: bool):
    global _SPEAKER
    if speech:
        from pipeline.data.synthetic.speech import Speaker

        _SPEAKER = Speaker()


def _speak(text: str, rng: np.random.Generator, path: Path) -> str:
    """Writes ``text`` spoken by a random voice, with pauses and light noise, to ``path``;
    returns the word timings (seconds from the start of the file)."""
    import soundfile as sf

    from pipeline.data.synthetic.speech import Voice, to_16k

    voice = Voice.sample(rng)
    samples, words = _SPEAKER.say_with_words(text, voice, seed=int(rng.integers(2**31)))
    speech = to_16k(samples, _SPEAKER.sample_rate)
    speech = speech / (np.abs(speech).max() + 1e-6) * rng.uniform(0.4, 0.9)
    pad = [np.zeros(int(16000 * rng.uniform(0.05, 0.25)), np.float32) for _ in range(2)]
    audio = np.concatenate([pad[0], speech, pad[1]])
    rms = np.sqrt(np.mean(speech**2)) + 1e-6
    noise = rng.normal(0, 1, audio.shape).astype(np.float32)
    noise = np.convolve(noise, np.ones(4) / 4, mode="same")  # a little less hiss, a little more hum
    audio = audio + noise / (np.sqrt(np.mean(noise**2)) + 1e-6) * rms * 10 ** (-rng.uniform(20, 35) / 20)
    sf.write(path, np.clip(audio, -1, 1), 16000, subtype="PCM_16")
    return format_word_timings(words, offset=len(pad[0]) / 16000)


def audio_name(item: PlannedItem, caption: int) -> str:
    return f"audio/{item.item_id}-{caption}.wav"


def render_shard(tasks) -> list[tuple[str, dict[int, str]]]:
    """Renders a fixed run of items in order, in a worker that has rendered nothing before.

    eSpeak NG keeps state from one utterance to the next (the same text and voice, said twice,
    give different samples, even with its random numbers seeded each time), so what an item
    sounds like depends on what its process said before. A fresh process per shard of fixed
    items, and eSpeak's random numbers seeded per clip (``_speak``), make every build of a
    seed the same, however the pool schedules the shards."""
    return [_render(task) for task in tasks]


def _render(task) -> tuple[str, dict[int, str]]:
    out, item_index, item, config = task
    rng = np.random.default_rng([config.seed, SPLIT_CODES[item.split], item_index, 7])
    render_scene(item.scene, config.image_size, rng).save(Path(out) / "images" / f"{item.item_id}.png", optimize=False)
    timings = {}
    if config.speech:
        for k in item.spoken:
            timings[k] = _speak(item.captions[k][0], rng, Path(out) / audio_name(item, k))
    return item.item_id, timings


def manifest_frame(
    items: list[PlannedItem], speech: bool, word_timings: dict[str, dict[int, str]] | None = None
) -> pd.DataFrame:
    rows = []
    for item in items:
        for k, (text, _) in enumerate(item.captions):
            spoken = speech and k in item.spoken
            rows.append(
                {
                    "item_id": item.item_id,
                    "split": item.split,
                    "text": text,
                    IMAGE: f"images/{item.item_id}.png",
                    AUDIO: audio_name(item, k) if spoken else "",
                    "label": "",
                    "caption_index": k,
                    "contrast_group": item.contrast_group,
                    "audio_words": (word_timings or {}).get(item.item_id, {}).get(k, "") if spoken else "",
                }
            )
    return pd.DataFrame.from_records(rows)


def dataset_version(root: str | Path) -> int | None:
    """The version recorded in a built dataset folder, None where there is none."""
    info = Path(root) / "dataset.json"
    if not info.exists():
        return None
    try:
        return int(json.loads(info.read_text()).get("version", 1))
    except (ValueError, AttributeError):
        return 0


def is_current(root: str | Path) -> bool:
    return dataset_version(root) == DATASET_VERSION


def build_default_dataset(
    out: str | Path, config: DefaultDatasetConfig = DefaultDatasetConfig(), workers: int = 2
) -> Path:
    """Generates the dataset into ``out`` atomically (a half-built folder never replaces it)."""
    out = Path(out)
    start = time.time()
    items = []
    for split in ("train", "dev", "test"):
        log.info("planning %d %s scenes and their captions", getattr(config, split), split)
        items += plan_split(split, getattr(config, split), config)
    with atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / AUDIO).mkdir()
        tasks = [(str(tmp), i, item, config) for i, item in enumerate(items)]
        shards = [tasks[i : i + SHARD_SIZE] for i in range(0, len(tasks), SHARD_SIZE)]
        what = "images and spoken captions" if config.speech else "images"
        bar = progress(total=len(tasks), desc=f"rendering {what}", unit="item")
        context = multiprocessing.get_context("spawn")  # eSpeak and TF dislike fork
        # maxtasksperchild=1: each shard in a new process, with a new eSpeak (render_shard).
        with context.Pool(workers, initializer=_init_worker, initargs=(config.speech,), maxtasksperchild=1) as pool:
            word_timings = {}
            for rendered in pool.imap_unordered(render_shard, shards):
                word_timings.update(rendered)
                bar.update(len(rendered))
        bar.close()
        frame = manifest_frame(items, config.speech, word_timings)
        frame.to_csv(tmp / "manifest.csv", index=False)
        info = {
            "format": FORMAT_NAME,
            "version": DATASET_VERSION,
            "config": dataclasses.asdict(config),
            "items": {s: getattr(config, s) for s in SPLIT_CODES},
            "rows": len(frame),
            "synthetic": True,
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "README.md").write_text(
            "# The embedded default dataset (synthetic)\n\n"
            "Generated by `make data` (`python -m pipeline data build`). Scenes of one to three coloured\n"
            "shapes, captions from a grammar whose word order carries meaning, and spoken captions from\n"
            "eSpeak NG. It exists so that the pipeline can be trained and tested end to end with no\n"
            "download; it says nothing about performance on real photos or speech.\n"
        )
    log.info("default dataset written to %s in %.0f s", out, time.time() - start)
    return out
