"""Benchmark results: one JSON and one Markdown file per benchmark in benchmarks/results/."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from pipeline.io_utils import write_json_atomic, write_text_atomic

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_results(name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    write_json_atomic(json_path, {"machine": machine(), **payload})
    write_text_atomic(md_path, markdown.rstrip() + "\n")
    return json_path, md_path
