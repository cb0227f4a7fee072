"""Trains the early-fusion baseline (``models/early_fusion.py``) on a config's dataset.

The data, vocabulary and input pipeline are the main trainer's; only the model differs: one
network on the image's pixels and the clip's log-mels together instead of one encoder per
modality and a fusion network. The epoch kept is the one with the best dev text→item mAP.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import numpy as np

from pipeline.config import ExperimentConfig
from pipeline.data.adapters import load_dataset
from pipeline.data.input_pipeline import make_dataset, select_items
from pipeline.data.named_datasets import resolve_data_path
from pipeline.evaluation.retrieval_metrics import class_retrieval_report
from pipeline.modalities.names import AUDIO, IMAGE
from pipeline.models.early_fusion import EarlyFusionRetrieval, build_early_fusion_encoder
from pipeline.models.text_encoder import build_text_encoder
from pipeline.preprocessing import text_ops
from pipeline.run_artifacts import input_config_for

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EarlyFusionResult:
    model: EarlyFusionRetrieval
    vectorizer: object
    manifest: object
    input_config: object
    labels: list[str]
    best_epoch: int
    seconds: float


def embed_items(model: EarlyFusionRetrieval, manifest, input_config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(item vectors, item labels) of a split's items that have an image and audio."""
    selection = select_items(manifest, split, (IMAGE, AUDIO))
    config = dataclasses.replace(input_config, modalities=(IMAGE, AUDIO), cache="none", check_files=False)
    ds = make_dataset(manifest, split, config, training=False, selection=selection, by_item=True)
    rows, vectors = [], []
    for batch in ds:
        vectors.append(model.item_encoder({IMAGE: batch[IMAGE], AUDIO: batch[AUDIO]}, training=False).numpy())
        rows.extend(batch["row"].numpy().tolist())
    labels = selection.frame.loc[rows, "label"].to_numpy()
    return np.concatenate(vectors), labels


def text_vectors(model, vectorizer, texts: list[str]) -> np.ndarray:
    """Unit vectors of ``texts`` from the model's text encoder."""
    return model.text_encoder(vectorizer(np.array(texts)), training=False).numpy()


def caption_labels(frame) -> dict[str, str]:
    """{caption: the label of the items it describes} (the most frequent one, if several)."""
    rows = frame[["text", "label"]].explode("text")
    return rows.groupby("text")["label"].agg(lambda labels: labels.value_counts().index[0]).to_dict()


def train_early_fusion(config: ExperimentConfig, hidden: int = 512, verbose: int = 2) -> EarlyFusionResult:
    """Trains text encoder + early-fusion item encoder on ``config``'s data (text, image, audio)."""
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    manifest = load_dataset(resolve_data_path(config.data.path), config.data.format or None)
    modalities = ("text", IMAGE, AUDIO)
    train_items = select_items(manifest, config.data.train_split, modalities)
    captions = [t for texts in train_items.frame["text"] for t in texts]
    vectorizer = text_ops.text_vectorizer(config.text, captions)
    labels = sorted({v for v in train_items.frame["label"] if v})
    input_config = dataclasses.replace(input_config_for(config), modalities=modalities)
    train_ds = make_dataset(
        manifest,
        config.data.train_split,
        input_config,
        training=True,
        vectorizer=vectorizer,
        selection=train_items,
        by_item=True,
        label_vocabulary=labels,
        keep_groups=False,
    )
    image_shape = (config.image.image_size, config.image.image_size, 3)
    audio_shape = (input_config.audio.frames, config.audio.n_mels)
    model = EarlyFusionRetrieval(
        build_text_encoder(config.text, len(vectorizer.get_vocabulary()), config.embedding_dim),
        build_early_fusion_encoder(
            image_shape, audio_shape, config.embedding_dim, hidden=hidden, dropout=config.fusion.modality_dropout / 3
        ),
        temperature=config.train.temperature,
        positives=config.train.positives,
    )
    steps = max(len(train_items.frame) // config.train.batch_size, 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.train.learning_rate, decay_steps=steps * config.train.epochs, alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.train.weight_decay, clipnorm=5.0),
        jit_compile=False,
    )

    word_label = caption_labels(train_items.frame)
    words = sorted(word_label)
    best = {"map": -1.0, "epoch": 0, "weights": None}

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            items, item_labels = embed_items(model, manifest, input_config, config.data.dev_split)
            score = class_retrieval_report(
                text_vectors(model, vectorizer, words), [word_label[w] for w in words], items, item_labels
            )["mAP"]
            if logs is not None:
                logs["dev_text_item_map"] = score
            log.info("early fusion, epoch %d: dev text->item mAP %.1f", epoch + 1, score)
            if score > best["map"]:
                best.update(map=score, epoch=epoch + 1, weights=model.get_weights())

    model.fit(train_ds, epochs=config.train.epochs, callbacks=[KeepBest()], verbose=verbose)
    model.set_weights(best["weights"])
    return EarlyFusionResult(model, vectorizer, manifest, input_config, labels, best["epoch"], time.time() - start)
