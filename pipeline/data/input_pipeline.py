"""tf.data input pipelines over a Manifest: pairs or triples of text, image and audio.

Stages: rows → decode + resize / resample (deterministic) → cache → shuffle (training) →
augment with per-element stateless seeds (training; an item with several audio clips has
one drawn and decoded here, each epoch) → backbone preprocessing, log-mel, vectorisation →
batch → prefetch. Every stage but the shuffle runs with parallel ``map``;
with ``deterministic`` set, the same seed gives the same batches.

Rows whose files are missing or unreadable, or which lack a modality the pipeline needs,
are left out before the pipeline starts, with a logged warning naming each (the first few)
and a count, so a long run never dies on a bad file halfway through.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline.data.file_check import check_files
from pipeline.data.manifest import Manifest, Problem
from pipeline.modalities import file_modalities, modalities, modality_names
from pipeline.preprocessing import audio_ops, image_ops, text_ops
from pipeline.records import CachedImageFeatures
from pipeline.modalities.names import AUDIO, IMAGE

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class AudioFeatureConfig:
    """Args: sample_rate: audio is resampled to it; clip_seconds: fixed clip length (crop/pad);
    n_mels, window, stride: log-mel parameters in samples; time_masks..freq_width: SpecAugment;
    mel_shift: in training, mel channels moved by up to this many (``audio_ops.mel_shift``)."""

    sample_rate: int = 16000
    clip_seconds: float = 4.0
    n_mels: int = 64
    window: int = 400
    stride: int = 160
    time_masks: int = 2
    time_width: int = 20
    freq_masks: int = 2
    freq_width: int = 8
    mel_shift: int = 0

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        return -(-self.clip_samples // self.stride)  # tensorflow-io pads the last frame


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Args:
    modalities: what each element carries: two or more registered modalities (text and image, say).
    batch_size: elements per batch.
    image_size: images are resized to image_size × image_size.
    backbone: which input scaling images get (see image_ops.BACKBONE_PREPROCESSING).
    image_augment: training-time image augmentation.
    audio: log-mel and SpecAugment parameters.
    shuffle_buffer: shuffle buffer size (training only).
    cache: "memory", "none", or a file prefix for an on-disk cache.
    seed: drives the shuffle and every augmentation.
    check_files: decode every file once up front and leave out the bad ones.
    item_text: training elements also carry ``item_text``, another of the item's captions
        than ``text`` (the item's own words for the fusion network: the query must not find
        itself in the item), and ``item_text_mask``, 0 for an item with one caption.
    test_views: outside training, elements with cached features of several views keep the
        first test_views of them (averaged by the embedder), or the first alone when 1.
    """

    modalities: tuple[str, ...] = ("text", IMAGE)
    batch_size: int = 64
    image_size: int = 128
    backbone: str = "mobilenet_v2"
    image_augment: image_ops.ImageAugmentConfig = image_ops.ImageAugmentConfig()
    audio: AudioFeatureConfig = AudioFeatureConfig()
    shuffle_buffer: int = 4096
    cache: str = "memory"
    seed: int = 0
    check_files: bool = True
    test_views: int = 1
    item_text: bool = False

    def __post_init__(self):
        unknown = [m for m in self.modalities if m not in modality_names()]
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be some of {modality_names()}, got {self.modalities}")


@dataclasses.dataclass
class RowSelection:
    """The rows a pipeline will use and the ones it left out, with why."""

    frame: pd.DataFrame
    skipped: list[Problem]
    total: int


def _file_problems(manifest: Manifest, frame: pd.DataFrame, modalities) -> list[Problem]:
    """check_files on some rows of a manifest, with problems naming the manifest's row numbers."""
    files = [m.name for m in file_modalities() if m.name in modalities]
    if not files or not len(frame):
        return []
    subset = Manifest(root=manifest.root, frame=frame, format=manifest.format)  # renumbers rows 0..n-1
    return [dataclasses.replace(p, row=int(frame.index[p.row])) for p in check_files(subset, modalities=files)]


def _empty_captions(manifest: Manifest, frame: pd.DataFrame, modalities) -> list[Problem]:
    """The manifest's empty-caption problems among ``frame``'s rows, when text is needed."""
    if "text" not in modalities:
        return []
    return [p for p in manifest.problems if p.row is not None and p.row in frame.index and p.kind == "empty_caption"]


def _log_skipped(skipped: list[Problem], where: str, total: int, max_logged: int) -> None:
    """A warning for each of the first ``max_logged`` problems, then one with the count."""
    for problem in skipped[:max_logged]:
        log.warning("skipping %s", problem)
    if skipped:
        more = f" ({len(skipped) - max_logged} more not shown)" if len(skipped) > max_logged else ""
        log.warning("%s: skipped %d bad row(s) of %d%s", where, len({p.row for p in skipped}), total, more)


def select_rows(
    manifest: Manifest, split: str | None, modalities, check: bool = True, max_logged: int = 10
) -> RowSelection:
    """Rows of ``split`` that have every modality in ``modalities`` and whose files decode."""
    frame = manifest.frame if split is None else manifest.split(split)
    total = len(frame)
    has_all = (frame[list(modalities)] != "").all(axis=1)
    skipped = _empty_captions(manifest, frame, modalities)
    frame = frame[has_all]
    if check:
        bad = _file_problems(manifest, frame, modalities)
        skipped += bad
        frame = frame.drop(index=sorted({p.row for p in bad}))
    where = f"{manifest.root.name}/{split or 'all'}"
    _log_skipped(skipped, where, total, max_logged)
    if len(frame) == 0:
        raise ValueError(
            f"{where}: no usable rows with {', '.join(modalities)} "
            f"({total} rows in the split, {int(has_all.sum())} with every modality). Check the split name "
            f"and run 'python -m pipeline data describe {manifest.root}'."
        )
    return RowSelection(frame, skipped, total)


def select_items(
    manifest: Manifest, split: str | None, modalities, check: bool = True, max_logged: int = 10, required=None
) -> RowSelection:
    """One row per item of ``split`` with all its captions (a list in ``text``), its first
    image and audio file and its label; items lacking a needed modality (``required``,
    default all of ``modalities``) are left out.

    The selection's frame is indexed by the manifest row of each item's first row.
    """
    frame = manifest.frame if split is None else manifest.split(split)
    total_items = frame["item_id"].nunique()
    files = [m.name for m in file_modalities() if m.name in modalities]
    skipped = _empty_captions(manifest, frame, modalities)  # left out of the item's caption list below; counted here
    if check:
        bad = _file_problems(manifest, frame, modalities)
        if bad:
            frame = frame.copy()
            for problem in bad:  # a bad file removes that modality from its row, not the whole item
                for m in files:
                    if frame.at[problem.row, m] == problem.file:
                        frame.at[problem.row, m] = ""
        skipped += bad
    first = lambda values: next((v for v in values if v), "")  # noqa: E731
    grouped = frame.groupby("item_id", sort=False)
    items = pd.DataFrame(
        {
            "first_row": grouped.apply(lambda g: int(g.index[0]), include_groups=False),
            "text": grouped["text"].agg(lambda v: [t for t in v if t]),
            **{m.name: grouped[m.name].agg(first) for m in file_modalities()},
            "label": grouped["label"].agg(first),
        }
    )
    if "contrast_group" in frame:
        items["contrast_group"] = grouped["contrast_group"].agg(first)
    # Every clip of an item (several spoken captions, say), for training to draw one per epoch:
    # its file, its transcript (the caption on the audio's own row) and its word timings.
    clip_rows = frame[frame[AUDIO] != ""].groupby("item_id", sort=False)
    as_lists = lambda column: (
        clip_rows[column].agg(list).reindex(items.index).map(lambda v: v if isinstance(v, list) else [])
    )  # noqa: E731
    items["audio_clips"] = as_lists(AUDIO)
    items["audio_clip_texts"] = as_lists("text")
    items["audio_clip_words"] = (
        as_lists("audio_words") if "audio_words" in frame else items["audio_clips"].map(lambda v: [""] * len(v))
    )
    items["audio_text"] = items["audio_clip_texts"].map(
        lambda texts: next((t for t in texts if t), "")
    )  # the first spoken caption
    usable = pd.Series(True, index=items.index)
    for m in modalities if required is None else required:
        usable &= items[m].map(len) > 0
    lacking = items.index[~usable].tolist()
    items = items[usable].reset_index().set_index("first_row")
    where = f"{manifest.root.name}/{split or 'all'}"
    _log_skipped(skipped, where, len(frame), max_logged)
    if lacking:
        log.warning(
            "%s: %d item(s) lack one of %s and are left out (e.g. %s)",
            where,
            len(lacking),
            ", ".join(modalities),
            ", ".join(map(str, lacking[:3])),
        )
    if len(items) == 0:
        raise ValueError(
            f"{where}: no usable items with {', '.join(modalities) or 'anything'} ({total_items} items in the split). "
            f"Check the split name and modalities, and run 'python -m pipeline data describe {manifest.root}'."
        )
    if skipped or lacking:
        log.warning("%s: using %d of %d items", where, len(items), total_items)
    return RowSelection(items, skipped, total_items)


def _load(element, config: InputConfig, training: bool):
    """Reads and decodes files: the deterministic, cacheable part (each modality's ``decode``)."""
    files = [m for m in file_modalities() if m.name in config.modalities]
    out = {k: v for k, v in element.items() if k not in {m.name for m in file_modalities()}}
    for modality in files:
        modality.load_element(element, out, config, training)
    return out


def _augment(element, seed, config: InputConfig, training: bool):
    """Training-time randomness (stateless, per-element seed) and the final feature steps:
    each modality's ``augment_element``, with the element's five seeds."""
    out = dict(element)
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    for modality in modalities():
        if modality.name in config.modalities:
            modality.augment_element(element, out, seeds, config, training)
    return out


def _id_timings(clip_words: pd.Series, vocabulary: list[str], where: str) -> list[list[str]]:
    """Each clip's ``audio_words`` with vocabulary ids for words ("id:start:end ...", OOV id 1);
    timings that cannot be read become "" (no timings) with a warning and a count."""
    parsed, bad = [], []
    for row, texts in clip_words.items():
        clips = []
        for text in texts:
            try:
                clips.append(audio_ops.parse_word_timings(text))
            except ValueError as error:
                bad.append(f"row {row}: {error}")
                clips.append([])
        parsed.append(clips)
    if bad:
        log.warning(
            "%s: %d clip(s) with unreadable audio_words, trained without word timings (e.g. %s)",
            where,
            len(bad),
            bad[0],
        )
    words = iter(text_ops.standardize_words([w for clips in parsed for timings in clips for w, _, _ in timings]))
    index = {word: i for i, word in enumerate(vocabulary)}
    return [
        [" ".join(f"{index.get(next(words), 1)}:{s}:{e}" for _, s, e in timings) for timings in clips]
        for clips in parsed
    ]


def pair_order(groups: list[str], seed: int) -> list[int]:
    """An order of positions in which every group of exactly two ("" = no group) fills one
    aligned block of two; everything else is paired in a fixed random order."""
    members: dict[str, list[int]] = {}
    for position, group in enumerate(groups):
        if group:
            members.setdefault(group, []).append(position)
    pairs = [m for m in members.values() if len(m) == 2]
    paired = {p for m in pairs for p in m}
    singles = [p for p in range(len(groups)) if p not in paired]
    singles = [singles[i] for i in np.random.default_rng(seed).permutation(len(singles))]
    return [p for m in pairs for p in m] + singles


def make_dataset(
    manifest: Manifest,
    split: str | None,
    config: InputConfig,
    training: bool,
    vectorizer=None,
    selection: RowSelection | None = None,
    by_item: bool = False,
    image_features: tuple[list[str], np.ndarray] | None = None,
    label_vocabulary: list[str] | None = None,
    keep_groups: bool = False,
    word_vocabulary: list[str] | None = None,
) -> tf.data.Dataset:
    """A batched dataset of dicts: ``row``, ``item`` (int key of item_id), and the modalities.

    ``text`` is a string, or token ids when ``vectorizer`` (a TextVectorization) is given;
    ``image`` is float32 [size, size, 3] scaled for the backbone; ``audio`` a log-mel
    spectrogram [frames, n_mels]. Training adds shuffling and augmentation.

    With ``by_item``, elements are items (``select_items``) and each epoch draws one of an
    item's captions at random. ``image_features`` = (image paths, feature matrix) feeds cached
    backbone features as ``image_features`` instead of pixels; a matrix [images, views, dim]
    holds several views of each image, of which training draws one per epoch. ``label_vocabulary`` adds an
    int ``label`` (-1 when unknown). With ``keep_groups`` (training), items sharing a
    ``contrast_group`` (colour-swapped twins) are shuffled as a pair and so always land in
    the same batch, each the other's hard negative. Training on items draws one of an item's
    audio clips per epoch, with ``audio_text`` its transcript. ``word_vocabulary`` (the
    vectorizer's) then adds ``audio_words``, int [frames]: the id of the word heard in each
    spectrogram frame, from the manifest's ``audio_words`` timings, and ``audio_words_timed``
    (1 where the clip has timings); timings that cannot be read are skipped with a warning
    and a count.
    """
    if selection is None:
        select = select_items if by_item else select_rows
        selection = select(manifest, split, config.modalities, check=config.check_files)
    frame = selection.frame
    pair_blocks = training and keep_groups and "contrast_group" in frame
    # Training on items draws one of each item's audio clips per epoch (with its transcript and timings).
    clip_lists = training and by_item and AUDIO in config.modalities and "audio_clips" in frame
    if pair_blocks:
        frame = frame.iloc[pair_order(frame["contrast_group"].fillna("").astype(str).tolist(), config.seed)]
    item_keys = pd.factorize(manifest.frame["item_id"])[0]
    columns = {
        "row": tf.constant(frame.index.to_numpy(), tf.int64),
        "item": tf.constant(item_keys[frame.index.to_numpy()], tf.int64),
    }
    if "text" in config.modalities:
        if by_item:
            columns["text"] = tf.ragged.constant(frame["text"].tolist(), dtype=tf.string)
            if AUDIO in config.modalities and "audio_text" in frame and not clip_lists:
                columns["audio_text"] = tf.constant(frame["audio_text"].tolist(), tf.string)
        else:
            columns["text"] = tf.constant(frame["text"].tolist(), tf.string)
    for modality in file_modalities():
        name = modality.name
        if name in config.modalities and not (name == IMAGE and image_features is not None):
            columns[name] = tf.constant([str(manifest.resolve(p)) for p in frame[name]], tf.string)
    if clip_lists:
        ragged = lambda values: tf.ragged.constant(values, dtype=tf.string, ragged_rank=1)  # noqa: E731
        columns[AUDIO] = ragged([[str(manifest.resolve(p)) for p in clips] for clips in frame["audio_clips"]])
        if "text" in config.modalities:
            columns["audio_text"] = ragged(frame["audio_clip_texts"].tolist())
        if word_vocabulary is not None:
            columns["audio_words"] = ragged(
                _id_timings(frame["audio_clip_words"], word_vocabulary, f"{manifest.root.name}/{split or 'all'}")
            )
    if image_features is not None and IMAGE in config.modalities:
        cached = CachedImageFeatures(*image_features)
        try:
            rows = cached.rows_of(frame[IMAGE])
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        columns["image_features"] = tf.constant(cached.features[rows])
    if label_vocabulary is not None:
        label_ids = {label: i for i, label in enumerate(label_vocabulary)}
        columns["label"] = tf.constant([label_ids.get(v, -1) for v in frame["label"]], tf.int64)

    options = tf.data.Options()
    options.deterministic = True
    ds = tf.data.Dataset.from_tensor_slices(columns).with_options(options)
    ds = ds.map(lambda e: _load(e, config, training), num_parallel_calls=AUTOTUNE)
    if config.cache == "memory":
        ds = ds.cache()
    elif config.cache not in ("none", "", None):
        ds = ds.cache(config.cache)
    if training and pair_blocks:
        # Shuffle blocks of two consecutive elements (a twin pair, or two single items paired
        # once at random): ragged_batch copes with the variable-length captions and audio.
        blocks = -(-len(frame) // 2)
        ds = (
            ds.ragged_batch(2)
            .shuffle(min(config.shuffle_buffer, blocks), seed=config.seed, reshuffle_each_iteration=True)
            .unbatch()
        )
        # unbatch loses the element count; Keras needs it to know an epoch's steps (without it, it
        # warns that the input "ran out of data" at the end of the first epochs).
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(frame)))
    elif training:
        ds = ds.shuffle(min(config.shuffle_buffer, len(frame)), seed=config.seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=config.seed + 1, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(lambda e, s: _augment(e, s, config, training), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(
        config.batch_size, drop_remainder=training and len(frame) >= config.batch_size, num_parallel_calls=AUTOTUNE
    )
    if vectorizer is not None and "text" in config.modalities:
        text_keys = [k for k in ("text", "audio_text", "item_text") if k in ds.element_spec]
        ds = ds.map(lambda b: {**b, **{k: vectorizer(b[k]) for k in text_keys}}, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
