"""Int8 weights for a CPU: every MatMul with a constant weight runs as a uint8 x int8 -> int32 product (the fast
path of onnxruntime's CPU kernels: VNNI, AMX), from the float32 export. Weights are symmetric int8 per output
channel; what differs is how activations get their scale, at run time:

``int8-dynamic``: onnxruntime's ``quantize_dynamic``: one scale per activation *tensor*, i.e. per batch,
fused into the product. Fastest, but an LLM's hidden states carry tokens and channels hundreds of times larger
than the rest; one scale per batch cannot absorb them, and the vectors drift far from float32.

``int8-token`` (:func:`quantize_per_token`): one scale per *token* (row), so one outlier token cannot coarsen
the others and a text's result does not depend on which texts share its batch. Closest to float32, but the
per-row scaling runs as separate element-wise ops.

``int8`` (the two combined, :func:`quantize_mixed`): per tensor for the products whose input comes straight
out of a normalisation layer (q/k/v, gate/up: RMSNorm has already put every token on the same scale), per
token for the others (the attention output and the MLP's down projection, where the outliers are).

``benchmarks/onnx_cpu.py`` measures all of them (speed and fidelity to torch float32 on real weights).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Set, Tuple

import numpy as np

PRECISIONS = ("fp32", "int8", "int8-token", "int8-dynamic")
QMAX = 127


def quantize(source: Path, target: Path, precision: str) -> None:
    """Write ``target``: the float32 graph ``source`` at ``precision`` (any of :data:`PRECISIONS` but fp32)."""
    import onnx

    from .export import save_model

    if precision == "int8-dynamic":
        quantize_dynamic_int8(source, target)
    elif precision == "int8-token":
        save_model(quantize_per_token(onnx.load(str(source))), target)
    elif precision == "int8":
        quantize_mixed(source, target)
    else:
        raise ValueError(f"no quantization named {precision!r}")


def weight_matmuls(model) -> List:
    """MatMul nodes whose second input is a constant 2-D float weight."""
    from onnx import TensorProto

    weights = {init.name: init for init in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights
            and len(weights[n.input[1]].dims) == 2 and weights[n.input[1]].data_type == TensorProto.FLOAT]


def normalised_inputs(model) -> Set[str]:
    """Names of the weight MatMuls whose input is a normalisation's output: a ``Mul`` by a constant vector of
    the input's width (the norm's learned scale), as RMSNorm and LayerNorm end."""
    weights = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}

    def constant(name: str):  # the exporter stands equal weights (norm scales of ones) in as Identity of one
        while name not in weights and name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return weights.get(name)

    names = set()
    for node in weight_matmuls(model):
        width = weights[node.input[1]].dims[0]
        scale = producer.get(node.input[0])
        if scale is not None and scale.op_type == "Mul" and any(
                constant(name) is not None and list(constant(name).dims) == [width] for name in scale.input):
            names.add(node.name)
    return names


def quantize_mixed(source: Path, target: Path) -> None:
    """``int8``: per-tensor (fused) products for normalised inputs, per-token products for the rest."""
    import onnx

    from .export import save_model

    per_tensor = normalised_inputs(onnx.load(str(source), load_external_data=False))
    fd, staged = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        quantize_dynamic_int8(source, Path(staged), nodes=sorted(per_tensor))
        save_model(quantize_per_token(onnx.load(staged), lambda name: name not in per_tensor), target)
    finally:
        for leftover in Path(staged).parent.glob(Path(staged).name + "*"):
            leftover.unlink()


def quantize_per_token(model, select: Callable[[str], bool] = lambda name: True) -> "onnx.ModelProto":  # noqa: F821
    """Rewrite ``model`` in place: selected MatMuls (by node name) with a constant 2-D float weight become
    per-token int8 products. Returns ``model``.

    Per activation tensor (q/k/v share one, as do gate/up): ``scale = max|x| / 127`` per row,
    ``x_u8 = QuantizeLinear(x / scale, 1, 128)``; per MatMul: ``MatMulIntegerToFloat(x_u8, W_s8, 1, w_scale)``
    (the column scales applied in the kernel's epilogue), then one ``Mul`` by the row scales.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    chosen = {node.output[0] for node in weight_matmuls(model) if select(node.name)}
    uses: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    constants = {"qmax": np.array(QMAX, np.float32), "tiny": np.array(1e-12, np.float32),
                 "one": np.array(1.0, np.float32), "zero_point": np.array(128, np.uint8),
                 "last_axis": np.array([-1], np.int64)}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    c = {key: f"pyserini_llama_{key}" for key in constants}
    quantized: Dict[str, Tuple[str, str]] = {}  # activation -> (uint8 rows, row scales)
    nodes: List = []
    dropped = set()
    for node in graph.node:
        if not node.output or node.output[0] not in chosen:
            nodes.append(node)
            continue
        weight, x = weights[node.input[1]], node.input[0]
        if x not in quantized:
            q = f"{x}_q8"
            nodes += [helper.make_node("Abs", [x], [f"{q}_abs"]),
                      helper.make_node("ReduceMax", [f"{q}_abs", c["last_axis"]], [f"{q}_absmax"], keepdims=1)
                      if opset >= 18 else  # axes became an input in opset 18
                      helper.make_node("ReduceMax", [f"{q}_abs"], [f"{q}_absmax"], axes=[-1], keepdims=1),
                      helper.make_node("Div", [f"{q}_absmax", c["qmax"]], [f"{q}_raw_scale"]),
                      helper.make_node("Max", [f"{q}_raw_scale", c["tiny"]], [f"{q}_scale"]),
                      helper.make_node("Div", [x, f"{q}_scale"], [f"{q}_scaled"]),
                      helper.make_node("QuantizeLinear", [f"{q}_scaled", c["one"], c["zero_point"]], [f"{q}_u8"])]
            quantized[x] = (f"{q}_u8", f"{q}_scale")
        x_u8, x_scale = quantized[x]
        w = numpy_helper.to_array(weight).astype(np.float32)
        w_scale = (np.maximum(np.abs(w).max(axis=0), 1e-12) / QMAX).astype(np.float32)  # per output column
        w_int8 = np.clip(np.round(w / w_scale), -QMAX, QMAX).astype(np.int8)
        graph.initializer.extend([numpy_helper.from_array(w_int8, f"{weight.name}_int8"),
                                  numpy_helper.from_array(w_scale, f"{weight.name}_scale")])
        if uses.get(weight.name) == 1:
            dropped.add(weight.name)
        out = node.output[0]
        nodes += [helper.make_node("MatMulIntegerToFloat", [x_u8, f"{weight.name}_int8", c["one"],
                                                            f"{weight.name}_scale", c["zero_point"]],
                                   [f"{out}_cols"], domain="com.microsoft"),
                  helper.make_node("Mul", [f"{out}_cols", x_scale], [out])]
    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept + [numpy_helper.from_array(v, c[k]) for k, v in constants.items()])
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def quantize_dynamic_int8(source: Path, target: Path, nodes=None) -> None:
    """onnxruntime's ``quantize_dynamic``: QInt8 per-channel weights, one uint8 scale per activation tensor;
    every weight MatMul, or only the ``nodes`` named."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # its advice to "pre-process" first concerns static quantization
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         use_external_data_format=source.stat().st_size > (1 << 31) - (64 << 20))
    finally:
        root.setLevel(level)
