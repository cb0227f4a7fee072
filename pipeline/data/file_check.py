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
from pipeline.data.manifest import FILE_MODALITIES, Manifest, Problem
from pipeline.io_utils import write_json_atomic
from pipeline.preprocessing.media_check import MediaLimits, MediaRejected, check_media
from pipeline.progress import progress

log = logging.getLogger(__name__)


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().split("\n")[0].strip().rstrip(".") or type(error).__name__


@functools.lru_cache(maxsize=None)
def _decoders():
    """The pipeline's decoders, traced once (eager tf.switch_case would retrace per file)."""
    from pipeline.preprocessing import audio_ops, image_ops

    spec = tf.TensorSpec([], tf.string)
    return {
        "image": tf.function(image_ops.decode_image, input_signature=[spec]),
        "audio": tf.function(audio_ops.decode_audio, input_signature=[spec]),
    }


def probe_file(path: Path, modality: str, limits: MediaLimits = MediaLimits()) -> str | None:
    """None when ``path`` decodes as ``modality``, else a short reason. The header is checked
    (``media_check``) before any decoder sees the file."""
    try:
        data = Path(path).read_bytes()
        check_media(data, modality, limits)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    except MediaRejected as error:
        return f"cannot be decoded as {modality}: {error}"
    try:
        if modality == "image":
            image = _decoders()["image"](data)
            if int(tf.size(image)) == 0:
                return "the image is empty"
        else:
            samples, rate = _decoders()["audio"](data)
            if int(tf.size(samples)) == 0:
                return "the audio file has no samples"
            if int(rate) <= 0:
                return "the audio header has no valid sample rate"
    except (tf.errors.OpError, ValueError) as error:
        return f"cannot be decoded as {modality} ({_first_line(error)})"
    return None


CHECK_VERSION = 2  # 2: media headers checked first (media_check); results of version 1 are redone


def _cache_file(root: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return paths.cache_dir("filecheck") / f"{key}-v{CHECK_VERSION}.json"


def check_files(
    manifest: Manifest, modalities=FILE_MODALITIES, workers: int = 4, show_progress: bool = True
) -> list[Problem]:
    """Returns one problem per manifest row whose image or audio file is missing or unreadable."""
    frame = manifest.frame
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
