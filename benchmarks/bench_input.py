"""make bench-input: input-pipeline throughput against the simplest Python loop.

Images: decode + resize to 224×224 + augment (random crop, flip, colour jitter) + MobileNetV2
scaling, on Flickr8k training images. Audio: decode + resample to 16 kHz + crop/pad to 1 s +
64-band log-mel, on FSDD. The tf.data side is the project's own ``make_dataset``, with no
cache (every element decoded) and no up-front file check; the baseline is a plain loop
with PIL / soundfile + NumPy doing the same work one item at a time.

    python -m benchmarks.bench_input [--images N] [--clips N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.results_io import write_results
from pipeline import paths
from pipeline.data.adapters import load_dataset
from pipeline.data.input_pipeline import AudioFeatureConfig, InputConfig, make_dataset
from pipeline.data.manifest import Manifest
from pipeline.preprocessing.image_ops import ImageAugmentConfig


def time_best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------- images


def pil_image_loop(files, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for path in files:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        scale = np.sqrt(rng.uniform(0.8, 1.0))
        cw, ch = int(w * scale), int(h * scale)
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        image = image.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.85, 1.15))
        _ = np.asarray(image, np.float32) / 127.5 - 1.0


def bench_images(count: int, repeats: int) -> dict:
    manifest = load_dataset(paths.shared_dataset("flickr8k"))
    frame = manifest.split("train").drop_duplicates("image").head(count)
    subset = Manifest(root=manifest.root, frame=frame, format=manifest.format)
    config = InputConfig(
        modalities=("image",),
        batch_size=64,
        image_size=224,
        backbone="mobilenet_v2",
        image_augment=ImageAugmentConfig(flip=True),
        cache="none",
        check_files=False,
    )
    ds = make_dataset(subset, None, config, training=True)

    def run_tf():
        for _ in ds:
            pass

    run_tf()  # warm-up: traces the map functions
    tf_seconds = time_best(run_tf, repeats)
    files = [manifest.resolve(p) for p in frame["image"]]
    loop_seconds = time_best(lambda: pil_image_loop(files, 224), repeats)
    return {
        "dataset": "flickr8k train",
        "items": len(frame),
        "size": 224,
        "tf_data_per_s": len(frame) / tf_seconds,
        "python_loop_per_s": len(frame) / loop_seconds,
        "speedup": loop_seconds / tf_seconds,
    }


# ---------------------------------------------------------------- audio


def mel_filterbank(n_fft: int, rate: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    points = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bank = np.zeros((n_fft // 2 + 1, n_mels), np.float32)
    for m in range(n_mels):
        lo, centre, hi = points[m], points[m + 1], points[m + 2]
        bank[:, m] = np.clip(np.minimum((freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)), 0, None)
    return bank


def numpy_audio_loop(files, features: AudioFeatureConfig) -> None:
    import soundfile as sf
    from scipy.signal import resample_poly

    n_fft = 512
    bank = mel_filterbank(n_fft, features.sample_rate, features.n_mels, 20.0, 7600.0)
    window = np.hanning(features.window).astype(np.float32)
    for path in files:
        x, rate = sf.read(path, dtype="float32")
        if x.ndim > 1:
            x = x.mean(axis=1)
        if rate != features.sample_rate:
            x = resample_poly(x, features.sample_rate, rate).astype(np.float32)
        n = features.clip_samples
        start = max(len(x) - n, 0) // 2
        x = np.pad(x[start : start + n], (0, max(n - len(x[start : start + n]), 0)))
        x = np.pad(x, (0, features.window))
        frames = np.lib.stride_tricks.sliding_window_view(x, features.window)[:: features.stride][: features.frames]
        spectrum = np.abs(np.fft.rfft(frames * window, n=n_fft)) ** 2
        _ = np.log(spectrum @ bank + 1e-6)


def bench_audio(count: int, repeats: int) -> dict:
    manifest = load_dataset(paths.shared_dataset("fsdd"))
    frame = manifest.frame.head(count)
    subset = Manifest(root=manifest.root, frame=frame, format=manifest.format)
    features = AudioFeatureConfig(clip_seconds=1.0, n_mels=64)
    config = InputConfig(modalities=("audio",), batch_size=64, audio=features, cache="none", check_files=False)
    ds = make_dataset(subset, None, config, training=False)

    def run_tf():
        for _ in ds:
            pass

    run_tf()
    tf_seconds = time_best(run_tf, repeats)
    files = [manifest.resolve(p) for p in frame["audio"]]
    loop_seconds = time_best(lambda: numpy_audio_loop(files, features), repeats)
    return {
        "dataset": "fsdd (8 kHz WAV)",
        "items": len(frame),
        "clip_seconds": 1.0,
        "n_mels": 64,
        "tf_data_per_s": len(frame) / tf_seconds,
        "python_loop_per_s": len(frame) / loop_seconds,
        "speedup": loop_seconds / tf_seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="Flickr8k images to process per pass")
    parser.add_argument("--clips", type=int, default=2500, help="FSDD clips to process per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per side; the fastest counts")
    args = parser.parse_args(argv)
    try:
        images = bench_images(args.images, args.repeats)
        audio = bench_audio(args.clips, args.repeats)
    except paths.SharedDataMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = [
        ("images: decode + resize 224 + augment", images, "images/s"),
        ("audio: decode + 16 kHz + log-mel", audio, "clips/s"),
    ]
    md = [
        "# Input pipeline throughput",
        "",
        "`make bench-input` (`python -m benchmarks.bench_input`), best of "
        f"{args.repeats} passes, {__import__('os').cpu_count()} CPU cores, no cache, no up-front file check.",
        "",
        "| work | dataset | items | tf.data (project pipeline) | Python loop (PIL / soundfile + NumPy) | speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, r, unit in rows:
        md.append(
            f"| {name} | {r['dataset']} | {r['items']:,} | {r['tf_data_per_s']:,.0f} {unit} | {r['python_loop_per_s']:,.0f} {unit} | {r['speedup']:.2f}× |"
        )
    json_path, md_path = write_results(
        "input", {"images": images, "audio": audio, "repeats": args.repeats}, "\n".join(md)
    )
    print("\n".join(md))
    print(f"\nwritten: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
