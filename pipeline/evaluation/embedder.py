"""Embeds every item of a split with a model: captions, images, audio and fused items."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from pipeline.data.input_pipeline import make_dataset, select_items
from pipeline.data.manifest import Manifest
from pipeline.modalities import file_modalities


class MissingModalities(ValueError):
    """The dataset lacks the modalities the model needs."""


@dataclasses.dataclass
class SplitEmbeddings:
    item_ids: list[str]
    labels: np.ndarray  # one per item, "" when unknown
    contrast_groups: np.ndarray  # one per item, "" when none
    vectors: dict[str, np.ndarray]  # modality → [n, dim]; "text" has one row per caption
    owners: dict[str, np.ndarray]  # modality → item index of each row
    captions: list[str]


@dataclasses.dataclass
class PreparedSplit:
    """A split's items and their decoded, preprocessed inputs, kept in memory so that
    re-embedding them (every epoch, on dev) only runs the encoders."""

    items: object  # DataFrame of selected items
    modalities: tuple[str, ...]
    captions: list[str]
    caption_owner: np.ndarray
    batches: dict[str, list[tuple[np.ndarray, dict]]]  # modality → [(item indices, inputs)]
    contrast_groups: np.ndarray


def prepare_split(
    model,
    input_config,
    manifest: Manifest,
    split: str | None,
    modalities=None,
    max_items=None,
    image_features=None,
    batch_size: int = 128,
) -> PreparedSplit:
    """Selects the items of ``split`` that have every one of ``modalities`` and prepares their inputs.

    ``modalities`` defaults to those the model was trained on and the dataset has; fewer than
    two of them is an error naming what is missing.
    """
    trained = tuple(model.experiment.data.modalities)
    available = manifest.modalities()
    if modalities is None:
        modalities = tuple(m for m in trained if m in available)
    if len(modalities) < 2:
        raise MissingModalities(
            f"{manifest.root}: the model works on {', '.join(trained)}, the dataset has {', '.join(available) or 'nothing'}; "
            f"evaluation needs at least two of the model's modalities in the dataset."
        )
    selection = select_items(manifest, split, modalities)
    if max_items is not None and len(selection.frame) > max_items:
        selection = dataclasses.replace(selection, frame=selection.frame.iloc[:max_items])
    items = selection.frame
    index_of_row = {row: i for i, row in enumerate(items.index)}
    captions, owner = [], []
    if "text" in modalities:
        for i, texts in enumerate(items["text"]):
            captions.extend(texts)
            owner.extend([i] * len(texts))
    batches = {}
    for name in (m.name for m in file_modalities()):
        if name not in modalities:
            continue
        config = dataclasses.replace(
            input_config, modalities=(name,), batch_size=batch_size, cache="none", check_files=False
        )
        ds = make_dataset(
            manifest,
            split,
            config,
            training=False,
            selection=selection,
            by_item=True,
            image_features=image_features,  # used where the modality is the image
        )
        batches[name] = [
            (
                np.array([index_of_row[r] for r in batch["row"].numpy()]),
                {k: v for k, v in batch.items() if k in (name, f"{name}_features")},
            )
            for batch in ds
        ]
    contrast = (
        manifest.frame.loc[items.index, "contrast_group"].to_numpy()
        if "contrast_group" in manifest.frame
        else np.array([""] * len(items))
    )
    return PreparedSplit(items, tuple(modalities), captions, np.array(owner), batches, contrast)


def embed_prepared(model, vectorizer, prepared: PreparedSplit) -> SplitEmbeddings:
    items = prepared.items
    vectors, owners = {}, {}
    if "text" in prepared.modalities:
        texts = prepared.captions
        # predict runs the encoder as one compiled function: eager calls of a recurrent text
        # model cost several times as much.
        ids = vectorizer(tf.constant(texts))  # or, in training, cached backbone features
        vectors["text"], owners["text"] = (
            model.text_tower_for(ids).predict(ids, batch_size=512, verbose=0),
            prepared.caption_owner,
        )
    for name, batches in prepared.batches.items():
        vectors[name] = np.concatenate([model.encode_batch(name, inputs) for _, inputs in batches])
        owners[name] = np.concatenate([index for index, _ in batches])
    content = [m for m in model.content if m in vectors]
    if len(content) > 1:
        # Every evaluated item has all its content modalities, so rows line up after sorting.
        # Its words stay out of its vector: the captions are the queries.
        ordered = {m: vectors[m][np.argsort(owners[m])] for m in content}
        vectors["item"], owners["item"] = (
            fuse_items(model, ordered, {m: np.ones(len(items), "float32") for m in content}),
            np.arange(len(items)),
        )
    return SplitEmbeddings(
        items["item_id"].tolist(),
        items["label"].to_numpy(),
        prepared.contrast_groups,
        vectors,
        owners,
        prepared.captions,
    )


def fuse_items(model, vectors: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
    """Item vectors [items, dim] through the model's fusion network from the modality vectors
    an item has (``vectors`` and ``masks`` per modality; a modality not given is absent)."""
    n = len(next(iter(vectors.values())))
    inputs = {}
    for m in model.fused:
        inputs[m] = vectors.get(m, np.zeros((n, model.experiment.embedding_dim), "float32"))
        inputs[f"{m}_mask"] = masks.get(m, np.zeros(n, "float32"))
    return np.asarray(model.fusion(inputs, training=False))


@dataclasses.dataclass(frozen=True)
class SplitRequest:
    """Which items of which split to embed, and with what: ``embed_split``'s arguments as one
    value (training scores the dev items with it every epoch; ``dataclasses.replace`` changes one).

    Args:
        vectorizer: the run's TextVectorization.
        input_config: the input pipeline's settings (``run_artifacts.input_config_for``).
        manifest / split: the dataset and split (None: every item).
        modalities: those to embed (default: the model's that the dataset has).
        max_items: the first this many items (None: all).
        image_features: cached backbone features to use instead of pixels.
    """

    vectorizer: object
    input_config: object
    manifest: Manifest
    split: str | None
    modalities: tuple[str, ...] | None = None
    max_items: int | None = None
    image_features: object = None

    def prepare(self, model, batch_size: int = 128) -> PreparedSplit:
        return prepare_split(
            model,
            self.input_config,
            self.manifest,
            self.split,
            self.modalities,
            self.max_items,
            self.image_features,
            batch_size,
        )

    def embed(self, model, batch_size: int = 128) -> SplitEmbeddings:
        return embed_prepared(model, self.vectorizer, self.prepare(model, batch_size))


def embed_split(
    model,
    vectorizer,
    input_config,
    manifest: Manifest,
    split: str | None,
    modalities=None,
    max_items: int | None = None,
    image_features=None,
    batch_size: int = 128,
) -> SplitEmbeddings:
    """Embeds the items of ``split``: ``prepare_split`` then ``embed_prepared`` (``SplitRequest.embed``)."""
    request = SplitRequest(vectorizer, input_config, manifest, split, modalities, max_items, image_features)
    return request.embed(model, batch_size)
