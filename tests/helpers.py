"""Small makers of files for tests: real encodings, and files broken on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image


def tone(seconds: float = 0.5, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}[path.suffix]
    sf.write(path, samples, rate, format=fmt[0], subtype=fmt[1])
    return path


def write_image(path: Path, size=(40, 30), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = np.clip(np.array(colour)[None, None, :] + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def truncate(path: Path, keep: float = 0.3) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt(path: Path) -> Path:
    path.write_bytes(b"this is not a media file at all" * 10)
    return path


def write_flickr8k_folder(root: Path, splits: dict[str, dict[str, tuple]], extra_rows=()) -> Path:
    """A folder in Flickr8k's layout: images/, captions.txt (CSV image,caption) and a
    Flickr_8k.<split>Images.txt list per split. ``splits`` maps a split ("train", "dev",
    "test", or None for images in no list) to {image name: (colour, [captions])};
    ``extra_rows`` are (image, caption, split) rows added as they are (a missing image, say),
    the image named in that split's list."""
    import csv

    rows, lists = [], {}
    for split, images in splits.items():
        for name, (colour, captions) in images.items():
            write_image(root / "images" / name, colour=colour)
            rows += [(name, caption) for caption in captions]
            lists.setdefault(split, []).append(name)
    for name, caption, split in extra_rows:
        rows.append((name, caption))
        if name not in lists.get(split, []):
            lists.setdefault(split, []).append(name)
    for split, names in lists.items():
        if split is not None:
            (root / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
    with (root / "captions.txt").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return root
