"""Preparation steps that turn a model as shipped into the file facegate loads.

Each step maps the shipped bytes to the prepared bytes and must be byte-deterministic:
models/manifest.toml pins the digest of every prepared output.

Usable on its own for inspection:
    python prepare.py STEP IN.onnx OUT.onnx
"""

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def _subgraphs(node):
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _consumed_names(graph):
    """Every tensor name read by a node, including nodes inside control-flow subgraphs."""
    names = set()
    for node in graph.node:
        names.update(n for n in node.input if n)
        for sub in _subgraphs(node):
            names |= _consumed_names(sub)
    return names


def _broadcastable(param, x_shape, axis, block_size):
    """Shape a scale or zero point so that it multiplies x elementwise."""
    if param.size == 1:
        # Per-tensor, whatever rank and block_size it was declared with: this is the
        # case ONNX Runtime 1.32 rejects in YuNet (bias with block_size, one scale).
        return param.reshape(())
    if block_size:
        if param.ndim != len(x_shape):
            raise ValueError(f"blocked scale of rank {param.ndim} for input of rank {len(x_shape)}")
        param = np.repeat(param, block_size, axis=axis)
        index = [slice(None)] * param.ndim
        index[axis] = slice(0, x_shape[axis])  # the last block may be partial
        return param[tuple(index)]
    if param.ndim != 1 or param.shape[0] != x_shape[axis]:
        raise ValueError(f"per-axis scale of shape {param.shape} for axis {axis} of {x_shape}")
    shape = [1] * len(x_shape)
    shape[axis] = -1
    return param.reshape(shape)


def _dequantized(q, scale, zero_point, axis, block_size):
    if q.dtype.kind not in "iu" and q.dtype.name not in ("int4", "uint4"):
        raise ValueError(f"cannot dequantise {q.dtype} (only integer types)")
    axis = axis % q.ndim if q.ndim else 0
    scale = _broadcastable(scale, q.shape, axis, block_size)
    diff = q.astype(np.int32)
    if zero_point is not None:
        diff = diff - _broadcastable(zero_point, q.shape, axis, block_size).astype(np.int32)
    # Same arithmetic as ONNX Runtime's kernel: int32 difference, converted, times a float32 scale.
    weight = diff.astype(np.float32) * scale.astype(np.float32)
    return weight.astype(scale.dtype)


def dequantize(model):
    """Fold every DequantizeLinear of constants into an fp32 initialiser, then tidy the graph."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    kept_nodes, folded = [], []
    for node in graph.node:
        names = [n for n in node.input if n]
        if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx") \
                or not all(n in inits for n in names):
            kept_nodes.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("output_dtype"):
            raise ValueError(f"{node.name}: output_dtype is not supported")
        arrays = [numpy_helper.to_array(inits[n]) if n else None for n in node.input]
        arrays += [None] * (3 - len(arrays))
        weight = _dequantized(arrays[0], arrays[1], arrays[2],
                              attrs.get("axis", 1), attrs.get("block_size", 0))
        folded.append(numpy_helper.from_array(weight, node.output[0]))
    del graph.node[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(folded)
    _drop_unused(graph)
    return model


def _drop_unused(graph):
    consumed = _consumed_names(graph) | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in consumed]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    # Inputs nobody reads (SFace lists its pre-quantisation weights this way) and inputs
    # shadowed by an initialiser (old-style weight listing): the latter would make ONNX
    # Runtime treat the weights as overridable and skip constant folding and fusions.
    constants = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name in consumed and i.name not in constants]
    del graph.input[:]
    graph.input.extend(keep)
    produced = {o for node in graph.node for o in node.output}
    keep = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def _name_dim(dim, symbol):
    dim.Clear()
    dim.dim_param = symbol


def symbolic_batch(model, symbol="N"):
    """Let the leading dimension of every graph input and output vary."""
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        _name_dim(value.type.tensor_type.shape.dim[0], symbol)
    # Intermediate shapes recorded for batch 1 make ONNX Runtime refuse bound outputs
    # of any other batch size ("Expected: 1"); it re-infers them at load time anyway.
    del graph.value_info[:]
    return model


def _dequantize_symbolic_batch(model):
    return symbolic_batch(dequantize(model))


def symbolic_input(model):
    """Let YuNet take any batch and any input size (multiples of 32).

    Its heads end in Reshape nodes whose shape constants hard-code batch 1 (`[1, -1, k]`):
    a leading 0 copies the batch of the tensor being reshaped instead. Its two Resize nodes
    already scale by factors, so nothing else depends on 640×640. The anchors per stride
    follow from the input size, so every output's second dimension becomes a symbol too.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]])
        if shape.ndim == 1 and len(shape) == 3 and shape[0] == 1 and shape[1] == -1:
            fixed = shape.copy()
            fixed[0] = 0
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(fixed, node.input[1]))
    symbolic_batch(model)
    (image,) = graph.input
    _name_dim(image.type.tensor_type.shape.dim[2], "H")
    _name_dim(image.type.tensor_type.shape.dim[3], "W")
    for out in graph.output:
        stride = out.name.rsplit("_", 1)[1]
        _name_dim(out.type.tensor_type.shape.dim[1], f"anchors_{stride}")
    return model


def _dequantize_symbolic_input(model):
    return symbolic_input(dequantize(model))


STEPS = {
    "dequantize": dequantize,
    "dequantize_symbolic_batch": _dequantize_symbolic_batch,
    "dequantize_symbolic_input": _dequantize_symbolic_input,
}


def prepare(step, data):
    """Run a named step on the shipped bytes and return the prepared bytes."""
    model = onnx.load_model_from_string(data)
    model = STEPS[step](model)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def main(argv):
    if len(argv) != 4 or argv[1] not in STEPS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(STEPS)}}} IN.onnx OUT.onnx")
    with open(argv[2], "rb") as f:
        data = f.read()
    with open(argv[3], "wb") as f:
        f.write(prepare(argv[1], data))


if __name__ == "__main__":
    main(sys.argv)
