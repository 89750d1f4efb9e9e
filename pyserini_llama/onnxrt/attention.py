"""Attention for the exported graphs: one fused node per layer instead of SDPA decomposed into a dozen ops.

Traced as PyTorch's SDPA, a layer's attention becomes matmuls, a ``batch x heads x seq x seq`` mask, a softmax
and NaN guards, which on a CPU cost more than the layer's int8 matmuls. Here the model's own code still
computes the projections (and, in ``fused-rotary`` mode, everything up to the rotary embedding); only the
attention call is swapped, through transformers' attention interface, for a torch op
(:func:`reference_attention`) that the tracer writes as onnxruntime's ``GroupQueryAttention``. After the
trace, :func:`to_onnx_attention` rewrites those nodes as the standard ONNX ``RotaryEmbedding`` + ``Attention``
(opset 23), whose onnxruntime CPU kernel is faster; when that rewrite is not possible the
``GroupQueryAttention`` graph is kept. Rows are right-padded: the kernels read per-row lengths.

Modes, tried in this order by :func:`~.export.build_export` until the graph reproduces torch:
``fused-rotary`` (rotary inside the fused node: the modeling module's ``apply_rotary_pos_emb`` is made the
identity while tracing), ``fused`` (the model's own rotary ops, then the fused node), ``sdpa`` (plain).
"""
from __future__ import annotations

import contextlib
import functools
import sys
import threading
from typing import Iterator, Optional

MODES = ("fused-rotary", "fused", "sdpa")
NAME = "pyserini_llama_fused"  # the attention implementation registered with transformers while tracing
MS_DOMAIN = "com.microsoft"
ONNX_ATTENTION_OPSET = 23
MAX_ROTARY_POSITIONS = 32768  # rows of the rotary cos/sin tables written into the graph
_TRACE = threading.local()  # the batch's 2-D attention mask and the rotary tables, while tracing


class UnsupportedAttention(Exception):
    """The model's attention needs something the fused node lacks; export it another way."""


def rotate(x, cos, sin):
    """Rotary embedding in the non-interleaved (``rotate_half``) layout; ``cos``/``sin`` are ``(S, D/2)``."""
    import torch

    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def reference_attention(query, key, value, seqlens_k, cos, sin, num_heads: int, kv_heads: int, scale: float):
    """What the fused node computes, in torch: ``(B, S, H*D)`` inputs; causal; row ``b`` holds
    ``seqlens_k[b] + 1`` tokens, then padding; rotary at positions ``0..S-1`` when ``cos`` is not empty."""
    import torch

    b, s, _ = query.shape
    q = query.view(b, s, num_heads, -1).transpose(1, 2)
    k = key.view(b, s, kv_heads, -1).transpose(1, 2)
    v = value.view(b, s, kv_heads, -1).transpose(1, 2)
    if cos.numel():
        q, k = rotate(q, cos[:s], sin[:s]), rotate(k, cos[:s], sin[:s])
    groups = num_heads // kv_heads
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    real = torch.arange(s, device=query.device)[None, :] <= seqlens_k[:, None]
    allowed = torch.ones(s, s, dtype=torch.bool, device=query.device).tril()[None, None] & real[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    return out.transpose(1, 2).reshape(b, s, -1)


def _fused_op():
    """``pyserini_llama::fused_attention``: :func:`reference_attention` as a registered torch op, which the
    tracer writes as ``GroupQueryAttention`` (an op, not an autograd.Function: the tracer loses track of
    Function inputs inside transformers' layer wrappers)."""
    import torch

    if hasattr(torch.ops.pyserini_llama, "fused_attention"):
        return torch.ops.pyserini_llama.fused_attention
    torch.library.custom_op("pyserini_llama::fused_attention", reference_attention, mutates_args=(), schema=(
        "(Tensor query, Tensor key, Tensor value, Tensor seqlens_k, Tensor cos, Tensor sin, int num_heads, "
        "int kv_heads, float scale) -> Tensor"))

    def symbolic(g, query, key, value, seqlens_k, cos, sin, num_heads, kv_heads, scale):
        from torch.onnx import symbolic_helper

        total_length = g.op("Cast", g.op("Gather", g.op("Shape", query), g.op(
            "Constant", value_t=torch.tensor(1))), to_i=6)  # int32: the padded length of the batch
        rotary = symbolic_helper._get_tensor_sizes(cos) not in (None, [0])
        out = g.op(f"{MS_DOMAIN}::GroupQueryAttention", query, key, value, seqlens_k, total_length,
                   *([cos, sin] if rotary else []),
                   num_heads_i=symbolic_helper._get_const(num_heads, "i", "num_heads"),
                   kv_num_heads_i=symbolic_helper._get_const(kv_heads, "i", "kv_heads"),
                   scale_f=symbolic_helper._get_const(scale, "f", "scale"), do_rotary_i=int(rotary), outputs=3)
        return out[0]

    torch.onnx.register_custom_op_symbolic("pyserini_llama::fused_attention", symbolic, 1)
    return torch.ops.pyserini_llama.fused_attention


def fused_attention(module, query, key, value, attention_mask, scaling: Optional[float] = None,
                    dropout: float = 0.0, **kwargs):
    """transformers attention-interface function: ``(B, H, S, D)`` states -> ``(B, S, H, D)`` output."""
    import torch

    if not getattr(module, "is_causal", True) or kwargs.get("sliding_window") or kwargs.get("softcap") \
            or kwargs.get("s_aux") is not None:
        raise UnsupportedAttention(f"{type(module).__name__} is not plain causal attention")
    b, heads, s, d = query.shape
    kv_heads = key.shape[1]
    q = query.transpose(1, 2).reshape(b, s, heads * d)
    k = key.transpose(1, 2).reshape(b, s, kv_heads * d)
    v = value.transpose(1, 2).reshape(b, s, kv_heads * d)
    seqlens_k = (_TRACE.mask.sum(-1) - 1).to(torch.int32)
    cos, sin = _TRACE.rotary
    scale = float(scaling if scaling is not None else d ** -0.5)
    return _fused_op()(q, k, v, seqlens_k, cos, sin, heads, kv_heads, scale).view(b, s, heads, d), None


def _rotary_tables(model, head_dim: int):
    """``(cos, sin)`` of shape ``(positions, head_dim / 2)`` from the model's own rotary module."""
    import torch

    rotary = [m for name, m in model.named_modules() if name.split(".")[-1] == "rotary_emb"]
    if len(rotary) != 1:
        raise UnsupportedAttention("no single rotary_emb module")
    positions = min(int(getattr(model.config, "max_position_embeddings", 4096)), MAX_ROTARY_POSITIONS)
    with torch.no_grad():
        cos, sin = rotary[0](torch.zeros(1, dtype=torch.float32), torch.arange(positions)[None])
    cos, sin = cos[0].float(), sin[0].float()
    half = head_dim // 2
    if cos.shape[-1] != head_dim or not (torch.equal(cos[:, :half], cos[:, half:])
                                         and torch.equal(sin[:, :half], sin[:, half:])):
        raise UnsupportedAttention("rotary layout other than rotate_half over the whole head")
    return cos[:, :half].contiguous(), sin[:, :half].contiguous()


def remember_mask(attention_mask) -> None:
    """Called by the traced module's forward with its 2-D mask input, which the fused node's lengths read."""
    _TRACE.mask = attention_mask


@contextlib.contextmanager
def tracing(model, mode: str) -> Iterator[None]:
    """While tracing ``model``, use ``mode``'s attention (see :data:`MODES`)."""
    import torch
    from transformers import AttentionInterface

    if mode not in MODES:
        raise ValueError(f"unknown attention mode {mode!r} (use {', '.join(MODES)})")
    AttentionInterface.register(NAME, fused_attention)
    empty = torch.zeros(0)
    _TRACE.rotary = (empty, empty)
    patched = []
    if mode == "fused-rotary":
        layers = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
        namespaces = [vars(sys.modules[name]) for name in sorted({type(m).__module__ for m in layers})]
        if not namespaces or any("apply_rotary_pos_emb" not in ns for ns in namespaces):
            raise UnsupportedAttention("no apply_rotary_pos_emb to take over")
        if getattr(layers[0], "head_dim", None) is None:
            raise UnsupportedAttention("unknown head size")
        _TRACE.rotary = _rotary_tables(model, layers[0].head_dim)
        for ns in namespaces:
            patched.append((ns, ns["apply_rotary_pos_emb"]))
            ns["apply_rotary_pos_emb"] = lambda q, k, *args, **kwargs: (q, k)
    previous = model.config._attn_implementation
    model.set_attn_implementation("sdpa" if mode == "sdpa" else NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
        for ns, original in patched:
            ns["apply_rotary_pos_emb"] = original
        _TRACE.__dict__.clear()


@functools.lru_cache(maxsize=1)
def runtime_has_onnx_attention() -> bool:
    """Whether this onnxruntime runs opset-23 ``RotaryEmbedding`` and ``Attention`` (1.23 and later do)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    nodes = [helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["r"], num_heads=1),
             helper.make_node("Attention", ["r", "x", "x", "mask"], ["y"], is_causal=1, q_num_heads=1,
                              kv_num_heads=1)]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", f, [1, 2, 4])],
                              [helper.make_tensor_value_info("y", f, None)],
                              [numpy_helper.from_array(np.ones((2, 2), np.float32), "cos"),
                               numpy_helper.from_array(np.zeros((2, 2), np.float32), "sin"),
                               numpy_helper.from_array(np.array([[0, 1]], np.int64), "pos"),
                               numpy_helper.from_array(np.ones((1, 1, 2, 2), bool), "mask")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_ATTENTION_OPSET)])
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {"x": np.ones((1, 2, 4), np.float32)})
    except Exception:  # noqa: BLE001  (an older runtime: no such kernel)
        return False
    return True


def to_onnx_attention(model, mask_input: str = "attention_mask"):
    """Rewrite the traced ``GroupQueryAttention`` nodes of ``model`` (loaded without external data) as ONNX
    ``RotaryEmbedding`` + ``Attention`` (opset 23), or leave them as they are (with their optional past
    inputs left empty) when the default domain cannot be raised to opset 23. Returns the new model."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, version_converter

    fused = [n for n in model.graph.node if n.op_type == "GroupQueryAttention" and n.domain == MS_DOMAIN]
    for node in fused:  # inputs 3 and 4 (past key/value) are optional: the tracer cannot leave a gap
        inputs = list(node.input)
        del node.input[:]
        node.input.extend(inputs[:3] + ["", ""] + inputs[3:])
    if not fused or not runtime_has_onnx_attention():
        return model
    try:
        upgraded = version_converter.convert_version(model, ONNX_ATTENTION_OPSET)
    except Exception:  # noqa: BLE001  (the converter raises plain exceptions for ops it cannot move)
        return model
    p = "pyserini_llama_attention"
    prelude = [  # position ids 0..S-1 per row and a (B, 1, S, S) boolean key mask, made once
        helper.make_node("Shape", [mask_input], [f"{p}_shape"]),
        helper.make_node("Gather", [f"{p}_shape", f"{p}_0"], [f"{p}_batch"], axis=0),
        helper.make_node("Gather", [f"{p}_shape", f"{p}_1"], [f"{p}_length"], axis=0),
        helper.make_node("Range", [f"{p}_0", f"{p}_length", f"{p}_1"], [f"{p}_range"]),
        helper.make_node("Unsqueeze", [f"{p}_range", f"{p}_axis0"], [f"{p}_row"]),
        helper.make_node("Expand", [f"{p}_row", f"{p}_shape"], [f"{p}_positions"]),
        helper.make_node("Cast", [mask_input], [f"{p}_bool"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", [f"{p}_bool", f"{p}_axes12"], [f"{p}_keys"]),
        helper.make_node("Unsqueeze", [f"{p}_batch", f"{p}_axis0"], [f"{p}_batch1"]),
        helper.make_node("Unsqueeze", [f"{p}_length", f"{p}_axis0"], [f"{p}_length1"]),
        helper.make_node("Concat", [f"{p}_batch1", f"{p}_one1", f"{p}_length1", f"{p}_length1"],
                         [f"{p}_mask_shape"], axis=0),
        helper.make_node("Expand", [f"{p}_keys", f"{p}_mask_shape"], [f"{p}_mask"]),
    ]
    constants = {"0": np.array(0, np.int64), "1": np.array(1, np.int64), "axis0": np.array([0], np.int64),
                 "axes12": np.array([1, 2], np.int64), "one1": np.array([1], np.int64)}
    nodes = []
    for node in upgraded.graph.node:
        if not (node.op_type == "GroupQueryAttention" and node.domain == MS_DOMAIN):
            nodes.append(node)
            continue
        if prelude:
            nodes += prelude
            prelude = []
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        q, k, v = node.input[:3]
        out = node.output[0]
        if attrs.get("do_rotary"):
            cos, sin = node.input[7:9]
            nodes += [helper.make_node("RotaryEmbedding", [q, cos, sin, f"{p}_positions"], [f"{out}_q"],
                                       num_heads=attrs["num_heads"]),
                      helper.make_node("RotaryEmbedding", [k, cos, sin, f"{p}_positions"], [f"{out}_k"],
                                       num_heads=attrs["kv_num_heads"])]
            q, k = f"{out}_q", f"{out}_k"
        nodes.append(helper.make_node("Attention", [q, k, v, f"{p}_mask"], [out], is_causal=1,
                                      q_num_heads=attrs["num_heads"], kv_num_heads=attrs["kv_num_heads"],
                                      scale=attrs["scale"]))
    del upgraded.graph.node[:]
    upgraded.graph.node.extend(nodes)
    upgraded.graph.initializer.extend(numpy_helper.from_array(v, f"{p}_{k}") for k, v in constants.items())
    if not any(n.domain == MS_DOMAIN for n in upgraded.graph.node):
        kept = [o for o in upgraded.opset_import if o.domain != MS_DOMAIN]
        del upgraded.opset_import[:]
        upgraded.opset_import.extend(kept)
    return upgraded
