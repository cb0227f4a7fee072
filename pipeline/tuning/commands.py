"""The ``tune`` command (registered in pipeline.cli). Imports nothing heavy until it runs."""

from __future__ import annotations

import argparse
from pathlib import Path


class TuneCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="base config: a shipped name or a .toml/.json path")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config key (repeatable)",
    )
    parser.add_argument("--algorithm", default="random", choices=("random", "bayesian", "hyperband"))
    parser.add_argument("--max-trials", type=int, default=10, help="trials at most (random, bayesian; default 10)")
    parser.add_argument("--budget-minutes", type=float, default=None, help="start no trial after this many minutes")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per trial (default: the config's; hyperband: its maximum)"
    )
    parser.add_argument("--space", type=Path, default=None, help="search space TOML file (default: the built-in space)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="tuner folder (default saved_models/tuning); the same folder resumes a search",
    )
    parser.add_argument("--name", default=None, help="search name inside the folder (default: the config's name)")
    parser.add_argument("--seed", type=int, default=0)


def run_tune(args: argparse.Namespace) -> int:
    from pipeline import paths
    from pipeline.config import ConfigError, apply_overrides, from_dict, read_config_file
    from pipeline.tuning.search_space import DEFAULT_SPACE, SearchSpaceError, read_space
    from pipeline.tuning.tuner import tune

    try:
        base = apply_overrides(read_config_file(args.config), args.overrides)
        name = args.name or from_dict(base).name
        space = read_space(args.space) if args.space else DEFAULT_SPACE
        result = tune(
            base,
            space,
            args.dir or paths.tuning_dir(),
            args.algorithm,
            args.max_trials,
            args.budget_minutes,
            args.epochs,
            args.seed,
            project_name=name,
        )
    except (ConfigError, SearchSpaceError) as error:
        raise TuneCommandError(str(error)) from None
    print(f"{result.trials} trial(s) in {result.seconds / 60:.1f} min; best dev rsum {result.best_score:.1f}:")
    for key, value in result.best_values.items():
        print(f"  {key} = {value!r}")
    print(f"best config: {result.best_config_path}")
    print(f"train it:    python -m pipeline train --config {result.best_config_path}")
    print(
        f"HParams:     python -m pipeline tensorboard (make tensorboard), or tensorboard --logdir {result.best_config_path.parent / 'hparams'}"
    )
    print(f"all trials:  {result.best_config_path.parent / 'summary.md'}")
    return 0
