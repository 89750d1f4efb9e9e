"""Exact top-k inner-product search over an index cut into row chunks: resident on a device, streamed from host
memory, or sharded across GPUs, with the same results in every case.

The index is cut into chunks of ``rows_per_chunk`` rows on one fixed grid. For each chunk and each block of
queries: scores (a matmul with float32 output), the chunk's top k, merged into the running top k. Hits are
ordered by score, then by row number, and the selection honours that order even among tied scores (see
:func:`select_topk`), so the result does not depend on where a chunk lives, on the order the chunks are
visited, or on which GPU scores them: a chunk always has the same shape, hence the same matmul kernel, hence
bit-identical scores.

* **resident**: the chunks sit in device memory (the whole index on the GPU);
* **streamed**: the rows stay in host memory (page-locked with :func:`pinned` for full-speed copies); two
  device buffers take turns: while the GPU scores chunk ``i``, chunk ``i + 1`` is copied in on a side CUDA
  stream (from pinned memory directly, or through pinned staging buffers filled by a background thread from
  pageable memory such as a memory-mapped index file). Peak GPU memory is two chunks plus one block's scores,
  whatever the index size;
* **sharded**: each GPU takes a contiguous run of whole chunks (resident or streamed); the per-GPU top k are
  merged in the same order.

float16 rows are scored against float32 queries as faiss scores its fp16 scalar-quantiser index (rows decoded
to float32): on a GPU each query is split into two float16 halves, ``q = hi + lo / 4096``, and both are
multiplied with float32 accumulation and output (fp16 x fp16 products are exact in float32), so the scores
carry float32 rounding, not float16's.

Example::

    source = StreamedChunks(host_rows, "cuda", rows_per_chunk=1 << 18)      # host_rows: (n, d) float16
    scores, rows = exact_search(queries, [source], k=1000)                 # numpy (nq, k) each
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

LO_SCALE = 4096.0  # the low half of a split query is stored times 2**12 (exact), to stay clear of fp16 subnormals
DEFAULT_ROWS_PER_CHUNK = 1 << 18  # 2 GiB of float16 rows at 4096 dimensions
DEFAULT_QUERIES_PER_STEP = 1024

HostRows = Union[np.ndarray, torch.Tensor]
Chunk = Tuple[int, torch.Tensor]  # (first row, rows on the device)


def chunk_bounds(n_rows: int, rows_per_chunk: int, first: int = 0,
                 last: Optional[int] = None) -> List[Tuple[int, int]]:
    """``[(start, end)]`` of the grid chunks between rows ``first`` and ``last`` (multiples of the chunk size)."""
    if rows_per_chunk <= 0:
        raise ValueError(f"rows_per_chunk must be positive, got {rows_per_chunk}")
    last = n_rows if last is None else last
    return [(s, min(s + rows_per_chunk, last)) for s in range(first, last, rows_per_chunk)]


def shard_bounds(n_rows: int, rows_per_chunk: int, n_shards: int) -> List[Tuple[int, int]]:
    """Contiguous row ranges made of whole grid chunks, one per shard, as even as the chunks allow."""
    n_chunks = -(-n_rows // rows_per_chunk)
    cuts = [round(i * n_chunks / n_shards) * rows_per_chunk for i in range(n_shards + 1)]
    return [(min(a, n_rows), min(b, n_rows)) for a, b in zip(cuts, cuts[1:])]


# --- sources of chunks -----------------------------------------------------------------------------------------

class ResidentChunks:
    """Rows ``[first, last)`` of ``rows`` held on ``device`` as grid chunks (in ``dtype``, default the rows')."""

    def __init__(self, rows: HostRows, device: str, rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK,
                 first: int = 0, last: Optional[int] = None, dtype: Optional[torch.dtype] = None):
        self.device = str(device)
        self.chunks: List[Chunk] = []
        for s, e in chunk_bounds(len(rows), rows_per_chunk, first, last):
            block = _host_copy(rows[s:e])
            self.chunks.append((s, block.to(self.device, dtype or block.dtype)))

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self.chunks)


class StreamedChunks:
    """Rows ``[first, last)`` of host ``rows`` copied to ``device`` chunk by chunk, double-buffered.

    ``rows`` is a pinned torch tensor (copied straight from, asynchronously), or any array (a memory-mapped
    file, plain RAM), which a background thread copies into two pinned staging buffers first. On a CPU device
    the chunks are simply views of the rows.
    """

    def __init__(self, rows: HostRows, device: str, rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK,
                 first: int = 0, last: Optional[int] = None, dtype: Optional[torch.dtype] = None):
        self.rows, self.device = rows, str(device)
        self.bounds = chunk_bounds(len(rows), rows_per_chunk, first, last)
        self.rows_per_chunk = rows_per_chunk
        self.dtype = dtype

    def __iter__(self) -> Iterator[Chunk]:
        if not self.device.startswith("cuda"):
            for s, e in self.bounds:
                block = _host_copy(self.rows[s:e])  # one chunk in RAM at a time
                yield s, block if self.dtype is None else block.to(self.dtype)
            return
        yield from _stream_to_gpu(self.rows, self.bounds, torch.device(self.device), self.rows_per_chunk,
                                  self.dtype)


@contextlib.contextmanager
def pinned(rows: torch.Tensor) -> Iterator[bool]:
    """Page-lock a contiguous CPU tensor in place for the block (``cudaHostRegister``), so that
    :class:`StreamedChunks` copies from it asynchronously; yields whether it worked (without a GPU it does
    nothing). Unlike ``pin_memory()``, which rounds every allocation up to a power of two (a 72 GB index would
    take 128 GB), this pins exactly the tensor's bytes."""
    if not torch.cuda.is_available() or rows.device.type != "cpu" or not rows.is_contiguous() or rows.is_pinned():
        yield bool(rows.device.type == "cpu" and torch.cuda.is_available() and rows.is_pinned())
        return
    cudart = torch.cuda.cudart()
    ok = int(getattr(error := cudart.cudaHostRegister(rows.data_ptr(), rows.nbytes, 0), "value", error)) == 0
    try:
        yield ok
    finally:
        if ok:
            cudart.cudaHostUnregister(rows.data_ptr())


def _host_copy(rows: HostRows) -> torch.Tensor:
    """Rows as a torch tensor: a view of a tensor, a copy of an array (a memory map is read-only)."""
    return rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.array(rows))


def _stream_to_gpu(rows: HostRows, bounds: List[Tuple[int, int]], device: torch.device, rows_per_chunk: int,
                   dtype: Optional[torch.dtype]) -> Iterator[Chunk]:
    """Yield device chunks; the copy of the next chunk overlaps the consumer's work on the current one.

    Buffer ``i % 2`` is refilled only after the compute stream has finished with chunk ``i - 2``
    (``free`` events); the compute stream uses a chunk only after its copy has landed (``ready`` events).
    """
    if not bounds:
        return
    pinned = isinstance(rows, torch.Tensor) and rows.is_pinned()
    source_dtype = rows.dtype if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows[:0])).dtype
    width = rows.shape[1]
    buffers = [torch.empty((rows_per_chunk, width), dtype=source_dtype, device=device) for _ in range(2)]
    ready = [torch.cuda.Event() for _ in range(2)]
    free = [torch.cuda.Event() for _ in range(2)]
    copied = [torch.cuda.Event() for _ in range(2)]  # the staging buffer may be refilled
    copier = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)
    staging = None if pinned else [torch.empty((rows_per_chunk, width), dtype=source_dtype, pin_memory=True)
                                   for _ in range(2)]
    pool = None if pinned else ThreadPoolExecutor(max_workers=1)

    def fill_staging(i: int) -> torch.Tensor:
        s, e = bounds[i]
        copied[i % 2].synchronize()  # the last copy out of this staging buffer is done
        target = staging[i % 2][: e - s]
        if isinstance(rows, torch.Tensor):
            target.copy_(rows[s:e])
        else:
            target.numpy()[...] = rows[s:e]  # one copy from the (mapped) file; numpy releases the GIL
        return target

    def start_copy(i: int, host: torch.Tensor) -> None:
        slot = i % 2
        with torch.cuda.stream(copier):
            copier.wait_event(free[slot])
            buffers[slot][: len(host)].copy_(host, non_blocking=True)
            ready[slot].record(copier)
            copied[slot].record(copier)

    def host_chunk(i: int):
        s, e = bounds[i]
        return rows[s:e] if pinned else pool.submit(fill_staging, i)

    try:
        pending = host_chunk(0)
        start_copy(0, pending if pinned else pending.result())
        pending = host_chunk(1) if len(bounds) > 1 else None
        for i, (s, e) in enumerate(bounds):
            if pinned and pending is not None:  # pinned: queue the next copy before the consumer's work
                start_copy(i + 1, pending)
                pending = host_chunk(i + 2) if i + 2 < len(bounds) else None
            compute.wait_event(ready[i % 2])
            chunk = buffers[i % 2][: e - s]
            yield s, chunk if dtype is None else chunk.to(dtype)
            free[i % 2].record(compute)
            if not pinned and pending is not None:  # staged: the thread filled it while the consumer worked
                start_copy(i + 1, pending.result())
                pending = host_chunk(i + 2) if i + 2 < len(bounds) else None
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        torch.cuda.synchronize(device)  # no copy may still target memory that is about to be freed


# --- scoring and selection -------------------------------------------------------------------------------------

class QueryBlock:
    """One block of float32 queries prepared for scoring on a device (and split in fp16 halves on a GPU)."""

    def __init__(self, queries: np.ndarray, device: str):
        self.q32 = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device)
        self.gpu = str(device).startswith("cuda")
        self._split: Optional[torch.Tensor] = None

    def split(self) -> torch.Tensor:
        if self._split is None:
            hi = self.q32.half()
            lo = ((self.q32 - hi.float()) * LO_SCALE).half()
            self._split = torch.cat([hi, lo])
        return self._split

    def scores(self, chunk: torch.Tensor) -> torch.Tensor:
        """float32 ``(queries, rows)`` inner products with ``chunk``."""
        if chunk.dtype == torch.float32:
            return self.q32 @ chunk.T
        if not self.gpu:
            return self.q32 @ chunk.float().T
        both = torch.mm(self.split(), chunk.T, out_dtype=torch.float32)
        m = len(self.q32)
        return both[:m].add_(both[m:], alpha=1.0 / LO_SCALE)


def select_topk(scores: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row by (score desc, column asc), unsorted; ``(values, columns)``.

    ``torch.topk`` is exact except which of several columns tied at the k-th score it keeps; rows where that
    choice arises (more than k columns reach the k-th score) are redone to keep the lowest columns.
    """
    k = min(k, scores.shape[1])
    values, columns = torch.topk(scores, k, dim=1, sorted=False)
    kth = values.min(dim=1, keepdim=True).values
    crowded = ((scores >= kth).sum(1) > k).nonzero().squeeze(1)
    if len(crowded):
        sub, threshold = scores[crowded], kth[crowded]
        above, tied = sub > threshold, sub == threshold
        room = k - above.sum(1, keepdim=True)
        keep = above | (tied & (tied.cumsum(1) <= room))  # exactly k per row, the lowest tied columns
        cols = keep.nonzero()[:, 1].view(len(crowded), k)
        columns[crowded] = cols
        values[crowded] = sub.gather(1, cols)
    return values, columns


def merge_topk(a: Tuple[torch.Tensor, torch.Tensor], b: Tuple[torch.Tensor, torch.Tensor],
               k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The best ``k`` of two candidate lists by (score desc, row asc), sorted that way."""
    values, rows = torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1)
    by_row = torch.argsort(rows, dim=1)  # rows are distinct: a plain sort is a total order
    values, rows = values.gather(1, by_row), rows.gather(1, by_row)
    best = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, best), rows.gather(1, best)


def _empty(n: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    return (torch.empty((n, 0), dtype=torch.float32, device=device),
            torch.empty((n, 0), dtype=torch.int64, device=device))


def search_source(queries: np.ndarray, source, device: str, k: int,
                  queries_per_step: int = DEFAULT_QUERIES_PER_STEP) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of one source's chunks for every query (CPU tensors), the chunks visited once, in order."""
    blocks = [QueryBlock(queries[s:s + queries_per_step], device) for s in range(0, len(queries), queries_per_step)]
    best = [_empty(len(b.q32), device) for b in blocks]
    with torch.inference_mode():
        for start, chunk in source:
            for j, block in enumerate(blocks):
                values, columns = select_topk(block.scores(chunk), k)
                best[j] = merge_topk(best[j], (values, columns + start), k)
        return (torch.cat([b[0] for b in best]).cpu() if best else torch.empty((0, 0)),
                torch.cat([b[1] for b in best]).cpu() if best else torch.empty((0, 0), dtype=torch.int64))


def exact_search(queries: np.ndarray, sources: Sequence, k: int,
                 queries_per_step: int = DEFAULT_QUERIES_PER_STEP) -> Tuple[np.ndarray, np.ndarray]:
    """Scores and row numbers ``(n_queries, k)`` of the best rows across ``sources`` (one per device, each
    holding different rows), best first; several sources are searched at once, one thread each."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if len(sources) == 1:
        results = [search_source(queries, sources[0], sources[0].device, k, queries_per_step)]
    else:
        errors: List[BaseException] = []
        results = [None] * len(sources)

        def run(i: int) -> None:
            try:
                with torch.cuda.device(torch.device(sources[i].device)) if sources[i].device.startswith("cuda") \
                        else contextlib.nullcontext():
                    results[i] = search_source(queries, sources[i], sources[i].device, k, queries_per_step)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sources))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    best = results[0]
    for other in results[1:]:
        best = merge_topk(best, other, k)
    return best[0].numpy(), best[1].numpy()

