"""SavedModels in TF Serving's layout: ``saved_models/<model>/<version>/saved_model.pb``.

Four models, each with one ``serving_default`` signature over raw inputs, built from core
TensorFlow ops only so that the stock ``tensorflow/serving`` image loads them:

==============  ==========================  =========================================
model           input                       outputs
==============  ==========================  =========================================
text_encoder    ``text`` string [batch]     ``embedding`` float32 [batch, dim]
image_encoder   ``image_bytes`` [batch]     ``embedding`` (JPEG, PNG, GIF or BMP bytes)
audio_encoder   ``audio_bytes`` [batch]     ``embedding`` (WAV bytes, any PCM rate)
retriever       ``text`` string [batch]     ``item_ids`` string [batch, k], ``scores``
==============  ==========================  =========================================

``retriever`` holds an index's vectors, ids and Naive Bayes stage inside it and ranks them as
``pipeline search`` does on that index: by the dense score (the text encoder's query vector ·
item vector), the Naive Bayes log-likelihood, or the two fused (the index's ranking). Versions count up, one number for the
models written together; an existing version is never overwritten. ``models.config`` beside
them lets one server serve them all.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline import paths
from pipeline.io_utils import atomic_path, write_text_atomic
from pipeline.modalities import file_modalities
from pipeline.modalities import modality as get_modality

log = logging.getLogger(__name__)

SERVED_MODELS = ("text_encoder", "image_encoder", "audio_encoder", "retriever")
CONTAINER_ROOT = "/models"  # where the README's `docker run` mounts saved_models/


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why."""


def next_version(root: Path, names=SERVED_MODELS) -> int:
    """One more than the highest version of any served model under ``root``."""
    versions = [int(p.name) for name in names for p in (root / name).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _write(name: str, archive: keras.export.ExportArchive, root: Path, version: int) -> Path:
    target = root / name / str(version)
    if target.exists():
        raise ExportError(f"{target} exists already; versions are never overwritten")
    with atomic_path(target) as tmp:
        archive.write_out(str(tmp), verbose=False)
    log.info("exported %s to %s", name, target)
    return target


def text_archive(model, vectorizer) -> keras.export.ExportArchive:
    archive = keras.export.ExportArchive()
    if not vectorizer.built:  # a vectorizer restored from vocab.txt is built on its first call
        vectorizer(tf.constant([""]))
    archive.track(model.text_encoder)
    archive.track(vectorizer)

    def serve(text):
        return {"embedding": model.text_encoder(vectorizer(text), training=False)}

    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    return archive


def file_archive(model, name: str, input_config) -> keras.export.ExportArchive:
    """Encoded files of modality ``name`` in (``<name>_bytes``), unit vectors out, through the
    modality's own ``prepare`` in its serving form: core ops only, which the stock server has
    (audio: WAV decoding and an FFT resampler, not tensorflow-io; the client converts FLAC or
    OGG clips to WAV, ``pipeline.tf_serving.client``)."""
    reader = get_modality(name)
    archive = keras.export.ExportArchive()
    archive.track(model.tower(name))
    spec = reader.input_spec(input_config)

    def serve(file_bytes):
        inputs = tf.map_fn(
            lambda data: reader.prepare(data, input_config, serving=True), file_bytes, fn_output_signature=spec
        )
        return {"embedding": model.encode_prepared(name, inputs)}

    archive.add_endpoint(
        "serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name=reader.export_input)]
    )
    return archive


def retriever_archive(
    model,
    vectorizer,
    vectors: np.ndarray,
    item_ids: list[str],
    k: int,
    scorer=None,
    ranking: str = "dense",
    weight: float = 0.5,
) -> keras.export.ExportArchive:
    """Query text in, the top ``k`` item ids and their ranking scores out, ranked as the
    Searcher ranks text queries on that index (``retrieval/graph_ranking.py``): ``ranking``
    dense, or with the Naive Bayes stage ``scorer`` nb, weighted or rrf. The vectors and the
    Naive Bayes parameters ride along as variables (so the SavedModel's graph stays small
    however large the index is)."""
    from pipeline.retrieval.graph_ranking import HybridRanker
    from pipeline.retrieval.searcher import MIN_CANDIDATES

    if len(item_ids) == 0:
        raise ExportError("the index is empty: nothing for a retriever to return")
    archive = keras.export.ExportArchive()
    if not vectorizer.built:
        vectorizer(tf.constant([""]))
    archive.track(model.text_encoder)
    archive.track(vectorizer)
    ranker = HybridRanker(vectors, item_ids, scorer, ranking, weight, k, MIN_CANDIDATES)
    archive.track(ranker)

    def serve(text):
        return ranker(model.text_encoder(vectorizer(text), training=False), text)

    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    return archive


def export_encoders(model, vectorizer, config, root: Path | None = None, version: int | None = None) -> dict[str, Path]:
    """Exports every encoder the model has under one new version; returns {name: folder}."""
    from pipeline.run_artifacts import input_config_for

    root = Path(root or paths.models_dir())
    version = version or next_version(root)
    out = {}
    modalities = config.data.modalities
    if "text" in modalities:
        out["text_encoder"] = _write("text_encoder", text_archive(model, vectorizer), root, version)
    for reader in file_modalities():
        if reader.name in modalities:
            archive = file_archive(model, reader.name, input_config_for(config))
            out[f"{reader.name}_encoder"] = _write(f"{reader.name}_encoder", archive, root, version)
    return out


def models_config(root: Path, container_root: str = CONTAINER_ROOT) -> str:
    """TF Serving's ``--model_config_file`` text for every served model with a version under
    ``root``, as the server sees them with ``root`` mounted at ``container_root``."""
    entries = []
    for name in SERVED_MODELS:
        if any(p.is_dir() and p.name.isdigit() for p in (root / name).glob("*")):
            entries.append(
                "  config {\n"
                f'    name: "{name}"\n'
                f'    base_path: "{container_root}/{name}"\n'
                '    model_platform: "tensorflow"\n'
                "  }\n"
            )
    return "model_config_list {\n" + "".join(entries) + "}\n"


def write_models_config(root: Path | None = None) -> Path:
    root = Path(root or paths.models_dir())
    path = root / "models.config"
    write_text_atomic(path, models_config(root))
    return path


@dataclasses.dataclass
class ServingExport:
    version: int
    models: dict[str, Path]
    models_config: Path


def export_for_serving(run=None, index: str | None = None, root: Path | None = None, k: int = 10) -> ServingExport:
    """Exports a run's encoders, and with ``index`` a retriever over that index, as one new
    version; writes ``models.config``. With an index and no run, the index's own run is used;
    a run other than the index's is refused (its vectors would not match the query encoder)."""
    from pipeline.inference import Encoder
    from pipeline.retrieval.searcher import Searcher

    if k < 1:
        raise ExportError(f"k must be at least 1, not {k}")
    root = Path(root or paths.models_dir())
    if index is not None:
        searcher = Searcher.open(index)  # checks that the index's run is there, unchanged
        encoder = searcher.encoder
        if run is not None:
            from pipeline.run_artifacts import resolve_run

            if resolve_run(run) != encoder.run_dir:
                raise ExportError(
                    f"index {searcher.index.name} was built by {encoder.run_dir}, not {resolve_run(run)}; "
                    f"export it with --run {encoder.run_dir} (or leave --run out), or rebuild the index with this run"
                )
    else:
        searcher, encoder = None, Encoder.from_run(run or "latest")
    version = next_version(root)
    models = export_encoders(encoder.model, encoder.vectorizer, encoder.config, root, version)
    if searcher is not None:
        index = searcher.index
        ranking = index.record.ranking
        vectors, metadata, naive_bayes = index.live_arrays()  # an index's changes since its base included
        archive = retriever_archive(
            encoder.model,
            encoder.vectorizer,
            vectors,
            metadata["item_id"].tolist(),
            k,
            naive_bayes,
            ranking.method,
            ranking.weight,
        )
        models["retriever"] = _write("retriever", archive, root, version)
    return ServingExport(version, models, write_models_config(root))
