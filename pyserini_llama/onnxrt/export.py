"""Trace a loaded model's inference function (``embed`` or ``score_batch``) into an ONNX graph, and check it.

The graph takes ``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes; rows padded on
the right) and returns what the torch function returns, so everything but tokenization runs inside
onnxruntime, and the exported function is the very one the torch path runs (its pooling, normalisation and
score position included). Attention is written as one fused node per layer (:mod:`.attention`); every export
is checked against torch on padded batches before it is kept (:func:`build_export`).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from . import attention

INPUT_NAMES = ["input_ids", "attention_mask"]
DEFAULT_OPSET = 17  # what the tracer writes; fused attention raises the default domain to 23 afterwards
FP32_TOLERANCE = 1e-3  # float32 graph vs torch, relative to the largest output: reordered sums, nothing more
BIG_MODEL = (1 << 31) - (64 << 20)  # protobuf's 2 GB limit, with room: weights beyond it go to a side file


def save_model(model, path: Path) -> None:
    """Save a graph, its weights in one side file when it passes protobuf's 2 GB limit."""
    import onnx

    big = model.ByteSize() > BIG_MODEL
    onnx.save_model(model, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=path.name + ".data" if big else None)


@contextlib.contextmanager
def native_warnings_hidden():
    """torch's C++ exporter writes shape-inference warnings straight to file descriptor 2 (one per layer for our
    fused attention operator): hidden unless verbose, restored afterwards."""
    from ..cli import VERBOSE_ENV

    if os.environ.get(VERBOSE_ENV, "0") not in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def export_function(fn: Callable[[Dict], "torch.Tensor"], model, sample: Dict, path: Path,  # noqa: F821
                    output_name: str, mode: str = attention.MODES[0], opset: int = DEFAULT_OPSET) -> None:
    """Trace ``fn(batch)`` (the model's torch inference function) into ``path`` with ``mode``'s attention.

    ``sample`` is a padded batch: the trace must take the attention-mask path, not a no-padding shortcut.
    Raises :class:`~.attention.UnsupportedAttention` when the model's attention cannot be written that way.
    """
    import onnx
    import torch

    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model  # registers the weights as the graph's initializers

        def forward(self, input_ids, attention_mask):
            attention.remember_mask(attention_mask)
            return fn({"input_ids": input_ids, "attention_mask": attention_mask})

    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[output_name] = {0: "batch"}
    with attention.tracing(model, mode), warnings.catch_warnings(), torch.no_grad(), native_warnings_hidden():
        warnings.simplefilter("ignore")  # the tracer's warnings concern branches on shapes we keep dynamic
        torch.onnx.export(Traced().eval(), (sample["input_ids"], sample["attention_mask"]), str(path),
                          input_names=INPUT_NAMES, output_names=[output_name], dynamic_axes=axes,
                          opset_version=opset, dynamo=False, custom_opsets={attention.MS_DOMAIN: 1})
    if mode != "sdpa":
        graph = onnx.load(str(path), load_external_data=False)  # a big model's weights stay in their file
        onnx.save_model(attention.to_onnx_attention(graph), str(path))


def _deviation(got: np.ndarray, expected: np.ndarray) -> Dict[str, float]:
    """How far the graph's outputs are from torch's: max abs difference relative to the largest value, and the
    cosine of each output row (vectors) or of the whole score vector (scores)."""
    got, expected = got.reshape(len(got), -1), expected.reshape(len(expected), -1)
    if got.shape[1] == 1:
        got, expected = got.T, expected.T
    cosine = (got * expected).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1),
                                                   1e-12)
    return {"max_rel_diff": float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12)),
            "min_cosine": float(cosine.min())}


def build_export(folder: Path, fn: Callable[[Dict], "torch.Tensor"], model, batches: List[Dict],  # noqa: F821
                 output_name: str, precision: str, opset: int = DEFAULT_OPSET) -> Dict:
    """Export ``fn`` into ``folder/model.onnx`` at ``precision``, checked against torch on ``batches``.

    The float32 graph must reproduce torch within :data:`FP32_TOLERANCE`: the attention modes are tried in
    order (:data:`~.attention.MODES`) until one does, else the export is refused. A quantized graph's deviation
    from torch is recorded.
    Returns what ``export.json`` records about the export.
    """
    import os

    import torch

    from ..errors import UserError
    from .cache import MODEL_NAME
    from .quantize import PRECISIONS, quantize
    from .session import open_session, run_batch

    if precision not in PRECISIONS:
        raise UserError(f"unknown ONNX precision {precision!r} (use {', '.join(PRECISIONS)})")
    with torch.no_grad():
        expected = [fn(batch).float().cpu().numpy() for batch in batches]

    def deviation(path: Path) -> Dict[str, float]:
        session = open_session(path)
        parts = [_deviation(run_batch(session, b), e) for b, e in zip(batches, expected)]
        return {"max_rel_diff": max(p["max_rel_diff"] for p in parts),
                "min_cosine": min(p["min_cosine"] for p in parts)}

    fp32 = folder / "model.fp32.onnx"
    tried = {}
    for mode in attention.MODES:
        try:
            export_function(fn, model, batches[0], fp32, output_name, mode, opset)
        except attention.UnsupportedAttention as e:
            tried[mode] = f"unsupported: {e}"
            continue
        checked = deviation(fp32)
        if checked["max_rel_diff"] <= FP32_TOLERANCE:
            break
        tried[mode] = f"relative difference {checked['max_rel_diff']:.2g}"
    else:
        raise UserError(f"no ONNX graph of this model reproduces torch ({tried}); use the torch backend")
    record = {"attention": mode, "attention_ops": attention_ops(fp32), "fp32_check": checked,
              "attention_tried": tried}
    target = folder / MODEL_NAME
    if precision == "fp32":
        os.replace(fp32, target)
        return record
    quantize(fp32, target, precision)
    for leftover in folder.glob("model.fp32.onnx*"):
        leftover.unlink()
    record[f"{precision}_check"] = deviation(target)
    return record


def attention_ops(path: Path) -> List[str]:
    """The kinds of attention node in a graph (``Attention``, ``GroupQueryAttention``; none for SDPA)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted({n.op_type for n in graph.node if n.op_type in ("Attention", "GroupQueryAttention")})
