"""Embeds a collection with Apache Beam: the same preprocessing and encoders as ``index``.

    items ─ Reshuffle ─ PrepareFiles ─┬─ RunInference(EncoderModelHandler) ─ WriteToParquet
                                      └─ dead letters (errors-*.jsonl)

``PrepareFiles`` reads each file through Beam's filesystems, checks its header with the
modality's ``check`` before any TensorFlow op sees it, and runs the modality's ``prepare``
(what training, search and the TF Serving export run). A file that fails goes to the dead
letters and out of its item, as in the in-process index; an item left with neither a file
nor a caption is counted and dropped. ``EncoderModelHandler`` is RunInference's model handler
over the run's ``Encoder``; its items go through ``combine_item_vectors``, the in-process
index's own arithmetic, so the two give the same vectors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler

log = logging.getLogger(__name__)

NAMESPACE = "embed"
PROGRESS_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class EmbedItem:
    """One item to embed: its files by modality (paths or URIs) and its captions."""

    position: int  # its place in the input: the index keeps the input's order
    item_id: str
    split: str = ""
    label: str = ""
    files: tuple[tuple[str, str], ...] = ()  # (modality, path)
    captions: tuple[str, ...] = ()


@dataclasses.dataclass
class PreparedItem:
    """An item with each readable file through its modality's ``prepare``."""

    item: EmbedItem
    inputs: dict  # modality -> prepared input (np.ndarray)


def set_tf_threads(threads: int | None) -> None:
    """TensorFlow's thread pools for this worker process (before TensorFlow starts its runtime)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:  # the runtime already started in this process (in-memory runner): keep its pools
        log.info("TensorFlow already started in this process: its thread pools stay as they are")


def read_file(path: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


class PrepareFiles(beam.DoFn):
    """EmbedItem → PreparedItem, and a dead letter (tagged ``errors``) for each file that fails."""

    def __init__(self, input_config, limits, threads: int | None):
        super().__init__()
        self.input_config, self.limits, self.threads = input_config, limits, threads

    def setup(self) -> None:
        import tensorflow as tf

        from pipeline.modalities import file_modalities

        set_tf_threads(self.threads)
        config = self.input_config
        # Traced once per worker: an eager call per file would retrace the decoders.
        self.prepare = {
            m.name: tf.function(
                lambda data, m=m: m.prepare(data, config), input_signature=[tf.TensorSpec([], tf.string)]
            )
            for m in file_modalities()
        }

    def process(self, item: EmbedItem):
        import tensorflow as tf

        from pipeline.modalities import modality
        from pipeline.modalities.base import first_line

        inputs = {}
        for name, path in item.files:
            try:
                data = read_file(path)
                modality(name).check(data, self.limits)
                inputs[name] = self.prepare[name](tf.constant(data)).numpy()
            except Exception as error:  # noqa: BLE001 - any decoder, filesystem or header error: a dead letter
                beam.metrics.Metrics.counter(NAMESPACE, "files_failed").inc()
                yield beam.pvalue.TaggedOutput(
                    "errors",
                    json.dumps(
                        {"path": path, "item": item.item_id, "modality": name, "error": first_line(error)[:500]}
                    ),
                )
        if not inputs and not item.captions:
            beam.metrics.Metrics.counter(NAMESPACE, "items_skipped").inc()
            return
        beam.metrics.Metrics.counter(NAMESPACE, "files_prepared").inc(len(inputs))
        yield PreparedItem(item, inputs)


class EncoderModelHandler(ModelHandler):
    """RunInference over a run's encoders: a batch of PreparedItems → one row per item.

    Args:
        run: the run folder (local, or a Beam filesystem URI copied to the worker first).
        threads: TensorFlow threads per worker (None: TensorFlow's choice).
        batch_size: the largest batch of items RunInference hands over.

    Example:
        >>> RunInference(EncoderModelHandler("saved_models/runs/latest"))  # doctest: +SKIP
    """

    def __init__(self, run: str, threads: int | None = None, batch_size: int = 64):
        super().__init__()
        self.run, self.threads, self.batch_size = str(run), threads, int(batch_size)

    def load_model(self):
        from pipeline.inference import Encoder

        set_tf_threads(self.threads)
        return LoadedEncoder(Encoder.from_run(local_run_folder(self.run)), _Progress())

    def batch_elements_kwargs(self):
        # Full batches from the start: Beam's default grows them from 1, which starves the model.
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

    def run_inference(self, batch: Sequence[PreparedItem], model, inference_args=None) -> Iterable[dict]:
        rows = encode_prepared_items(model.encoder, list(batch))
        beam.metrics.Metrics.counter(NAMESPACE, "items_embedded").inc(len(rows))
        model.progress.update(len(batch))
        return rows

    def get_metrics_namespace(self) -> str:
        return "embed_inference"


@dataclasses.dataclass
class LoadedEncoder:
    """What ``load_model`` gives RunInference: the encoder and this worker's progress line."""

    encoder: object
    progress: _Progress


class _Progress:
    """A line on stderr every PROGRESS_SECONDS from each worker: items done and the rate."""

    def __init__(self):
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            print(f"[embed] worker {os.getpid()}: {self.done} items, {rate:.1f} items/s", file=sys.stderr, flush=True)


def encode_prepared_items(encoder, batch: list[PreparedItem]) -> list[dict]:
    """The shard rows of a batch of prepared items (the in-process index's arithmetic)."""
    from pipeline.retrieval.index_builder import combine_item_vectors, item_metadata

    model = encoder.model
    n, dim = len(batch), model.experiment.embedding_dim
    per_modality, masks = {}, {}
    for name in model.content:
        has = np.array([name in p.inputs for p in batch], bool)
        vectors = np.zeros((n, dim), np.float32)
        if has.any():
            stacked = np.stack([p.inputs[name] for p in batch if name in p.inputs])
            vectors[has] = encoder.encode_prepared(name, stacked)
        per_modality[name], masks[name] = vectors, has.astype(np.float32)
    captions = [list(p.item.captions) for p in batch]
    flat = [c for texts in captions for c in texts]
    owner = np.array([i for i, texts in enumerate(captions) for _ in texts], np.int64)
    caption_vectors = encoder.encode_text(flat) if flat else np.zeros((0, dim), np.float32)
    combined = combine_item_vectors(model, per_modality, masks, caption_vectors, owner, n, fuse_text=True)
    file_of = {m: [dict(p.item.files).get(m, "") for p in batch] for m in model.content}
    metadata = item_metadata(
        [p.item.item_id for p in batch],
        [p.item.split for p in batch],
        [p.item.label for p in batch],
        file_of,
        masks,
        combined.text_only,
        captions,
    )
    rows = []
    for i in np.flatnonzero(combined.usable):
        mine = caption_vectors[owner == i] if len(owner) else caption_vectors
        rows.append(
            {
                **{c: str(v) for c, v in metadata.iloc[int(i)].items()},
                "captions": captions[i],
                "vector": combined.vectors[i].tolist(),
                "content_vector": combined.content_vectors[i].tolist(),
                "caption_vectors": [v.tolist() for v in mine],
                "position": batch[i].item.position,
            }
        )
    return rows


def local_run_folder(run: str) -> str:
    """``run`` itself when it is a local folder; else its files copied from a Beam filesystem
    (``gs://...``) into a temporary folder on this worker."""
    if os.path.isdir(run):
        return run
    import tempfile

    from apache_beam.io.filesystems import FileSystems

    local = tempfile.mkdtemp(prefix="pipeline-run-")
    for found in FileSystems.match([FileSystems.join(run, "*")])[0].metadata_list:
        name = found.path.rstrip("/").rsplit("/", 1)[-1]
        with open(os.path.join(local, name), "wb") as out:
            out.write(read_file(found.path))
    return local


def build_pipeline(pipeline, items: list[EmbedItem], handler, prepare: PrepareFiles, out: str, shards: int):
    """The transforms, applied to ``pipeline``."""
    from apache_beam.ml.inference.base import RunInference

    from pipeline.batch_embed.shards import ERRORS_PREFIX, SHARD_PREFIX, join, shard_schema
    from pipeline.retrieval.index_store import metadata_columns

    prepared = (
        pipeline
        | "Items" >> beam.Create(items)
        | "Spread over workers" >> beam.Reshuffle()
        | "Prepare files" >> beam.ParDo(prepare).with_outputs("errors", main="items")
    )
    (
        prepared.items
        | "Embed" >> RunInference(handler)
        | "Write shards"
        >> beam.io.WriteToParquet(
            join(out, SHARD_PREFIX),
            shard_schema(metadata_columns()),
            file_name_suffix=".parquet",
            num_shards=shards,
        )
    )
    prepared.errors | "Write dead letters" >> beam.io.WriteToText(
        join(out, ERRORS_PREFIX), file_name_suffix=".jsonl", num_shards=1
    )
    return pipeline
