"""Where and how models run: device, dtype, the compile cache and the distributed rank, decided once.

Every CLI and library entry point resolves its device and dtype here, so ``--device cuda`` on a machine without
a GPU fails the same way everywhere (one line, before any model loads), and ``auto`` means the same thing
everywhere: this rank's GPU under ``torchrun``, the GPU when there is one, else the CPU.

Example::

    device = resolve_device("auto")             # "cuda:1" for LOCAL_RANK=1 under torchrun, "cpu" without a GPU
    dtype = resolve_dtype(None, device, preferred="bfloat16")   # torch.bfloat16 on a GPU, float32 on a CPU
    model = compiled(model)                     # built once per model, shared by its users
"""
from __future__ import annotations

import os
import weakref
from typing import Optional, Tuple

from .errors import UserError

DTYPE_NAMES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
               "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32",
               "fp8": "fp8", "float8": "fp8", "float8_e4m3fn": "fp8"}
# fp8: the decoder layers' matmuls in float8 e4m3 (models/fp8.py), everything else in bfloat16
FP8 = "fp8"


def distributed_rank() -> Tuple[int, int]:
    """``(rank, world_size)`` as set by torchrun (``0, 1`` when run directly)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def barrier(world_size: int) -> None:
    """Wait for every torchrun rank (no-op for one process); the process group is gloo (no GPU needed), with
    a long timeout so that a rank may wait while the others finish hours of work."""
    if world_size <= 1:
        return
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    dist.barrier()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(requested: Optional[str] = "auto") -> str:
    """A torch device string for ``requested`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``), or a UserError.

    ``auto`` is ``cuda:LOCAL_RANK`` under torchrun, ``cuda`` on a GPU machine, else ``cpu``.
    """
    name = str(requested or "auto").strip().lower()
    if name == "auto":
        if not cuda_available():
            return "cpu"
        return f"cuda:{local_rank()}" if "LOCAL_RANK" in os.environ else "cuda"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not cuda_available():
            raise UserError(f"device {requested!r}: no CUDA GPU is available here; use --device cpu (or auto)")
        import torch

        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device {requested!r}: this machine has {torch.cuda.device_count()} GPU(s)")
        return name
    raise UserError(f"unknown device {requested!r} (use auto, cpu, cuda or cuda:N)")


def on_gpu(device: str) -> bool:
    return str(device).startswith("cuda")


def dtype_name(requested: Optional[str], device: str, preferred: str = "bfloat16") -> str:
    """The dtype's canonical name: ``requested``, or for ``auto``/None ``preferred`` on a GPU and ``float32`` on
    a CPU. float16 on a CPU becomes float32 (its matmuls are slow or missing there); bfloat16 stays if asked for.
    """
    if requested in (None, "", "auto"):
        requested = preferred if on_gpu(device) else "float32"
    name = DTYPE_NAMES.get(str(requested).lower())
    if name is None:
        raise UserError(f"unknown dtype {requested!r} (use auto, bfloat16, float16, float32 or fp8)")
    if name == FP8:
        from .models.fp8 import check_fp8_device

        check_fp8_device(device)  # one line on a CPU or an older GPU, before any weights load
        return name
    if not on_gpu(device):
        return "float32" if name == "float16" else name
    if name == "bfloat16":
        import torch

        if not torch.cuda.is_bf16_supported():
            return "float16"
    return name


def resolve_dtype(requested: Optional[str], device: str, preferred: str = "bfloat16"):
    """The ``torch.dtype`` of :func:`dtype_name` (for fp8: bfloat16, the dtype a model loads in before its
    matmuls are quantised, see :func:`is_fp8_dtype`)."""
    import torch

    name = dtype_name(requested, device, preferred)
    return torch.bfloat16 if name == FP8 else getattr(torch, name)


def is_fp8_dtype(requested: Optional[str]) -> bool:
    """Whether ``requested`` names fp8 (any spelling)."""
    return DTYPE_NAMES.get(str(requested).lower()) == FP8


def torch_dtype(name: str):
    """The ``torch.dtype`` a canonical or short name stands for, whatever the device (for saving weights)."""
    import torch

    canonical = DTYPE_NAMES.get(str(name).lower())
    if canonical == FP8:
        raise UserError("fp8 is an inference dtype (matmuls quantised at load); train and save in bfloat16 "
                        "or float32")
    if canonical is None:
        raise UserError(f"unknown dtype {name!r} (use bfloat16, float16 or float32)")
    return getattr(torch, canonical)


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled(model):
    """``model`` with its decoder layers under ``torch.compile(dynamic=True)``, built once per model and shared
    by its users; the model itself is left as it is (eager for everyone else).

    Eager LLaMA runs its norms, rotary embeddings, activations (and with fp8 the activation quantisation) as
    separate memory-bound kernels between the matmuls; compiling fuses them (on an H100 at 7B shape: 55% -> 75%
    MFU for encoding). Compiling each decoder layer (regional compilation) rather than the whole model gives
    the same fusion, since every fusable kernel lies inside a layer, at a fraction of the compile time: all
    layers share one graph. Dynamic shapes keep one graph for every batch shape of length-sorted batching.
    Compilation happens on the first batch. The twin runs without a KV cache (encoders and rerankers need none).
    A model without decoder layers is compiled whole.
    """
    import torch

    if model not in _COMPILED:
        _COMPILED[model] = _with_compiled_layers(model) or torch.compile(model, dynamic=True)
    return _COMPILED[model]


def _with_compiled_layers(model):
    """A shallow twin of ``model`` sharing its weights, whose ``layers`` list holds compiled layers."""
    import copy

    import torch

    path = next((name.split(".") for name, m in model.named_modules()
                 if isinstance(m, torch.nn.ModuleList) and name.split(".")[-1] == "layers"), None)
    if path is None:
        return None

    def twin(module, rest):
        if not rest:
            return torch.nn.ModuleList([torch.compile(layer, dynamic=True) for layer in module])
        copied = copy.copy(module)
        copied._modules = dict(module._modules)  # the twin's own child table; the children stay shared
        copied._modules[rest[0]] = twin(module._modules[rest[0]], rest[1:])
        if getattr(module, "config", None) is not None and hasattr(module.config, "use_cache"):
            # no KV cache: each layer would hand the cache its own index, and every index would be a new graph
            copied.config = copy.copy(module.config)
            copied.config.use_cache = False
        return copied

    return twin(model, path)
