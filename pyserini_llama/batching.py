"""Length-sorted batching under a token budget: the one batch loop of encoding, reranking and ONNX inference.

A transformer pays for every padded position, so batches are made of rows of similar length: rows are sorted
longest first (an out-of-memory error, if any, shows on the first batch, not after an hour) and cut into
batches whose padded size ``batch_size * longest_length`` stays within ``max_tokens``. A row longer than the
budget still gets a batch of its own, so documents of 2048+ tokens are encoded whole. On a CPU a batch also ends
before its padding passes a tenth of its tokens (``max_padding``): there a padded position costs as much as a real
one and a larger batch buys little, so a caller's batch of mixed lengths (``pyserini.encode`` hands over 16
documents in file order) runs as a few tight batches instead of one padded to its longest row.

Example::

    plan_batches([5, 300, 12, 290], max_tokens=640)                    # [[1, 3], [2, 0]]
    vectors = map_batches(rows, lambda batch: model_fn(pad_batch(batch, pad_id)), max_tokens=8192)
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

# Padded tokens per batch. Large batches keep a 7B model's matmuls efficient on a GPU; on a CPU memory matters.
DEFAULT_TOKENS_PER_BATCH = {"cuda": 32768, "cpu": 8192}
# The share of a batch's padded tokens that may be padding, on a CPU (None: bounded by the token budget only).
MAX_PADDING = {"cuda": None, "cpu": 0.1}


def default_token_budget(device: str) -> int:
    return DEFAULT_TOKENS_PER_BATCH["cuda" if str(device).startswith("cuda") else "cpu"]


def default_max_padding(device: str) -> Optional[float]:
    return MAX_PADDING["cuda" if str(device).startswith("cuda") else "cpu"]


def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: Optional[int] = None,
                 multiple_of: int = 1, max_padding: Optional[float] = None) -> List[List[int]]:
    """Split indices of ``lengths`` into batches, longest first, each within ``max_tokens`` padded tokens.

    ``multiple_of`` accounts for padding to a multiple of it when sizing a batch; with ``max_padding`` a batch
    also ends before its pad positions pass that share of its padded tokens.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # stable: same input, same batches
    batches: List[List[int]] = []
    current: List[int] = []
    width = real = 0
    for i in order:
        length = max(int(lengths[i]), 1)
        padded = -(-length // multiple_of) * multiple_of
        width_if_added = max(width, padded)
        size = width_if_added * (len(current) + 1)
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        too_padded = max_padding is not None and size - real - length > max_padding * size
        if current and (size > max_tokens or too_many or too_padded):
            batches.append(current)
            current, width_if_added, real = [], padded, 0
        current.append(i)
        width, real = width_if_added, real + length
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
                progress: Optional[Callable[[int], object]] = None, max_padding: Optional[float] = None
                ) -> np.ndarray:
    """``fn(batch_rows) -> array (len(batch), ...)`` over length-sorted batches, results in input order.

    ``progress`` (e.g. a progress bar's ``update``) is called with the number of rows of each finished batch.
    """
    if not rows:
        raise ValueError("nothing to run: no rows")
    out: Optional[np.ndarray] = None
    for batch in plan_batches([len(r) for r in rows], max_tokens, max_batch_size, multiple_of, max_padding):
        result = np.asarray(fn([rows[i] for i in batch]))
        if out is None:
            out = np.empty((len(rows),) + result.shape[1:], dtype=result.dtype)
        out[batch] = result
        if progress is not None:
            progress(len(batch))
    return out
