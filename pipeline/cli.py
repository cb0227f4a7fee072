"""Command line: ``python -m pipeline <command> ...``; ``main(argv)`` is what tests call.

Commands register themselves in ``COMMANDS`` with a function that adds their arguments and
one that runs them, so this module stays a thin dispatcher and imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pipeline import paths

log = logging.getLogger("pipeline")


class CommandError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


# ---------------------------------------------------------------- data


def _add_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{build,describe,formats}")
    build = sub.add_parser("build", help="generate the embedded default dataset (synthetic, no download)")
    build.add_argument("--out", type=Path, default=None, help="output folder (default: data/default)")
    build.add_argument("--seed", type=int, default=1234)
    build.add_argument("--items", type=str, default=None, metavar="TRAIN,DEV,TEST", help="scenes per split (default 1900,300,300)")
    build.add_argument("--no-speech", action="store_true", help="skip the spoken captions")
    build.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    build.add_argument("--workers", type=int, default=max(os.cpu_count() or 1, 1))
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
    if args.data_command == "build":
        from pipeline.data.synthetic.build import DefaultDatasetConfig, build_default_dataset

        out = args.out or paths.default_dataset_dir()
        if (out / "dataset.json").exists() and not args.force:
            print(f"{out} already exists; use --force to rebuild it.")
            return 0
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


COMMANDS = {
    "data": (_add_data, _run_data, "build, describe and list datasets"),
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
    for noisy in ("matplotlib", "PIL", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    _, run, _ = COMMANDS[args.command]
    try:
        return run(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except paths.SharedDataMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
