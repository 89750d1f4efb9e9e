"""Length-sorted batching under a token budget: the one batch loop of encoding, reranking and ONNX inference.

A transformer pays for every padded position, so batches are made of rows of similar length: rows are sorted
longest first (an out-of-memory error, if any, shows on the first batch, not after an hour) and cut into
batches whose padded size ``batch_size * longest_length`` stays within ``max_tokens``. A row longer than the
budget still gets a batch of its own, so documents of 2048+ tokens are encoded whole.

Example::

    plan_batches([5, 300, 12, 290], max_tokens=640)                    # [[1, 3], [2, 0]]
    vectors = map_batches(rows, lambda batch: model_fn(pad_batch(batch, pad_id)), max_tokens=8192)
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

# Padded tokens per batch. Large batches keep a 7B model's matmuls efficient on a GPU; on a CPU memory matters.
DEFAULT_TOKENS_PER_BATCH = {"cuda": 32768, "cpu": 8192}


def default_token_budget(device: str) -> int:
    return DEFAULT_TOKENS_PER_BATCH["cuda" if str(device).startswith("cuda") else "cpu"]


def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: Optional[int] = None,
                 multiple_of: int = 1) -> List[List[int]]:
    """Split indices of ``lengths`` into batches, longest first, each within ``max_tokens`` padded tokens.

    ``multiple_of`` accounts for padding to a multiple of it when sizing a batch.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # stable: same input, same batches
    batches: List[List[int]] = []
    current: List[int] = []
    width = 0
    for i in order:
        padded = -(-max(int(lengths[i]), 1) // multiple_of) * multiple_of
        width_if_added = max(width, padded)
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (width_if_added * (len(current) + 1) > max_tokens or too_many):
            batches.append(current)
            current, width_if_added = [], padded
        current.append(i)
        width = width_if_added
    if current:
        batches.append(current)
    return batches


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right",
              multiple_of: Optional[int] = None) -> Dict[str, "torch.Tensor"]:  # noqa: F821
    """Pad token id rows into ``input_ids`` and ``attention_mask`` tensors (int64), on the ``side`` given."""
    import torch

    if side not in ("right", "left"):
        raise ValueError(f"padding side must be 'right' or 'left', got {side!r}")
    width = max((len(row) for row in rows), default=0)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        start = 0 if side == "right" else width - len(row)
        input_ids[i, start:start + len(row)] = row
        mask[i, start:start + len(row)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def map_batches(rows: Sequence[Sequence[int]], fn: Callable[[List[Sequence[int]]], np.ndarray], max_tokens: int,
                max_batch_size: Optional[int] = None, multiple_of: int = 1,
                progress: Optional[Callable[[int], object]] = None) -> np.ndarray:
    """``fn(batch_rows) -> array (len(batch), ...)`` over length-sorted batches, results in input order.

    ``progress`` (e.g. a progress bar's ``update``) is called with the number of rows of each finished batch.
    """
    if not rows:
        raise ValueError("nothing to run: no rows")
    out: Optional[np.ndarray] = None
    for batch in plan_batches([len(r) for r in rows], max_tokens, max_batch_size, multiple_of):
        result = np.asarray(fn([rows[i] for i in batch]))
        if out is None:
            out = np.empty((len(rows),) + result.shape[1:], dtype=result.dtype)
        out[batch] = result
        if progress is not None:
            progress(len(batch))
    return out
