"""What KerasTuner may change: config keys with the values or ranges to try.

A search space is a tuple of ``Param``; ``DEFAULT_SPACE`` covers what the models expose. A
TOML file can give another (``read_space``):

    [params."text.kind"]
    choices = ["conv", "lstm", "serial"]
    [params."train.learning_rate"]
    min = 1e-4
    max = 1e-2
    sampling = "log"

``validate_space`` builds the config at every choice and at both ends of every range before
any trial runs, so an unknown key or a value a layer cannot take stops the search at once,
naming the parameter.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from pipeline.config import FUSION_STRATEGIES, ConfigError, apply_overrides, from_dict


class SearchSpaceError(ValueError):
    """A search space that cannot be searched; the message names the parameter."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One tunable config key.

    Args:
        key: the dotted config key, e.g. ``text.lstm_units``.
        choices: the values to choose from (strings, numbers, booleans or lists), or
        min, max: a range; integers when both are ints, floats otherwise;
        step: the step of an integer range; sampling: ``linear`` or ``log`` for ranges.
    """

    key: str
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    step: int | None = None
    sampling: str = "linear"

    @property
    def kind(self) -> str:
        if self.choices:
            return "choice"
        return "int" if isinstance(self.min, int) and isinstance(self.max, int) else "float"

    def corner_values(self) -> list:
        """The values ``validate_space`` builds the config with."""
        return list(self.choices) if self.choices else [self.min, self.max]


DEFAULT_SPACE: tuple[Param, ...] = (
    Param("text.embedding_dim", choices=(64, 128, 256)),
    Param("text.conv_filters", choices=(128, 256, 512)),
    Param("text.kernel_sizes", choices=((2, 3), (2, 3, 4), (1, 2, 3, 4))),
    Param("text.lstm_units", choices=(128, 256)),
    Param("text.bidirectional", choices=(True, False)),
    Param("text.kind", choices=("conv", "lstm", "conv_lstm", "serial", "parallel", "mixed")),
    Param("fusion.strategy", choices=FUSION_STRATEGIES),
    Param("embedding_dim", choices=(128, 256, 512)),
    Param("train.temperature", min=0.03, max=0.2, sampling="log"),
    Param("train.loss", choices=("infonce", "vse")),
    Param("train.learning_rate", min=3e-4, max=5e-3, sampling="log"),
    Param("train.batch_size", choices=(32, 64, 128)),
    Param("text.dropout", min=0.0, max=0.4),
    Param("image.dropout", min=0.0, max=0.4),
    Param("image.crop_min_area", min=0.6, max=1.0),
)


def _encode(value) -> str:
    """A value as ``--set`` takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_encode(v) for v in value)
    return str(value)


def overrides(values: dict) -> list[str]:
    """``key=value`` strings for ``apply_overrides`` from {key: value}."""
    return [f"{key}={_encode(value)}" for key, value in values.items()]


def validate_space(space: tuple[Param, ...], base: dict) -> None:
    """Raises SearchSpaceError, naming the parameter, for an unknown key, an empty or reversed
    range, an unknown sampling, or a value the config (and so the layers) would refuse."""
    if not space:
        raise SearchSpaceError("the search space is empty")
    seen = set()
    for param in space:
        if param.key in seen:
            raise SearchSpaceError(f"{param.key}: given twice")
        seen.add(param.key)
        if not param.choices and (param.min is None or param.max is None):
            raise SearchSpaceError(f"{param.key}: give choices, or min and max")
        if not param.choices and not param.min < param.max:
            raise SearchSpaceError(f"{param.key}: min {param.min} is not below max {param.max}")
        if param.sampling not in ("linear", "log") or (
            param.sampling == "log" and not param.choices and param.min <= 0
        ):
            raise SearchSpaceError(f"{param.key}: sampling must be 'linear' or 'log' (log needs min > 0)")
        for value in param.corner_values():
            try:
                from_dict(apply_overrides(base, overrides({param.key: value})))
            except ConfigError as error:
                raise SearchSpaceError(f"{param.key} = {value!r} cannot be tried: {error}") from None


def read_space(path: str | Path) -> tuple[Param, ...]:
    """A search space from a TOML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"search space file {path} not found")
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    params = []
    for key, spec in data.get("params", {}).items():
        unknown = set(spec) - {"choices", "min", "max", "step", "sampling"}
        if unknown:
            raise SearchSpaceError(
                f"{key}: unknown setting(s) {', '.join(sorted(unknown))} (choices, min, max, step, sampling)"
            )
        choices = tuple(tuple(c) if isinstance(c, list) else c for c in spec.get("choices", ()))
        params.append(
            Param(key, choices, spec.get("min"), spec.get("max"), spec.get("step"), spec.get("sampling", "linear"))
        )
    return tuple(params)
