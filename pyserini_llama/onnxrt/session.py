"""onnxruntime sessions, opened one way: all graph optimisations, one intra-op pool sized to this process's
cores, onnxruntime's own log quiet (its warnings concern graph rewrites, not results)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import UserError


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, as ``taskset`` or a container sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def open_session(path: Path, device: str = "cpu", threads: Optional[int] = None):
    """An ``InferenceSession`` on the CPU (or CUDA, where onnxruntime-gpu is installed and asked for)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("the onnx backend needs onnxruntime (pip install onnxruntime)") from None

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


def run_batch(session, batch: Dict[str, "torch.Tensor"]) -> np.ndarray:  # noqa: F821
    """The graph's one output for a padded batch (``input_ids``, ``attention_mask``), as float32."""
    feed = {name: np.ascontiguousarray(tensor.numpy()) for name, tensor in batch.items()}
    return np.asarray(session.run(None, feed)[0], dtype=np.float32)
