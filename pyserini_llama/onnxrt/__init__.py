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

# The precision a CPU run uses when none is asked for, per checkpoint *weights* (SHA-256 of the adapter or model
# file) and task, as measured by benchmarks/onnx_cpu.py: int8 only where it kept nDCG@10 within 0.01 of torch
# float32 (benchmarks/README.md). Keyed by content, not by name: a retrained checkpoint under the same name was
# not measured, so it runs in float32 until it is. Every other checkpoint runs in float32 unless asked.
MEASURED_CPU_PRECISION: Dict[Tuple[str, str], str] = {
    # the packaged rankllama-smollm2: int8 nDCG@10 -0.0001 on Cranfield, +0.0021 on SciFact test
    # (benchmarks/results/onnx-cpu-rerank*.json), 1.8-2.9x torch float32's pairs/s
    ("b796719fddd7024d7b0250694aa836e5c986073ca1a1254b84b6b4dcb3bb90bd", "score"): "int8",
}
BACKENDS = ("auto", "torch", "onnx")


def weights_sha256(checkpoint: str) -> Optional[str]:
    """SHA-256 of a local or packaged checkpoint's weights file; None for anything else (nothing is downloaded)."""
    from pathlib import Path

    from ..fingerprint import file_sha256
    from ..models.presets import PACKAGED_DIR

    key = str(checkpoint)
    folder = Path(key).expanduser()
    if not folder.is_dir():
        folder = PACKAGED_DIR / key.lower()
        if "/" in key or not folder.is_dir():
            return None
    for name in ("adapter_model.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            return file_sha256(folder / name)
    return None


def packaged_weights_sha256() -> dict:
    """``{name: SHA-256}`` of the packaged SmolLM2 checkpoints' weights: what a CPU measurement holds for."""
    return {name: weights_sha256(name) for name in ("repllama-smollm2", "rankllama-smollm2")}


def default_precision(checkpoint: str, task: str) -> str:
    if not MEASURED_CPU_PRECISION:
        return "fp32"
    return MEASURED_CPU_PRECISION.get((weights_sha256(checkpoint) or "", task), "fp32")


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
