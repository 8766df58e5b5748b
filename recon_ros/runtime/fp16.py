"""Mixed-precision FP16 variant of an FP32 ONNX graph (for TensorRT 11 strongly typed networks).

Strongly typed TensorRT takes every tensor's precision from the graph, so the FP16 variant has to
say where FP16 is safe. Rules (each node is FP16 or FP32, casts are inserted at the boundaries):

* weight layers (Conv, ConvTranspose, MatMul, Gemm) run in FP16 when they touch a weight or an
  FP16 activation -- they carry almost all FLOPs. A MatMul of two FP32 activations (camera
  geometry: homographies, projections) stays FP32: pixel coordinates of 640-px images have only
  ~0.5 px resolution in FP16;
* shape-preserving / elementwise ops (Add, Mul, Relu, Concat, Reshape, ...) follow their inputs:
  FP16 only when every floating input is FP16 or a constant, so geometry never drifts into FP16;
* softmax, normalisations, reductions, divisions, reciprocals, powers, exp/log/erf/sinh, depth
  conversions (they are divisions) and grid sampling always stay FP32;
* a constant that FP16 cannot represent (|x| > 65504, or -- for small constants -- 0 < |x| < 6.1e-5
  such as the 1e-6 / 1e-8 epsilons) keeps its node in FP32;
* graph inputs and outputs keep their FP32 types (callers do not change).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16

WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
FOLLOW_OPS = {
    "Add", "Sub", "Mul", "Neg", "Abs", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Clip", "Max",
    "Min", "Concat", "Split", "Slice", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand",
    "Gather", "GatherElements", "Identity", "Pad", "MaxPool", "AveragePool", "DepthToSpace", "SpaceToDepth",
    "Tile", "Where", "Resize", "Upsample",
}
#: Input indices that carry data of the node's precision (others: indices, shapes, scales).
DATA_INPUTS = {"Resize": (0,), "Upsample": (0,), "Where": (1, 2), "Clip": (0, 1, 2), "Pad": (0, 2)}
FP16_MIN_NORMAL = 6.104e-5
FP16_MAX = 65504.0


def _type_map(model: onnx.ModelProto) -> dict[str, int]:
    types: dict[str, int] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def _representable(arr: np.ndarray) -> bool:
    a = np.abs(arr[np.isfinite(arr)].astype(np.float64))
    if (a > FP16_MAX).any():
        return False
    # Tiny entries matter in small constants (epsilons, clamp bounds); in weight tensors a few
    # near-zero values flushing to subnormals is harmless and must not pin the layer to FP32.
    return arr.size > 16 or not ((a > 0) & (a < FP16_MIN_NORMAL)).any()


def convert_fp16(
    src: str | Path | onnx.ModelProto, dst: str | Path | None = None, keep_fp32: Sequence[str] = ()
) -> onnx.ModelProto:
    """Return (and with ``dst`` save) the mixed-precision FP16 variant of an FP32 model.

    ``keep_fp32``: node-name fragments (exporter scopes such as ``"/downstream_head1/proj/"``) whose
    nodes stay FP32 whatever the rules say -- the precision-critical last layers of a network.
    """
    model = onnx.load(str(src)) if not isinstance(src, onnx.ModelProto) else src
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    types = _type_map(model)
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)

    precision: dict[str, int] = {}  # value -> FLOAT/HALF for floating values after conversion
    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}
    half_consts: dict[str, str] = {}
    new_inits: list[onnx.TensorProto] = []

    def is_float(name: str) -> bool:
        return types.get(name) == FLOAT

    def cur(name: str) -> int:
        return precision.get(name, FLOAT)

    def cast(name: str, to: int) -> str:
        if name in consts and to == HALF:
            if name not in half_consts:
                new = f"{name}__fp16"
                new_inits.append(numpy_helper.from_array(consts[name].astype(np.float16), new))
                half_consts[name] = new
            return half_consts[name]
        key = (name, to)
        if key not in casts:
            out = f"{name}__to{'16' if to == HALF else '32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"{out}_cast"))
            casts[key] = out
        return casts[key]

    for node in g.node:
        if node.op_type == "Constant":
            new_nodes.append(node)
            continue
        data_idx = DATA_INPUTS.get(node.op_type, range(len(node.input)))
        floats = [i for i in data_idx if i < len(node.input) and node.input[i] and is_float(node.input[i])]
        const_ok = all(_representable(consts[node.input[i]]) for i in floats if node.input[i] in consts)
        live = [node.input[i] for i in floats if node.input[i] not in consts]
        if node.op_type in WEIGHT_OPS:
            use_half = const_ok and (len(live) < len(floats) or any(cur(n) == HALF for n in live))
        elif node.op_type in FOLLOW_OPS:
            use_half = const_ok and bool(live) and all(cur(n) == HALF for n in live)
        else:
            use_half = False
        if use_half and any(frag in node.name for frag in keep_fp32):
            use_half = False
        want = HALF if use_half else FLOAT
        inputs = list(node.input)
        for i in floats:
            name = node.input[i]
            if name in consts:
                if want == HALF:
                    inputs[i] = cast(name, HALF)
            elif cur(name) != want:
                inputs[i] = cast(name, want)
        del node.input[:]
        node.input.extend(inputs)
        new_nodes.append(node)
        for out in node.output:
            if is_float(out):
                precision[out] = want

    # graph outputs keep FP32
    renames = {}
    for out in g.output:
        if precision.get(out.name) == HALF:
            renames[out.name] = f"{out.name}__fp16"
    if renames:
        for node in new_nodes:
            for j, o in enumerate(node.output):
                if o in renames:
                    node.output[j] = renames[o]
            for j, i in enumerate(node.input):
                if i in renames:
                    node.input[j] = renames[i]
        for orig, half in renames.items():
            new_nodes.append(helper.make_node("Cast", [half], [orig], to=FLOAT, name=f"{orig}_out_cast"))

    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    # Initializers now only read through their FP16 copies are dropped (halves the file size).
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    # Stale FP32 value_info would contradict the new types: let inference recompute them.
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    if dst is not None:
        onnx.save(model, str(dst))
    return model
