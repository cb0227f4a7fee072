"""Frozen-backbone image features, computed once and cached on disk.

The cache key covers the backbone, its weights (by content: a copy of the same file, on a new
machine or with a new mtime, still finds the cache), the input size, the pooling, the view
(as is, mirrored, a crop) and the exact set of images by absolute path, so any change
recomputes and nothing stale is ever reused, while two datasets naming the same photos
(Flickr8k and its spoken version) share one entry. Rows are in the order of those paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.data.input_pipeline import make_dataset
from pipeline.data.manifest import Manifest
from pipeline.io_utils import atomic_path, file_sha1
from pipeline.modalities.names import IMAGE
from pipeline.models.image_encoder import weights_files
from pipeline.preprocessing.image_ops import view_names, view_pixels
from pipeline.progress import progress
from pipeline.records import CachedImageFeatures

log = logging.getLogger(__name__)


def _located(root: Path, image: str) -> str:
    """An image's absolute path (without resolving links: no file system access per image)."""
    return os.path.normpath(Path(root).absolute() / image)


def cache_key(image_config, root: Path, images: list[str], view: str = "plain") -> str:
    weights_id = ",".join("sha1:" + file_sha1(weights) for weights in weights_files(image_config)) or "random"
    digest = hashlib.sha1()
    located = sorted(_located(root, image) for image in images)
    for part in (image_config.backbone, weights_id, str(image_config.image_size), image_config.pooling, *located):
        digest.update(part.encode() + b"\0")
    suffix = {"plain": "", "flip": "-flipped"}.get(view, f"-{view}")
    return f"{image_config.backbone}-{image_config.image_size}{suffix}-{digest.hexdigest()[:16]}"


def cache_path(image_config, manifest: Manifest, images: list[str], view: str = "plain") -> Path:
    return paths.cache_dir("features") / f"{cache_key(image_config, manifest.root, sorted(set(images)), view)}.npz"


def ensure_features(config) -> tuple[int, float, bool]:
    """Computes (or finds) the cached features a training run of ``config`` will use, so a
    benchmark can time that step apart. Returns (images, seconds, whether they were cached)."""
    from pipeline.data.adapters import load_dataset
    from pipeline.data.named_datasets import resolve_data_path
    from pipeline.models.image_encoder import build_image_backbone
    from pipeline.run_artifacts import input_config_for
    from pipeline.training.trainer import training_selection

    manifest = load_dataset(resolve_data_path(config.data.path), config.data.format or None)
    train_items, dev_items = training_selection(config, manifest)
    images = list(train_items.frame[IMAGE]) + list(dev_items.frame[IMAGE])
    views = view_names(config.image)
    cached = all(cache_path(config.image, manifest, images, view).is_file() for view in views)
    start = time.time()
    backbone_features(
        build_image_backbone(config.image), config.image, input_config_for(config), manifest, images, views=views
    )
    return len(set(images)), time.time() - start, cached


def backbone_features(
    backbone,
    image_config,
    input_config,
    manifest: Manifest,
    images: list[str],
    batch_size: int = 64,
    views: tuple[str, ...] = ("plain",),
) -> CachedImageFeatures:
    """(images, features [len(images), dim]) from the cache, or computed and cached. With
    several ``views`` (see ``view_names``), features [len(images), len(views), dim]."""
    per_view = [_features(backbone, image_config, input_config, manifest, images, batch_size, view) for view in views]
    images = per_view[0][0]
    if len(views) == 1:
        return CachedImageFeatures(images, per_view[0][1])
    return CachedImageFeatures(images, np.stack([features for _, features in per_view], axis=1))


def _features(
    backbone, image_config, input_config, manifest: Manifest, images: list[str], batch_size: int, view: str = "plain"
):
    images = sorted(set(images), key=lambda image: _located(manifest.root, image))
    path = cache_path(image_config, manifest, images, view)
    if path.is_file():
        with np.load(path) as cached:
            log.info("image features: using the cache %s (%d images)", path.name, len(images))
            return images, cached["features"]
    frame = pd.DataFrame({"item_id": images, "split": "all", IMAGE: images, "text": ""})
    subset = Manifest(root=manifest.root, frame=frame, format=manifest.format)
    config = dataclasses.replace(
        input_config, modalities=(IMAGE,), batch_size=batch_size, cache="none", check_files=False
    )
    ds = make_dataset(subset, None, config, training=False)
    features = compute_and_cache(
        path,
        (batch[IMAGE] for batch in ds),
        lambda pixels: backbone(view_pixels(pixels, view), training=False),
        len(images),
        f"{image_config.backbone} features{'' if view == 'plain' else f' ({view})'}",
        "img",
    )
    return images, features


def compute_and_cache(path: Path, batches, encode, total: int, desc: str, unit: str) -> np.ndarray:
    """``encode`` of each batch (a progress bar of ``total`` ``unit``s), concatenated as float32
    rows and written to ``path`` (an .npz, atomically) before they are returned."""
    start, chunks = time.time(), []
    bar = progress(total=total, desc=desc, unit=unit)
    for batch in batches:
        chunks.append(np.asarray(encode(batch)))
        bar.update(len(chunks[-1]))
    bar.close()
    features = np.concatenate(chunks).astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, features=features)
    log.info("%s: %d in %.0f s, cached as %s", desc, total, time.time() - start, path)
    return features
