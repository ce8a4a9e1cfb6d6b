"""Rebuild Silent-Face MiniFASNet anti-spoofing networks as ONNX, without torch.

The weights ship as PyTorch state dicts in torch's legacy serialisation (a run of pickles:
magic number, protocol, system info, the state dict whose tensors point at storages by
persistent id, the storage keys, then each storage as an int64 element count followed by
its raw little-endian data). This script reads that format with a restricted unpickler,
rebuilds the network from the weights' names and shapes (the architecture of
src/model_lib/MiniFASNet.py, evaluated as in eval mode: batch norm with its running
statistics, dropout as the identity) and writes a byte-deterministic ONNX file.

    python models/convert_minifasnet.py --v2 2.7_80x80_MiniFASNetV2.pth \\
        --v1se 4_0_0_80x80_MiniFASNetV1SE.pth --out models/liveness

The graphs take [N, 3, 80, 80] BGR float 0-255 (no normalisation) and give [N, 3] logits;
softmax index 1 is "real". models/liveness/README.md records origin and digests.
"""

import argparse
import collections
import hashlib
import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}
BN_EPS = 1e-5  # PyTorch's BatchNorm default; MiniFASNet does not change it
OPSET = 13
IR_VERSION = 7  # pinned with the opset, so that a newer onnx writes the same bytes
INPUT_SIZE = 80

# The two releases this converts: file name, sha256, output name, crop scale.
MODELS = {
    "v2": ("2.7_80x80_MiniFASNetV2.pth",
           "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
           "minifasnet_v2_2.7_80x80.onnx", 2.7),
    "v1se": ("4_0_0_80x80_MiniFASNetV1SE.pth",
             "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
             "minifasnet_v1se_4.0_80x80.onnx", 4.0),
}
SOURCE = "https://github.com/minivision-ai/Silent-Face-Anti-Spoofing"
SOURCE_COMMIT = "b6d5f04ad78778917853b25c778acef6d5626d15"


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------- reading the .pth

class _Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class _TensorView:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def array(self):
        data = self.storage.data
        if self.offset + _extent(self.shape, self.stride) > data.size:
            raise ConvertError(f"tensor of shape {self.shape} runs past its storage")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.shape, strides=[s * itemsize for s in self.stride])
        return np.ascontiguousarray(view)


def _extent(shape, stride):
    """Elements of storage a strided view reaches (0 for an empty one)."""
    if any(n == 0 for n in shape):
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(shape, stride))


def _rebuild_tensor(storage, offset, shape, stride, *_grad_and_hooks):
    return _TensorView(storage, offset, shape, stride)


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict and nothing else: any other class is refused, so a hostile
    file cannot run code."""

    def __init__(self, f):
        super().__init__(f)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise ConvertError(f"refusing to unpickle {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise ConvertError(f"unexpected persistent id {pid!r}")
        _, kind, key, _location, numel, view = pid
        if view is not None or kind not in STORAGE_DTYPES:
            raise ConvertError(f"unsupported storage {kind} (view {view!r})")
        if key not in self.storages:
            self.storages[key] = _Storage(STORAGE_DTYPES[kind], numel)
        return self.storages[key]


class _HeaderUnpickler(pickle.Unpickler):
    """For the pickles around the state dict, which hold only numbers, strings, lists
    and dicts."""

    def find_class(self, module, name):
        raise ConvertError(f"refusing to unpickle {module}.{name} outside the state dict")


def _plain_load(f):
    return _HeaderUnpickler(f).load()


def read_legacy_state_dict(data):
    """name -> float32/int64 array, from a .pth in torch's legacy (non-zip) format."""
    if data[:4] == b"PK\x03\x04":
        raise ConvertError("this is torch's zip format, not the legacy format this reads")
    f = io.BytesIO(data)
    if _plain_load(f) != LEGACY_MAGIC:
        raise ConvertError("not a torch legacy file (magic number differs)")
    if _plain_load(f) != LEGACY_PROTOCOL:
        raise ConvertError("unsupported torch legacy protocol")
    info = _plain_load(f)
    if not info.get("little_endian", False):
        raise ConvertError("big-endian files are not supported")
    unpickler = _StateDictUnpickler(f)
    state = unpickler.load()
    keys = _plain_load(f)
    if set(keys) != set(unpickler.storages):
        raise ConvertError("storage keys do not match the storages the state dict uses")
    for key in keys:
        storage = unpickler.storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise ConvertError(f"storage {key} is missing")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise ConvertError(f"storage {key}: {numel} elements, the state dict says {storage.numel}")
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise ConvertError(f"storage {key} is truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    if f.read(1):
        raise ConvertError("trailing bytes after the last storage")
    if not isinstance(state, dict) or not all(isinstance(v, _TensorView) for v in state.values()):
        raise ConvertError("the file does not hold a state dict of tensors")
    out = {}
    for name, view in state.items():
        # Saved from nn.DataParallel: every name starts with "module.".
        out[name.removeprefix("module.")] = view.array()
    return out


# ---------------------------------------------------------------- building the graph

class Graph:
    """Collects nodes and initialisers; every weight must be used exactly once."""

    def __init__(self, weights):
        self.weights = weights
        self.unused = {k for k in weights if not k.endswith("num_batches_tracked")}
        self.nodes, self.inits = [], []

    def weight(self, name):
        if name not in self.unused:
            raise ConvertError(f"weight {name} is missing or used twice")
        self.unused.discard(name)
        return self.weights[name]

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def param(self, name):
        return self.init(name, self.weight(name).astype(np.float32))

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def has(self, prefix):
        return any(k.startswith(prefix + ".") for k in self.unused)


def conv(g, x, key, stride=1, pad=None, channels_in=None):
    """Bias-free Conv2d; groups follow from the weight's input channels."""
    w = g.weight(f"{key}.weight")
    out_c, in_per_group, kh, kw = w.shape
    groups = channels_in // in_per_group
    if groups * in_per_group != channels_in:
        raise ConvertError(f"{key}: {channels_in} input channels do not split into groups of {in_per_group}")
    pad = (kh // 2) if pad is None else pad
    name = g.init(f"{key}.weight", w.astype(np.float32))
    y = g.node("Conv", [x, name], key, kernel_shape=[kh, kw], strides=[stride, stride],
               pads=[pad, pad, pad, pad], group=groups, dilations=[1, 1])
    return y, out_c


def batch_norm(g, x, key):
    names = [g.param(f"{key}.{p}") for p in ("weight", "bias", "running_mean", "running_var")]
    return g.node("BatchNormalization", [x, *names], key, epsilon=BN_EPS)


def prelu(g, x, key):
    slope = g.weight(f"{key}.weight").astype(np.float32)
    # One slope per channel, broadcast over height and width.
    name = g.init(f"{key}.weight", slope.reshape(-1, 1, 1))
    return g.node("PRelu", [x, name], key)


def conv_block(g, x, key, c_in, stride=1, pad=None, activate=True):
    """Conv, BatchNorm2d and, unless it is a linear block, PReLU."""
    y, c = conv(g, x, f"{key}.conv", stride, pad, c_in)
    y = batch_norm(g, y, f"{key}.bn")
    return (prelu(g, y, f"{key}.prelu") if activate else y), c


def squeeze_excite(g, x, key, c):
    s = g.node("GlobalAveragePool", [x], f"{key}.avg_pool")
    s, r = conv(g, s, f"{key}.fc1", pad=0, channels_in=c)
    s = g.node("Relu", [batch_norm(g, s, f"{key}.bn1")], f"{key}.relu")
    s, _ = conv(g, s, f"{key}.fc2", pad=0, channels_in=r)
    s = g.node("Sigmoid", [batch_norm(g, s, f"{key}.bn2")], f"{key}.sigmoid")
    return g.node("Mul", [x, s], f"{key}.scale")


def depth_wise(g, x, key, c_in, stride, residual):
    """Expand (1x1), depth-wise 3x3, project (1x1, linear); SE and shortcut if residual."""
    y, c = conv_block(g, x, f"{key}.conv", c_in)
    y, c = conv_block(g, y, f"{key}.conv_dw", c, stride=stride)
    y, c = conv_block(g, y, f"{key}.project", c, activate=False)
    if not residual:
        return y, c
    if g.has(f"{key}.se_module"):
        y = squeeze_excite(g, y, f"{key}.se_module", c)
    return g.node("Add", [x, y], f"{key}.add"), c


def residual_stage(g, x, key, c):
    i = 0
    while g.has(f"{key}.model.{i}"):
        x, c = depth_wise(g, x, f"{key}.model.{i}", c, stride=1, residual=True)
        i += 1
    if i == 0:
        raise ConvertError(f"no blocks in {key}")
    return x, c


def linear(g, x, key):
    """Bias-free nn.Linear: x · Wᵀ."""
    return g.node("Gemm", [x, g.param(f"{key}.weight")], key, transB=1)


def minifasnet(weights, doc):
    g = Graph(weights)
    x, c = conv_block(g, "input", "conv1", 3, stride=2)
    x, c = conv_block(g, x, "conv2_dw", c)
    x, c = depth_wise(g, x, "conv_23", c, stride=2, residual=False)
    x, c = residual_stage(g, x, "conv_3", c)
    x, c = depth_wise(g, x, "conv_34", c, stride=2, residual=False)
    x, c = residual_stage(g, x, "conv_4", c)
    x, c = depth_wise(g, x, "conv_45", c, stride=2, residual=False)
    x, c = residual_stage(g, x, "conv_5", c)
    x, c = conv_block(g, x, "conv_6_sep", c)
    # The 5x5 depth-wise "linear" conv covers the whole 5x5 map: no padding.
    x, c = conv_block(g, x, "conv_6_dw", c, pad=0, activate=False)
    x = g.node("Flatten", [x], "conv_6_flatten", axis=1)
    x = linear(g, x, "linear")
    x = batch_norm(g, x, "bn")
    g.nodes.append(helper.make_node("Gemm", [x, g.param("prob.weight")], ["logits"], name="prob", transB=1))
    if g.unused:
        raise ConvertError(f"weights the network does not use: {sorted(g.unused)}")
    classes = weights["prob.weight"].shape[0]
    graph = helper.make_graph(
        g.nodes, "minifasnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facegate models/convert_minifasnet.py",
                              producer_version="1", doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def convert(data, doc):
    return minifasnet(read_legacy_state_dict(data), doc).SerializeToString(deterministic=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v2", type=Path, required=True, help=MODELS["v2"][0])
    parser.add_argument("--v1se", type=Path, required=True, help=MODELS["v1se"][0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .onnx files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for key, path in (("v2", args.v2), ("v1se", args.v1se)):
        file_name, digest, output, scale = MODELS[key]
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            print(f"convert: {path}: sha256 {actual}, expected {digest} ({file_name})", file=sys.stderr)
            return 1
        doc = (f"Silent-Face-Anti-Spoofing {file_name} (sha256 {digest}) from {SOURCE} at "
               f"{SOURCE_COMMIT}, Apache-2.0. Input: the face box scaled by {scale} about its "
               f"centre, moved inside the image, resized to 80x80; BGR float 0-255. "
               f"Output: logits, softmax index 1 = real.")
        try:
            onnx_bytes = convert(data, doc)
        except (ConvertError, pickle.UnpicklingError, EOFError) as e:
            print(f"convert: {path}: {e}", file=sys.stderr)
            return 1
        (args.out / output).write_bytes(onnx_bytes)
        print(f"{hashlib.sha256(onnx_bytes).hexdigest()}  {args.out / output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
