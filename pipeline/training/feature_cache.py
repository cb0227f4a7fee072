"""Frozen-backbone image features, computed once and cached on disk.

The cache key covers the backbone, its weights file (path, size, mtime), the input size and
the exact list of images, so any change recomputes and nothing stale is ever reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.data.input_pipeline import make_dataset
from pipeline.data.manifest import Manifest
from pipeline.io_utils import atomic_path
from pipeline.models.image_encoder import resolve_weights
from pipeline.progress import progress

log = logging.getLogger(__name__)


def cache_key(image_config, root: Path, images: list[str]) -> str:
    weights = resolve_weights(image_config)
    weights_id = f"{weights}:{weights.stat().st_size}:{weights.stat().st_mtime_ns}" if weights else "random"
    digest = hashlib.sha1()
    for part in (image_config.backbone, weights_id, str(image_config.image_size), str(Path(root).resolve()), *images):
        digest.update(part.encode() + b"\0")
    return f"{image_config.backbone}-{image_config.image_size}-{digest.hexdigest()[:16]}"


def backbone_features(backbone, image_config, input_config, manifest: Manifest, images: list[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
    """(images, features [len(images), dim]) from the cache, or computed and cached."""
    images = sorted(set(images))
    path = paths.cache_dir("features") / f"{cache_key(image_config, manifest.root, images)}.npz"
    if path.is_file():
        with np.load(path) as cached:
            log.info("image features: using the cache %s (%d images)", path.name, len(images))
            return images, cached["features"]
    frame = pd.DataFrame({"item_id": images, "split": "all", "image": images, "text": ""})
    subset = Manifest(root=manifest.root, frame=frame, format=manifest.format)
    config = dataclasses.replace(input_config, modalities=("image",), batch_size=batch_size, cache="none", check_files=False)
    ds = make_dataset(subset, None, config, training=False)
    start = time.time()
    bar = progress(total=len(images), desc=f"{image_config.backbone} features", unit="img")
    chunks = []
    for batch in ds:
        chunks.append(backbone(batch["image"], training=False).numpy())
        bar.update(len(chunks[-1]))
    bar.close()
    features = np.concatenate(chunks).astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, features=features)
    log.info("image features: %d images in %.0f s, cached as %s", len(images), time.time() - start, path)
    return images, features
