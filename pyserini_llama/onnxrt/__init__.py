"""ONNX Runtime inference for the encoders and the reranker: export, int8 quantization, cache, sessions.

``export``: trace a checkpoint's own torch inference function (``embed`` / ``score_batch``) into a graph whose
attention is onnxruntime's fused kernel, checked against torch. ``quantize``: int8 weights. ``cache``: one
export per checkpoint, precision and library version, built atomically in the project's cache. ``session``:
onnxruntime sessions sized to this process's cores. The users are :mod:`pyserini_llama.encoders.onnx` and
:mod:`pyserini_llama.rerankers.onnx`.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from ..errors import UserError

# The precision a CPU run uses when none is asked for, per packaged checkpoint and task, as measured by
# benchmarks/onnx_cpu.py (fidelity to torch float32 within budget: nDCG@10 within 0.01, see
# benchmarks/README.md). Any other checkpoint runs in float32 unless int8 is asked for: it was not measured.
# Measured by benchmarks/onnx_cpu.py (benchmarks/results/onnx-cpu-*.json): int8 keeps the reranker within 0.01
# nDCG@10 of torch float32 on Cranfield and SciFact test (2.7x its speed), but not the encoder (-0.0057 on
# Cranfield, -0.0147 on a SciFact sub-corpus): the encoder stays float32. int8-dynamic loses 0.0625 (encoder).
MEASURED_CPU_PRECISION: Dict[Tuple[str, str], str] = {("rankllama-smollm2", "score"): "int8"}
BACKENDS = ("auto", "torch", "onnx")


def default_precision(checkpoint: str, task: str) -> str:
    return MEASURED_CPU_PRECISION.get((str(checkpoint).lower(), task), "fp32")


def resolve_backend(backend: str, device: str) -> str:
    """``auto``: onnx on a CPU (when onnxruntime is installed), torch on a GPU."""
    import importlib.util

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend
    on_cpu = not str(device).startswith("cuda")
    return "onnx" if on_cpu and importlib.util.find_spec("onnxruntime") is not None else "torch"


def check_backend_options(backend: str, precision: Optional[str], dtype: Optional[str], compile: bool) -> None:
    """Refuse options that the chosen backend would silently ignore."""
    if backend == "onnx" and (dtype not in (None, "auto") or compile):
        raise UserError("--dtype and --compile apply to the torch backend; the onnx backend takes --precision")
    if backend == "torch" and precision is not None:
        raise UserError("--precision applies to the onnx backend (--backend onnx); torch takes --dtype")
