"""Command line: ``python -m pipeline <command> ...``; ``main(argv)`` is what tests call.

Commands register themselves in ``COMMANDS`` with a function that adds their arguments and
one that runs them, so this module stays a thin dispatcher and imports nothing heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from pipeline import monitoring, paths
from pipeline.batch_embed import commands as batch_embed
from pipeline.retrieval import commands as retrieval
from pipeline.search_service import commands as service
from pipeline.tf_serving import commands as serving
from pipeline.tuning import commands as tuning

log = logging.getLogger("pipeline")


class CommandError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


# ---------------------------------------------------------------- data


def _add_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="data_command", required=True, metavar="{build,digits,spoken-flickr8k,describe,formats}"
    )
    build = sub.add_parser("build", help="generate the embedded default dataset (synthetic, no download)")
    build.add_argument("--out", type=Path, default=None, help="output folder (default: data/default)")
    build.add_argument("--seed", type=int, default=1234)
    build.add_argument(
        "--items", type=str, default=None, metavar="TRAIN,DEV,TEST", help="scenes per split (default 1900,300,300)"
    )
    build.add_argument("--no-speech", action="store_true", help="skip the spoken captions")
    build.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    build.add_argument("--workers", type=int, default=max(os.cpu_count() or 1, 1))
    digits = sub.add_parser(
        "digits",
        help="spoken digits (FSDD) + handwritten digits (MNIST) + digit words, split by speaker (needs ../shared)",
    )
    digits.add_argument("--out", type=Path, default=None, help="output folder (default: data/digits)")
    digits.add_argument("--test-speaker", default="theo", help="the speaker held out as the test split (default theo)")
    digits.add_argument(
        "--dev-speaker",
        default=None,
        help="a second speaker held out as the dev split (default: none; dev is "
        "the last 5 takes of each digit by the training speakers)",
    )
    digits.add_argument(
        "--tts-voices",
        type=int,
        default=None,
        help="synthetic eSpeak NG speakers added to the training split (default 60; 0 = the real recordings only)",
    )
    digits.add_argument("--seed", type=int, default=0)
    digits.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    spoken = sub.add_parser(
        "spoken-flickr8k",
        help="Flickr8k with eSpeak NG spoken captions, cached in saved_models/cache/tts (needs ../shared)",
    )
    spoken.add_argument("--out", type=Path, default=None, help="output folder (default: data/flickr8k-spoken)")
    spoken.add_argument(
        "--train-spoken",
        type=int,
        default=5,
        help="captions spoken per training photo (default 5: all; every dev caption is spoken)",
    )
    spoken.add_argument("--seed", type=int, default=0, help="varies every caption's voice")
    spoken.add_argument("--workers", type=int, default=max(os.cpu_count() or 1, 1))
    describe = sub.add_parser("describe", help="counts per split and modality, and every problem found")
    describe.add_argument("path", type=Path, help="dataset folder or manifest file")
    describe.add_argument("--format", default=None, help="dataset layout (default: detected); see 'data formats'")
    describe.add_argument("--no-check", action="store_true", help="do not open the image and audio files")
    describe.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    sub.add_parser("formats", help="list the dataset layouts this project reads")


def _run_data(args: argparse.Namespace) -> int:
    from pipeline.data.adapters import adapters, load_dataset
    from pipeline.data.manifest import ManifestError

    if args.data_command == "formats":
        for name, adapter in adapters().items():
            print(f"{name:10s} {adapter.description}")
        return 0
    if args.data_command == "spoken-flickr8k":
        from pipeline.data import spoken_captions

        out = args.out or paths.data_dir() / spoken_captions.DATASET_NAME
        try:
            _, stats = spoken_captions.build_spoken_flickr8k(
                out,
                paths.shared_dataset("flickr8k"),
                spoken_captions.TtsCache.default(),
                args.train_spoken,
                args.seed,
                args.workers,
            )
        except ManifestError as error:
            raise CommandError(str(error)) from None
        print(
            f"spoken Flickr8k written to {out}: {stats.synthesized} caption(s) synthesised, {stats.cached} from the cache, "
            f"{len(stats.failed)} failed"
        )
        return 0
    if args.data_command == "digits":
        from pipeline.data import spoken_digits
        from pipeline.data.named_datasets import named_dataset

        out = args.out or paths.digits_dataset_dir()
        if named_dataset("digits").stale_reason(out) is None and not args.force:
            print(f"{out} already exists; use --force to rebuild it.")
            return 0
        try:
            voices = spoken_digits.TTS_VOICES if args.tts_voices is None else args.tts_voices
            spoken_digits.build_spoken_digits(
                out,
                paths.shared_dataset("fsdd"),
                paths.shared_dataset("mnist") / "mnist.npz",
                args.test_speaker,
                args.dev_speaker,
                args.seed,
                tts_voices=voices,
            )
        except (paths.SharedDataMissing, spoken_digits.DigitsDataError) as error:
            raise CommandError(str(error)) from None
        print(f"spoken digits written to {out}")
        return 0
    if args.data_command == "build":
        from pipeline.data.named_datasets import named_dataset
        from pipeline.data.synthetic.build import DefaultDatasetConfig, build_default_dataset

        out = args.out or paths.default_dataset_dir()
        why = named_dataset("default").stale_reason(out)
        if why is None and not args.force:
            print(f"{out} already exists; use --force to rebuild it.")
            return 0
        if why not in (None, "missing"):
            print(f"{out} holds the default dataset at {why}; rebuilding it.")
        kwargs = {"seed": args.seed, "speech": not args.no_speech}
        if args.items:
            try:
                kwargs["train"], kwargs["dev"], kwargs["test"] = (int(v) for v in args.items.split(","))
            except ValueError:
                raise CommandError(f"--items takes three whole numbers TRAIN,DEV,TEST, not {args.items!r}") from None
        build_default_dataset(out, DefaultDatasetConfig(**kwargs), workers=args.workers)
        print(f"default dataset written to {out}")
        return 0
    from pipeline.data.describe import describe

    try:
        manifest = load_dataset(args.path, args.format)
    except ManifestError as error:
        raise CommandError(str(error)) from None
    report = describe(manifest, check=not args.no_check)
    print(report.render())
    if args.json:
        from pipeline.io_utils import write_json_atomic

        write_json_atomic(args.json, report.to_dict())
    return 1 if any(p.kind != "bad_name" for p in report.problems) else 0


# ---------------------------------------------------------------- train


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="default", help="a shipped config name (default, smoke, flickr8k) or a .toml/.json path"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set text.kind=lstm --set train.epochs=5 (repeatable)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="run folder (default saved_models/runs/<name>-<timestamp>); give an interrupted run's folder to resume it",
    )
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bars (one line per epoch)")


def _run_train(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as error:
        raise CommandError(f"config: {error}") from None
    from pipeline.data.manifest import ManifestError
    from pipeline.evaluation.evaluator import markdown_table
    from pipeline.records import RunRecord
    from pipeline.training.trainer import TrainingError, train

    try:
        result = train(config, run_dir=args.run_dir, evaluate_test=not args.no_eval, verbose=0 if args.quiet else None)
    except (TrainingError, ManifestError) as error:
        raise CommandError(str(error)) from None
    if not result.chief:
        print(f"worker finished in {result.seconds:.0f} s; the chief wrote the run folder {result.run_dir}")
        return 0
    record = RunRecord.read(result.run_dir)
    if not args.no_export:
        # Exporting is the export command's work; `train` does it too unless --no-export.
        from pipeline.tf_serving.export import export_encoders, write_models_config

        log.info("[5/5] exporting the encoders as SavedModels")
        exports = export_encoders(result.model, result.vectorizer, config)
        write_models_config()
        record = dataclasses.replace(record, exports={k: str(v) for k, v in exports.items()})
        record.write(result.run_dir)
    print()
    # A dataset without a test split (Flickr8k here) shows dev.
    shown, report = ("test", record.test) if record.test is not None else ("dev", record.dev)
    print(markdown_table(report.to_dict(), f"{config.name}: {shown} split"))
    print()
    print(f"run folder:   {result.run_dir}")
    print(f"latest:       {paths.runs_dir() / 'latest'}")
    for split, files in (("dev", record.dev_report), ("test", record.test_report)):
        for kind, path in files.items():
            print(f"{split + ' ' + kind + ':':14s}{path}")
    for name, path in record.exports.items():
        print(f"{name + ':':14s}{path}")
    print(f"TensorBoard:  tensorboard --logdir {result.run_dir / 'logs'}")
    print(f"time:         {result.seconds:.0f} s")
    return 0


# ---------------------------------------------------------------- evaluate


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", default="latest", help="run folder, or its name under saved_models/runs (default: latest)"
    )
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the run's training data)")
    parser.add_argument("--format", default=None, help="dataset layout (default: detected)")
    parser.add_argument("--split", default="test", help="split to evaluate, or 'all' for every row (default: test)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="report path (default: <run>/eval/<dataset>-<split>.json); .md and .png go beside it",
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from pipeline.data.adapters import load_dataset
    from pipeline.data.manifest import ManifestError
    from pipeline.evaluation.embedder import MissingModalities, embed_split
    from pipeline.evaluation.evaluator import evaluate_embeddings, markdown_table, write_reports
    from pipeline.inference import Encoder
    from pipeline.run_artifacts import IncompatibleRun, read_run_info

    try:
        encoder = Encoder.from_run(args.run)
        data = args.data or Path(read_run_info(encoder.run_dir).data.root)
        manifest = load_dataset(data, args.format)
        if args.split != "all" and args.split not in set(manifest.frame["split"]):
            splits = ", ".join(sorted(set(manifest.frame["split"])))
            raise CommandError(f"{data} has no split '{args.split}' (it has: {splits}; or 'all')")
        split = None if args.split == "all" else args.split
        embeddings = embed_split(encoder.model, encoder.vectorizer, encoder.input_config, manifest, split)
    except (IncompatibleRun, ManifestError, MissingModalities) as error:
        raise CommandError(str(error)) from None
    except ValueError as error:  # no usable items: the message names the split and the check to run
        if "no usable" not in str(error):
            raise
        raise CommandError(str(error)) from None
    frame = manifest.frame if split is None else manifest.split(split)
    total, used = frame["item_id"].nunique(), len(embeddings.item_ids)
    if used < total or manifest.problems:
        print(
            f"note: evaluated {used} of the {total} items in {Path(data).name}/{args.split}; the others lack a modality or a readable "
            f"file (warnings above). The dataset has {len(manifest.problems)} problem(s): python -m pipeline data describe {data}"
        )
    report = evaluate_embeddings(embeddings, with_curves=True, relevance=encoder.config.train.positives)
    json_path = args.json or encoder.run_dir / "eval" / f"{Path(data).name}-{args.split}.json"
    title = f"{encoder.config.name} on {Path(data).name} / {args.split}"
    written = write_reports(report, json_path, title)
    print(markdown_table(report, title))
    print()
    for kind, path in written.items():
        print(f"{kind + ':':10s}{path}")
    return 0


COMMANDS = {
    "data": (_add_data, _run_data, "build, describe and list datasets"),
    "train": (_add_train, _run_train, "train a config, evaluate it on the test split and export the encoders"),
    "evaluate": (_add_evaluate, _run_evaluate, "retrieval metrics of a trained run on any dataset split"),
    "index": (
        retrieval.add_index_arguments,
        retrieval.run_index,
        "build a search index from a run and a dataset; add or remove items",
    ),
    "embed": (
        batch_embed.add_embed_arguments,
        batch_embed.run_embed,
        "embed a collection with Apache Beam (DirectRunner here, Flink, Spark or Dataflow at scale) into Parquet shards",
    ),
    "search": (retrieval.add_search_arguments, retrieval.run_search, "search an index with words, an image or a sound"),
    "export": (
        serving.add_export_arguments,
        serving.run_export,
        "SavedModels for TF Serving: the encoders and a retriever over an index, and models.config",
    ),
    "query-serving": (
        serving.add_query_arguments,
        serving.run_query,
        "query a TF Serving server that serves the exported models (REST)",
    ),
    "serve": (
        service.add_serve_arguments,
        service.run_serve,
        "the search service (HTTP API and web page) over an index",
    ),
    "tune": (
        tuning.add_tune_arguments,
        tuning.run_tune,
        "search hyperparameters with KerasTuner; the objective is dev rsum",
    ),
    "tensorboard": (
        monitoring.add_tensorboard_arguments,
        monitoring.run_tensorboard,
        "TensorBoard over the training runs and tuning searches (loopback by default)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Cross-modal retrieval pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (add, _, help_text) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_pipeline", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._pipeline = True
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("matplotlib", "PIL", "absl", "h5py", "apache_beam", "milvus_lite", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse cannot take positionals after options (`index remove --name N ID ID`): ids.
        if args.command == "index" and not any(e.startswith("-") for e in extra):
            args.ids = [*args.ids, *extra]
        elif args.command == "embed":
            args.beam_options = extra  # Beam's own options (--runner, --direct_num_workers, ...)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.verbose)
    _, run, _ = COMMANDS[args.command]
    try:
        return run(args)
    except (
        CommandError,
        retrieval.RetrievalCommandError,
        serving.ServingCommandError,
        service.ServeCommandError,
        tuning.TuneCommandError,
        batch_embed.EmbedCommandError,
        monitoring.TensorBoardCommandError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (paths.SharedDataMissing, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if not _names_its_problem(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def _names_its_problem(error: Exception) -> bool:
    """Errors whose message already says what is wrong and what to do (a damaged index or run,
    a refused media file, a query that cannot be answered): no traceback for those. Imported
    here, when one has happened, so that starting a command imports nothing heavy."""
    from pipeline.preprocessing.media_check import MediaRejected
    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.retrieval.searcher import QueryError
    from pipeline.run_artifacts import IncompatibleRun

    return isinstance(error, (IndexProblem, IncompatibleRun, MediaRejected, QueryError))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console script ``pipeline`` (pyproject.toml): the same as ``python -m pipeline``."""
    sys.exit(main(sys.argv[1:]))
