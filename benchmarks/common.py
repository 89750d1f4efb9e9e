"""What the benchmarks share: the matmul ceilings measured at the start of a run (the denominators of its MFU
figures), the command line they record, how their JSON report is written and how its table is printed.

``measure_peaks(device)`` times square products on random data: bf16 (``torch.mm``) and FP8 e4m3 with
rowwise scales (``torch._scaled_mm``, bf16 out, inputs already quantised, so this is the matmul's own rate):
``fp8`` with fast accumulation, as :mod:`pyserini_llama.models.fp8` runs it, ``fp8_accurate`` without. On a
CPU or a GPU without FP8 the FP8 entries are None.

Example::

    peaks = measure_peaks("cuda")       # {"bf16": 7.7e14, "fp8": 1.3e15, "shape": [8192, 8192, 8192], ...}
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


def _time(fn, repeats: int, sync) -> float:
    for _ in range(3):  # warm-up: kernel selection, clocks
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def measure_peaks(device: str, size: int = 8192, repeats: int = 20) -> Dict[str, Optional[float]]:
    """FLOP/s of ``size``-cubed bf16 and FP8 products on ``device`` (small sizes and few repeats on a CPU)."""
    import torch

    gpu = str(device).startswith("cuda")
    if not gpu:
        size, repeats = min(size, 256), min(repeats, 2)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(size, size, device=device, generator=gen).to(torch.bfloat16)
    flops = 2.0 * size ** 3
    bf16 = flops / _time(lambda: a @ b, repeats, sync)
    result: Dict[str, Optional[float]] = {"shape": [size, size, size], "bf16": bf16, "fp8": None, "fp8_accurate": None}
    if gpu and torch.cuda.get_device_capability(torch.device(device).index or 0) >= (8, 9):
        from pyserini_llama.models.fp8 import quantize_rows

        qa, sa = quantize_rows(a)
        qb, sb = quantize_rows(b)  # rows of b are the output channels, as a Linear weight
        sb = sb.reshape(1, -1).contiguous()
        for key, fast in (("fp8", True), ("fp8_accurate", False)):
            result[key] = flops / _time(lambda: torch._scaled_mm(qa, qb.t(), sa, sb, out_dtype=torch.bfloat16,
                                                                 use_fast_accum=fast), repeats, sync)
    if gpu:
        torch.cuda.empty_cache()
    return result


def mfu(flops: float, seconds: float, peak: Optional[float]) -> Optional[float]:
    return None if not peak else round(flops / seconds / peak, 4)


def recorded_command(script: str, argv: Optional[Sequence[str]] = None) -> str:
    """``python benchmarks/<script> <args>`` as run, with paths inside the repository made relative and other
    absolute paths (a machine's folders) shown as ``<name>``, so results files name no machine's layout."""
    shown = []
    for arg in (sys.argv[1:] if argv is None else list(argv)):
        if os.path.isabs(arg):
            path = Path(arg).resolve()
            arg = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else f"<{path.name}>"
        shown.append(arg)
    return " ".join(["python", f"benchmarks/{script}", *shown])


def write_report(path, report: dict, indent: int = 2) -> None:
    """Write ``report`` as JSON at ``path`` whole (a temporary file renamed into place, folders made as needed),
    or stop with one line naming the path: a benchmark that ran for minutes must not end in a traceback or a
    half-written report."""
    from pyserini_llama.data.atomic import atomic_write
    from pyserini_llama.errors import UserError

    try:
        with atomic_write(path) as f:
            f.write(json.dumps(report, indent=indent) + "\n")
    except (OSError, UserError) as e:
        raise SystemExit(f"error: {path}: cannot write the report ({getattr(e, 'strerror', None) or e})") from None


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain-text table on stdout, each column as wide as its widest cell: the first left-aligned (labels), the
    others right-aligned (numbers, already formatted)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths))))
