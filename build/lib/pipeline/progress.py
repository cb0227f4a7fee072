"""Progress output for long work: a tqdm bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: int, desc: str, unit: str = "it", enabled: bool = True):
    """A progress bar writing to stderr. In CI logs (no TTY) it prints a line every 10%."""
    if not enabled:
        return tqdm(total=total, disable=True)
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5 if tty else 30.0,
        miniters=None if tty else max(total // 10, 1),
    )
