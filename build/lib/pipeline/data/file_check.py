"""Checks that every image and audio file a manifest names exists and decodes.

Files are decoded with the same ops the input pipeline uses, so "passes the check" means
"the pipeline can read it". Results are cached per dataset (keyed by path, size and
modification time), so a second look at an unchanged dataset costs only ``stat`` calls.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import os
from pathlib import Path

import tensorflow as tf

from pipeline import paths
from pipeline.data.manifest import Manifest, Problem
from pipeline.io_utils import write_json_atomic
from pipeline.modalities import file_modalities
from pipeline.modalities import modality as get_modality
from pipeline.preprocessing.media_check import MediaLimits, MediaRejected
from pipeline.progress import progress

log = logging.getLogger(__name__)


def probe_file(path: Path, modality: str, limits: MediaLimits = MediaLimits()) -> str | None:
    """None when ``path`` decodes as ``modality``, else a short reason. The header is checked
    (the modality's ``check``, ``media_check`` for images and sounds) before any decoder sees it."""
    reader = get_modality(modality)
    try:
        data = Path(path).read_bytes()
        reader.check(data, limits)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    except MediaRejected as error:
        return f"cannot be decoded as {modality}: {error}"
    return reader.probe(data)


CHECK_VERSION = 2  # 2: media headers checked first (media_check); results of version 1 are redone


def _cache_file(root: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return paths.cache_dir("filecheck") / f"{key}-v{CHECK_VERSION}.json"


def check_files(
    manifest: Manifest, modalities=None, workers: int = 4, show_progress: bool = True
) -> list[Problem]:
    """Returns one problem per manifest row whose file (of ``modalities``, default every file
    modality) is missing or unreadable."""
    frame = manifest.frame
    modalities = [m.name for m in file_modalities()] if modalities is None else modalities
    wanted: dict[tuple[str, str], list[int]] = {}
    for modality in modalities:
        column = frame[modality]
        for row, rel in column[column != ""].items():
            wanted.setdefault((rel, modality), []).append(int(row))

    cache_path = _cache_file(manifest.root)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}

    results: dict[tuple[str, str], str | None] = {}
    to_decode = []
    for rel, modality in wanted:
        path = manifest.resolve(rel)
        try:
            stat = os.stat(path)
        except OSError:
            results[(rel, modality)] = "missing"
            continue
        key = f"{modality}:{rel}"
        cached = cache.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            results[(rel, modality)] = cached[2]
        else:
            to_decode.append((rel, modality, stat))

    if to_decode:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {
                pool.submit(probe_file, manifest.resolve(rel), modality): (rel, modality, stat)
                for rel, modality, stat in to_decode
            }
            bar = progress(
                total=len(futures), desc=f"checking files in {manifest.root.name}", unit="file", enabled=show_progress
            )
            for future in concurrent.futures.as_completed(futures):
                rel, modality, stat = futures[future]
                reason = future.result()
                results[(rel, modality)] = reason
                cache[f"{modality}:{rel}"] = [stat.st_size, stat.st_mtime_ns, reason]
                bar.update(1)
            bar.close()
        try:
            write_json_atomic(cache_path, cache)
        except OSError as error:  # a read-only models dir only costs the cache
            log.debug("file-check cache not written: %s", error)

    problems = []
    for (rel, modality), reason in results.items():
        if reason is None:
            continue
        for row in wanted[(rel, modality)]:
            if reason == "missing":
                problems.append(Problem("missing_file", f"{modality} file not found", row=row, file=rel))
            else:
                problems.append(Problem("unreadable_file", reason, row=row, file=rel))
    problems.sort(key=lambda p: (p.row, p.file or ""))
    return problems
