"""The ``embed`` command (registered in pipeline.cli): a collection's vectors written by an
Apache Beam pipeline. Imports nothing heavy until it runs."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

GLOB_CHARS = "*?["
COUNTERS = ("items_embedded", "files_prepared", "files_failed", "items_skipped")  # beam_pipeline's metrics


class EmbedCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="latest", help="run whose encoders embed the items (default: latest)")
    parser.add_argument(
        "--data",
        required=True,
        help="a dataset folder (any layout `data formats` lists) or a file pattern such as 'photos/*.jpg' or "
        "'gs://bucket/clips/*.wav' (read through Beam's filesystems)",
    )
    parser.add_argument(
        "--out", required=True, help="folder for the shards (local, gs://, s3://); must not hold an earlier result"
    )
    parser.add_argument("--format", default=None, help="dataset layout (default: detected)")
    parser.add_argument("--split", default=None, help="embed only this split (default: every item)")
    parser.add_argument(
        "--modalities",
        nargs="+",
        default=None,
        metavar="NAME",
        help="file modalities to embed (default: every one the model has); captions are always embedded",
    )
    parser.add_argument("--shards", type=int, default=0, help="Parquet shards to write (default: the runner decides)")
    parser.add_argument("--batch-size", type=int, default=64, help="items per model call (default: 64)")
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        help="TensorFlow threads in each worker (default with the DirectRunner: the cores shared among its workers)",
    )
    parser.add_argument(
        "--worker-run",
        default=None,
        metavar="URI",
        help="the run folder as the workers see it, e.g. a copy on gs:// (default: --run's folder, for local workers)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result in --out")
    parser.epilog = (
        "Any other option goes to Beam: --runner (default DirectRunner, run here by Beam's FnApiRunner, "
        "multi-processing), --direct_num_workers N, or a cluster runner's options (docs/scale.md)."
    )


def beam_options(extra: list[str]):
    """Beam's pipeline options from the command line's other options; the runner is always
    named: the DirectRunner (Beam's FnApiRunner, never its Prism runner, which downloads a
    binary) unless another is given."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    options = PipelineOptions(list(extra))
    standard = options.view_as(StandardOptions)
    direct = options.view_as(DirectOptions)
    runner = standard.runner or "DirectRunner"
    if runner in ("DirectRunner", "FnApiRunner"):
        standard.runner = None  # the runner object is passed to beam.Pipeline (below)
        workers = direct.direct_num_workers or 1
        direct.direct_num_workers = workers
        if direct.direct_running_mode in (None, "in_memory") and workers > 1:
            direct.direct_running_mode = "multi_processing"
        return options, "DirectRunner", workers
    standard.runner = runner
    return options, runner, None


def items_to_embed(data: str, fmt: str | None, split: str | None, modalities: list[str]):
    """The items of a dataset folder, or one item per file of a pattern."""
    from pipeline.batch_embed.beam_pipeline import EmbedItem

    if any(c in data for c in GLOB_CHARS) or "://" in data:
        return _pattern_items(data, modalities), data
    from pipeline.data.adapters import load_dataset
    from pipeline.data.input_pipeline import select_items

    manifest = load_dataset(Path(data), fmt)
    available = [m for m in modalities if m in manifest.modalities()]
    use = (["text"] if "text" in manifest.modalities() else []) + available
    # Files are checked in the pipeline (a bad one becomes a dead letter), not here.
    items = select_items(manifest, split, use, check=False, required=()).frame
    split_of = manifest.frame.groupby("item_id", sort=False)["split"].first()
    # Columns as embed_items reads them (the in-process index), one Python pass over the rows.
    ids = items["item_id"].astype(str).tolist()
    splits = items["item_id"].map(split_of).fillna("").astype(str).tolist()
    labels = items["label"].fillna("").astype(str).tolist()
    captions = items["text"].tolist() if "text" in items else [()] * len(items)
    files = {m: items[m].tolist() for m in available}
    out = [
        EmbedItem(
            position,
            ids[position],
            splits[position],
            labels[position],
            tuple((m, os.path.abspath(manifest.resolve(files[m][position]))) for m in available if files[m][position]),
            tuple(captions[position]),
        )
        for position in range(len(items))
    ]
    return out, str(manifest.root)


def _pattern_items(pattern: str, modalities: list[str]):
    from apache_beam.io.filesystems import FileSystems

    from pipeline.batch_embed.beam_pipeline import EmbedItem
    from pipeline.modalities import file_modalities

    by_extension = {ext: m.name for m in file_modalities() if m.name in modalities for ext in m.extensions}
    if "://" in pattern:
        found = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    else:
        found = sorted(os.path.abspath(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    items, seen = [], {}
    for path in found:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        stem, ext = os.path.splitext(name)
        modality = by_extension.get(ext.lower())
        if modality is None:
            continue
        item_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "item"
        seen[item_id] = seen.get(item_id, 0) + 1
        if seen[item_id] > 1:
            item_id = f"{item_id}-{seen[item_id]}"
        items.append(EmbedItem(len(items), item_id, files=((modality, path),)))
    if not items:
        raise EmbedCommandError(f"no file matches {pattern} with an extension of {', '.join(sorted(by_extension))}")
    return items


def _prepare_out(out: str, overwrite: bool) -> None:
    from apache_beam.io.filesystems import FileSystems

    from pipeline.batch_embed.shards import ERRORS_PREFIX, LISTING, SHARD_PREFIX, join

    earlier = [
        m.path
        for pattern in (LISTING, f"{SHARD_PREFIX}-*", f"{ERRORS_PREFIX}-*")
        for m in FileSystems.match([join(out, pattern)])[0].metadata_list
    ]
    if earlier and not overwrite:
        raise EmbedCommandError(
            f"{out} already holds embeddings ({len(earlier)} files); choose a new --out or pass --overwrite"
        )
    if earlier:
        FileSystems.delete(earlier)
    if "://" not in out:
        os.makedirs(out, exist_ok=True)


def run_embed(args: argparse.Namespace) -> int:
    import apache_beam as beam

    from pipeline.batch_embed.beam_pipeline import NAMESPACE, EncoderModelHandler, PrepareFiles, build_pipeline
    from pipeline.batch_embed.shards import write_listing
    from pipeline.data.manifest import ManifestError
    from pipeline.modalities import file_modalities
    from pipeline.preprocessing.media_check import MediaLimits
    from pipeline.retrieval.index_store import weights_fingerprint
    from pipeline.run_artifacts import input_config_for, read_run_config, read_run_info, resolve_run, run_reference

    try:
        options, runner_name, workers = beam_options(getattr(args, "beam_options", []))
    except (ValueError, SystemExit) as error:  # argparse inside Beam exits on an option it refuses
        raise EmbedCommandError(
            f"Beam refused the pipeline options {getattr(args, 'beam_options', [])}: {error}"
        ) from None
    run_dir = resolve_run(args.run)
    read_run_info(run_dir)  # a finished run of this version, or a clear error
    config = read_run_config(run_dir)
    model_files = [m for m in config.data.modalities if m in {f.name for f in file_modalities()}]
    modalities = args.modalities or model_files
    unknown = sorted(set(modalities) - set(model_files))
    if unknown:
        raise EmbedCommandError(
            f"run {run_dir.name} has no encoder for {', '.join(unknown)} (it has {', '.join(model_files) or 'none'})"
        )
    try:
        items, data = items_to_embed(args.data, args.format, args.split, modalities)
    except ManifestError as error:
        raise EmbedCommandError(str(error)) from None
    if not items:
        raise EmbedCommandError(f"{args.data} has no item to embed")
    _prepare_out(args.out, args.overwrite)
    threads = args.threads_per_worker
    if threads is None and workers:
        threads = max(1, (os.cpu_count() or 1) // workers)
    log.info(
        "embedding %d items of %s with run %s on %s%s into %s",
        len(items),
        data,
        run_dir.name,
        runner_name,
        f" ({workers} worker(s), {threads} TensorFlow thread(s) each)" if workers else "",
        args.out,
    )
    handler = EncoderModelHandler(args.worker_run or str(run_dir), threads=threads, batch_size=args.batch_size)
    prepare = PrepareFiles(input_config_for(config), MediaLimits(), threads)
    if workers:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    else:
        try:
            pipeline = beam.Pipeline(options=options)
        except ValueError as error:  # an unknown runner
            raise EmbedCommandError(str(error)) from None
    build_pipeline(pipeline, items, handler, prepare, args.out, args.shards)
    started = time.monotonic()
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as error:  # noqa: BLE001 - a worker's failure arrives as the runner's exception
        log.debug("the pipeline failed", exc_info=True)
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        raise EmbedCommandError(
            f"the Beam pipeline failed: {lines[-1] if lines else type(error).__name__} "
            f"(nothing was listed in {args.out}; -v shows the whole trace)"
        ) from None
    seconds = time.monotonic() - started
    counts = _counters(result, NAMESPACE)
    listing = write_listing(
        args.out,
        run_reference(run_dir),
        weights_fingerprint(run_dir),
        config.name,
        config.embedding_dim,
        data,
        counts,
    )
    print(f"embedded: {listing.items} items in {len(listing.shards)} shard(s) in {args.out}")
    print(
        f"files:    {counts.get('files_prepared', 0)} embedded, {counts.get('files_failed', 0)} failed (dead letters: "
        f"{', '.join(listing.errors) or 'none'}); {counts.get('items_skipped', 0)} item(s) left with nothing to embed"
    )
    print(f"time:     {seconds:.1f} s in the pipeline ({listing.items / max(seconds, 1e-9):.1f} items/s)")
    print(
        f"index:    python -m pipeline index --from-embeddings {args.out} --name NAME [--kind exact|hnsw|ivfpq|milvus]"
    )
    return 0


def _counters(result, namespace: str) -> dict:
    from apache_beam.metrics.metric import MetricsFilter

    counts = dict.fromkeys(COUNTERS, 0)
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    except Exception as error:  # noqa: BLE001 - a runner without metrics: the listing still counts the rows
        log.warning("the runner reported no metrics (%s)", error)
        return counts
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + int(value or 0)
    return counts
