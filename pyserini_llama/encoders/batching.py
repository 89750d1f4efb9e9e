"""Length-sorted batching under a token budget.

A transformer pays for every padded position, so batches are made of texts of similar length: the texts are
sorted longest first (an out-of-memory error, if any, shows on the first batch, not after an hour) and cut
into batches whose padded size ``batch_size * longest_length`` stays within ``max_tokens``. A text longer
than the budget still gets a batch of its own, so documents of 2048+ tokens are encoded whole.

Example::

    batches = plan_batches([5, 300, 12, 290], max_tokens=640)   # [[1, 3], [2, 0]]
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np


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


def run_batches(batches: List[List[int]], n: int, fn: Callable[[List[int]], np.ndarray],
                progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Call ``fn(batch_indices) -> (len(batch), d)`` per batch and scatter rows back to input order."""
    out: Optional[np.ndarray] = None
    for batch in batches:
        rows = fn(batch)
        if out is None:
            out = np.empty((n, rows.shape[1]), dtype=rows.dtype)
        out[batch] = rows
        if progress is not None:
            progress(len(batch))
    if out is None:
        raise ValueError("nothing to encode")
    return out
