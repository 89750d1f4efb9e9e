"""RepLLaMA: a decoder-only LLM as a dense bi-encoder (pure torch/transformers; no pyserini, no faiss).

Everything that differs between checkpoints (prefixes and suffixes, max lengths, pooling, padding side,
normalisation, dtype) comes from the checkpoint's :class:`~pyserini_llama.models.config.CheckpointConfig`; the
token recipe itself is in :mod:`.inputs`. LLaRA (:mod:`.llara`) reuses this class with its own token layout.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..batching import pad_batch
from ..models.config import CheckpointConfig
from ..runtime import compiled, on_gpu, resolve_device
from . import inputs
from .base import TextEncoder
from .inputs import PassageLike, pad_id, pool

DEFAULT_MAX_BATCH_SIZE = 1024


class RepLlamaEncoder(TextEncoder):
    """Encode queries and passages with a RepLLaMA-style checkpoint.

    Example::

        enc = RepLlamaEncoder.from_checkpoint("repllama", device="cuda")
        q = enc.encode_queries(["what is a lobster roll"])                  # (1, 4096) float32, unit norm
        p = enc.encode_passages([("Lobster roll", "A lobster roll is ...")])
        scores = q @ p.T

    Texts are tokenized once, sorted by length and cut into batches of at most ``max_tokens_per_batch``
    padded tokens; results come back in input order.
    """

    def __init__(self, model, tokenizer, config: CheckpointConfig, device: str = "cpu",
                 name_or_path: Optional[str] = None, max_tokens_per_batch: Optional[int] = None,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, compile: bool = False,
                 identity: Optional[str] = None):
        self.model = model
        self._identity = identity
        self.compile = compile  # compiled lazily, on the first batch (runtime.compiled)
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.name_or_path = name_or_path
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_batch_size = max_batch_size

    @classmethod
    def from_checkpoint(cls, name_or_path: str, device: str = "auto", dtype: Optional[str] = None,
                        trust_remote_code: bool = False, config: Optional[CheckpointConfig] = None,
                        **kwargs) -> "RepLlamaEncoder":
        """Load a checkpoint folder, built-in name or hub id (adapters are merged at load time)."""
        from ..models.load import load_checkpoint

        device = resolve_device(device)
        loaded = load_checkpoint(name_or_path, task="embedding", device=device, dtype=dtype,
                                 trust_remote_code=trust_remote_code, config=config)
        return cls(loaded.model, loaded.tokenizer, loaded.config, device=device, name_or_path=str(name_or_path),
                   identity=loaded.identity, **kwargs)

    @property
    def identity(self) -> str:
        """What the vectors depend on (weights and config): resumed and cached encodings are keyed by it.

        From the checkpoint files when loaded from one, else from the weights themselves (hashed once)."""
        if self._identity is None:
            from ..fingerprint import fingerprint, tensors_sha256

            self._identity = fingerprint({"weights": tensors_sha256(self.model.state_dict()),
                                          "config": self.config.to_dict()})
        return self._identity

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def with_config(self, **changes) -> "RepLlamaEncoder":
        """A view of this encoder (same weights) with some config fields changed, e.g. ``query_prefix``."""
        return type(self)(self.model, self.tokenizer, replace(self.config, **changes), self.device,
                          self.name_or_path, self.max_tokens_per_batch, self.max_batch_size, self.compile,
                          self._identity)

    # -- the differentiable core (the trainer calls this with gradients on) --------------------------------

    def hidden_states(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer token states; a subclass with another model head overrides this."""
        model = compiled(self.model) if self.compile else self.model
        return inputs.last_hidden_states(model, batch, self.config.padding_side)

    def embed(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward + pooling + optional L2 normalisation; float32 ``(batch, dimension)``."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        pooled = pool(self.hidden_states(batch), batch["attention_mask"], self.config.pooling,
                      self.config.pooling_k).float()
        return F.normalize(pooled, p=2, dim=-1) if self.config.normalize else pooled

    # -- inference --------------------------------------------------------------------------------------------

    def query_token_ids(self, queries: Sequence[str], max_length: Optional[int] = None) -> List[List[int]]:
        return inputs.query_token_ids(self.tokenizer, self.config, queries, max_length)

    def passage_token_ids(self, docs: Sequence[PassageLike], max_length: Optional[int] = None) -> List[List[int]]:
        return inputs.passage_token_ids(self.tokenizer, self.config, docs, max_length)

    @property
    def pad_multiple(self) -> int:
        return 8 if on_gpu(self.device) else 1  # tensor-core friendly shapes; on a CPU padding only costs

    def encode_batch(self, rows: List[List[int]]) -> np.ndarray:
        batch = pad_batch(rows, pad_id(self.tokenizer), self.config.padding_side, self.pad_multiple)
        if on_gpu(self.device):
            batch = {k: v.pin_memory() for k, v in batch.items()}
        with torch.inference_mode():
            return self.embed(batch).cpu().numpy()
