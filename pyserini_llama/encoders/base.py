"""What every encoder does with texts, whatever runs the model: texts -> token rows -> vectors.

An encoder (torch's :class:`~pyserini_llama.encoders.repllama.RepLlamaEncoder`, onnxruntime's
:class:`~pyserini_llama.encoders.onnx.OnnxEncoder`) gives its token rows (``query_token_ids``,
``passage_token_ids``), how one padded batch of rows becomes vectors (``encode_batch``) and its batching
settings; this class runs the length-sorted batches under the token budget, with progress, rows in input order.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from ..batching import default_max_padding, default_token_budget, map_batches
from ..progress import progress_bar
from .inputs import PassageLike

Progress = Union[bool, Callable[[int], object]]


class TextEncoder:
    device: str = "cpu"
    dimension: int
    max_tokens_per_batch: Optional[int] = None
    max_batch_size: Optional[int] = None
    pad_multiple: int = 1  # batches padded to a multiple of this many tokens

    def query_token_ids(self, queries: Sequence[str], max_length: Optional[int] = None) -> List[List[int]]:
        raise NotImplementedError

    def passage_token_ids(self, docs: Sequence[PassageLike], max_length: Optional[int] = None) -> List[List[int]]:
        raise NotImplementedError

    def encode_batch(self, rows: List[List[int]]) -> np.ndarray:
        """One batch of token rows (not yet padded) -> ``(len(rows), dimension)`` float32."""
        raise NotImplementedError

    def encode_queries(self, queries: Sequence[str], max_length: Optional[int] = None,
                       max_tokens_per_batch: Optional[int] = None, progress: Progress = False) -> np.ndarray:
        return self.encode_token_ids(self.query_token_ids(queries, max_length), max_tokens_per_batch, progress,
                                     desc="encoding queries")

    def encode_passages(self, docs: Sequence[PassageLike], max_length: Optional[int] = None,
                        max_tokens_per_batch: Optional[int] = None, progress: Progress = False) -> np.ndarray:
        return self.encode_token_ids(self.passage_token_ids(docs, max_length), max_tokens_per_batch, progress,
                                     desc="encoding passages")

    def encode_token_ids(self, ids: List[List[int]], max_tokens_per_batch: Optional[int] = None,
                         progress: Progress = False, desc: str = "encoding") -> np.ndarray:
        """Encode token id rows: length-sorted batches under the token budget, rows in input order.

        ``progress`` is True (a bar of its own), False, or a callable taking the number of rows done.
        """
        if not ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        budget = max_tokens_per_batch or self.max_tokens_per_batch or default_token_budget(self.device)
        run = partial(map_batches, ids, self.encode_batch, budget, self.max_batch_size, self.pad_multiple,
                      max_padding=default_max_padding(self.device))
        if callable(progress):
            return run(progress=progress)
        with progress_bar(len(ids), desc, "text", enabled=bool(progress)) as bar:
            return run(progress=bar.update)
