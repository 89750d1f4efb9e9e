"""MS MARCO-scale exact search: a synthetic fp16 index streamed from host memory vs held on the GPU.

The index is ``--rows`` x ``--dim`` random unit vectors in float16 (MS MARCO passage with RepLLaMA: 8.8M x 4096,
72 GB), generated on the GPU chunk by chunk into one host array that is page-locked in place
(``dense.exact.pinned``: exactly its size; ``pin_memory()`` would round 72 GB up to 128). ``--queries`` random
unit float32 queries (6,980: the MS MARCO dev set) each get their top ``--k`` (1000):

* **streamed** (``StreamedChunks``): the index stays in host memory, chunks of ``--rows-per-chunk`` rows are
  copied in on a side stream while the previous chunk is scored; reported with its peak GPU memory;
* **resident** (``ResidentChunks``, unless ``--skip-resident``): the whole index on the GPU first (upload
  timed apart), then the same search.

Both must return the same rows (and scores); ``identical`` says whether they did. Times exclude building the
index and encoding queries (queries are given as vectors).

Example::

    python benchmarks/search.py --output search-h200.json          # one H200: 8.8M x 4096, 6980 queries
    python benchmarks/search.py --tiny --output /tmp/search.json   # CPU smoke run (20k x 64)
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import recorded_command, write_report  # noqa: E402

GIB = 1 << 30


def fill_index(host, device: str, rows_per_step: int, seed: int) -> None:
    """Random unit rows, made on ``device`` step by step (each step seeded by its number) into ``host``."""
    import torch

    for step, start in enumerate(range(0, len(host), rows_per_step)):
        n = min(rows_per_step, len(host) - start)
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
        block = torch.randn((n, host.shape[1]), generator=gen, device=device, dtype=torch.float32)
        host[start:start + n].copy_(torch.nn.functional.normalize(block, dim=1).half())
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_search(queries, sources, k: int, queries_per_step: int, device: str):
    import torch

    from pyserini_llama.dense.exact import exact_search

    gpu = device.startswith("cuda")
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    scores, rows = exact_search(queries, sources, k, queries_per_step)
    seconds = time.perf_counter() - start
    stats = dict(seconds=round(seconds, 3), queries_per_s=round(len(queries) / seconds, 1))
    if gpu:
        stats.update(peak_allocated_gib=round(torch.cuda.max_memory_allocated() / GIB, 2),
                     peak_reserved_gib=round(torch.cuda.max_memory_reserved() / GIB, 2),
                     resident_before_gib=round(base / GIB, 2))
    return scores, rows, stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_841_823, help="index rows (MS MARCO passage: 8,841,823)")
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=6980, help="queries (MS MARCO dev: 6,980)")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--rows-per-chunk", type=int, default=None, help="default: the library's (262,144)")
    parser.add_argument("--queries-per-step", type=int, default=None, help="default: the library's (1,024)")
    parser.add_argument("--skip-resident", action="store_true", help="only the streamed search")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: 20,000 x 64, 100 queries, top 100")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    import torch

    from pyserini_llama.dense.exact import (DEFAULT_QUERIES_PER_STEP, DEFAULT_ROWS_PER_CHUNK, ResidentChunks,
                                            StreamedChunks, pinned)

    if args.tiny:
        args.rows, args.dim, args.queries, args.k = 20_000, 64, 100, 100
        args.rows_per_chunk = args.rows_per_chunk or 4096
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows_per_chunk = args.rows_per_chunk or DEFAULT_ROWS_PER_CHUNK
    queries_per_step = args.queries_per_step or DEFAULT_QUERIES_PER_STEP
    report = dict(command=recorded_command("search.py", argv), torch=torch.__version__,
                  device=torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
                  rows=args.rows, dim=args.dim, index_dtype="float16",
                  index_gb=round(args.rows * args.dim * 2 / 1e9, 1),
                  queries=args.queries, k=args.k, rows_per_chunk=rows_per_chunk, queries_per_step=queries_per_step)

    start = time.perf_counter()
    host = torch.empty((args.rows, args.dim), dtype=torch.float16)  # pageable, exactly the index's size
    with pinned(host) as is_pinned:
        report["host_pinned"] = bool(is_pinned)
        fill_index(host, device, rows_per_chunk, args.seed)
        report["build_seconds"] = round(time.perf_counter() - start, 1)
        print(f"index {args.rows} x {args.dim} fp16 ({report['index_gb']} GB) in host memory "
              f"({'page-locked' if is_pinned else 'pageable'}), built in {report['build_seconds']} s", flush=True)
        rng = np.random.default_rng(args.seed + 1)
        queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        _, _, warm = timed_search(queries[:64], [StreamedChunks(host[:rows_per_chunk * 2], device, rows_per_chunk)],
                                  args.k, queries_per_step, device)  # kernels and allocator, not timed
        s_scores, s_rows, report["streamed"] = timed_search(
            queries, [StreamedChunks(host, device, rows_per_chunk)], args.k, queries_per_step, device)
        report["streamed"]["index_gb_per_s"] = round(args.rows * args.dim * 2 / 1e9 /
                                                              report["streamed"]["seconds"], 1)
        print(f"streamed: {json.dumps(report['streamed'])}", flush=True)
        if not args.skip_resident:
            start = time.perf_counter()
            resident = ResidentChunks(host, device, rows_per_chunk)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            upload = round(time.perf_counter() - start, 1)
            r_scores, r_rows, report["resident"] = timed_search(queries, [resident], args.k, queries_per_step,
                                                                device)
            report["resident"]["upload_seconds"] = upload
            report["identical"] = bool(np.array_equal(r_rows, s_rows) and np.array_equal(r_scores, s_scores))
            print(f"resident: {json.dumps(report['resident'])}; identical to streamed: {report['identical']}",
                  flush=True)
            del resident
    write_report(args.output, report)
    print(f"wrote {args.output}")
    return 0 if report.get("identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
