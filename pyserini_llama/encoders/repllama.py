"""RepLLaMA: a decoder-only LLM as a dense bi-encoder (pure torch/transformers; no pyserini, no faiss).

The published recipe (Ma et al., 2023; tevatron v2): the tokenizer's own special tokens (BOS for LLaMA-2) +
``query: {q}`` or ``passage: {title} {text}`` + an appended EOS, truncated so that the EOS always survives;
the embedding is the last layer's hidden state at that EOS, L2-normalised; the score is a dot product.
Everything that differs between checkpoints (prefixes and suffixes, max lengths, pooling, padding side,
normalisation, dtype) comes from the checkpoint's :class:`~pyserini_llama.models.checkpoint.CheckpointConfig`,
so LLaRA (mean of the last 8 positions, left padding, suffix prompts) reuses this class unchanged.
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..data.beir import Document
from ..models.checkpoint import CheckpointConfig
from .batching import plan_batches, run_batches

PassageLike = Union[Tuple[str, str], Document, str]

# Padded tokens per batch. Large batches keep a 7B model's matmuls efficient on a GPU; on a CPU memory matters.
DEFAULT_TOKENS_PER_BATCH = {"cuda": 32768, "cpu": 8192}
DEFAULT_MAX_BATCH_SIZE = 1024


def format_query(query: str, config: CheckpointConfig) -> str:
    return f"{config.query_prefix}{query}{config.query_suffix}"


def format_passage(title: str, text: str, config: CheckpointConfig) -> str:
    """``passage: {title} {text}`` as tevatron joins them (an empty title leaves no stray space)."""
    return f"{config.passage_prefix}{f'{title} {text}'.strip()}{config.passage_suffix}"


def tokenize_for_embedding(tokenizer, texts: List[str], max_length: int,
                           append_eos: bool = True) -> List[List[int]]:
    """Token ids with the tokenizer's own special tokens, truncated to fit ``max_length`` with an EOS appended.

    The EOS is appended after truncation (tevatron v2), so it survives however long the text is.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if append_eos and tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; set append_eos=false in the checkpoint config")
    if not texts:
        return []
    limit = max_length - 1 if append_eos else max_length
    ids = tokenizer(cut_long_texts(tokenizer, texts, limit), add_special_tokens=True, truncation=True,
                    max_length=limit, padding=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    if append_eos:
        eos = tokenizer.eos_token_id
        ids = [row + [eos] for row in ids]
    return ids


def cut_long_texts(tokenizer, texts: Sequence[str], max_tokens: int) -> List[str]:
    """Cut texts far beyond the characters ``max_tokens`` tokens can span, before tokenizing them.

    Tokenizing a whole 10 MB document to keep its first 200 tokens takes half a minute. No token covers more
    characters than its vocabulary entry has, so with a 4x margin (for normalisers) the kept tokens are the same.
    """
    longest = getattr(tokenizer, "_pyserini_llama_longest_token", None)
    if longest is None:
        longest = max((len(token) for token in tokenizer.get_vocab()), default=1)
        tokenizer._pyserini_llama_longest_token = longest
    budget = (max_tokens + 8) * 4 * longest + 1024
    return [t if len(t) <= budget else t[:budget] for t in texts]


def collate(tokenizer, ids: List[List[int]], padding_side: str = "right",
            pad_to_multiple_of: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max()) if len(ids) else 0
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        n = len(row)
        start = 0 if padding_side == "right" else width - n
        input_ids[i, start:start + n] = row
        mask[i, start:start + n] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "eos",
         k: int = 8) -> torch.Tensor:
    """Pool token states into one vector per text; correct for right and left padding alike.

    ``eos``: the state at the last non-pad token (the appended EOS). ``mean_last_k``: the mean of the last
    ``k`` non-pad states (LLaRA's released format), computed in float32.
    """
    mask = attention_mask.to(torch.long)
    if pooling == "eos":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask * positions).argmax(dim=1)  # the highest position holding a real token
        return last_hidden_state[torch.arange(mask.shape[0], device=mask.device), last]
    if pooling == "mean_last_k":
        from_end = mask.flip(1).cumsum(1).flip(1)  # 1 at the last real token, 2 just before it, ...
        keep = (mask.bool() & (from_end <= k)).to(torch.float32).unsqueeze(-1)
        return (last_hidden_state.float() * keep).sum(1) / keep.sum(1).clamp(min=1)
    raise ValueError(f"unknown pooling {pooling!r} (use 'eos' or 'mean_last_k')")


def resolve_device(device: Optional[str]) -> str:
    """``device``, or ``cpu`` with a warning when CUDA is asked for but absent (Pyserini defaults to cuda:0)."""
    device = str(device or "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"device {device!r} requested but CUDA is not available; using cpu", stacklevel=2)
        return "cpu"
    return device


class RepLlamaEncoder:
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
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, compile: bool = False):
        self.model = model
        # compiled lazily, on first use (see models.load.compiled)
        self.compile = compile
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.name_or_path = name_or_path
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_batch_size = max_batch_size

    @classmethod
    def from_checkpoint(cls, name_or_path: str, device: str = "cpu", dtype: Optional[str] = None,
                        trust_remote_code: bool = False, config: Optional[CheckpointConfig] = None,
                        **kwargs) -> "RepLlamaEncoder":
        """Load a checkpoint folder, built-in name or hub id (adapters are merged at load time)."""
        from ..models.load import load_checkpoint

        device = resolve_device(device)
        loaded = load_checkpoint(name_or_path, task="embedding", device=device, dtype=dtype,
                                 trust_remote_code=trust_remote_code,
                                 config=config)
        _prefer_sdpa(loaded.model)
        return cls(loaded.model, loaded.tokenizer, loaded.config, device=device,
                   name_or_path=str(name_or_path), **kwargs)

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def with_config(self, **changes) -> "RepLlamaEncoder":
        """A view of this encoder (same weights) with some config fields changed, e.g. ``query_prefix``."""
        return type(self)(self.model, self.tokenizer, replace(self.config, **changes), self.device,
                          self.name_or_path, self.max_tokens_per_batch, self.max_batch_size, self.compile)

    # -- the differentiable core (the trainer calls this with gradients on) --------------------------------

    def hidden_states(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer token states; a subclass with another model head overrides this."""
        out = self.forward_module()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    use_cache=False)
        return out.last_hidden_state

    def forward_module(self):
        """The model, or its compiled version when ``compile`` was asked for."""
        from ..models.load import compiled

        return compiled(self.model) if self.compile else self.model

    def embed(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward + pooling + optional L2 normalisation; float32 ``(batch, dimension)``."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        pooled = pool(self.hidden_states(batch), batch["attention_mask"], self.config.pooling,
                      self.config.pooling_k).float()
        return F.normalize(pooled, p=2, dim=-1) if self.config.normalize else pooled

    # -- inference --------------------------------------------------------------------------------------------

    def encode_queries(self, queries: Sequence[str], max_length: Optional[int] = None,
                       max_tokens_per_batch: Optional[int] = None, show_progress: bool = True) -> np.ndarray:
        texts = [format_query(q, self.config) for q in queries]
        return self.encode_texts(texts, max_length or self.config.query_max_length, max_tokens_per_batch,
                                 show_progress, desc="queries")

    def encode_passages(self, docs: Sequence[PassageLike], max_length: Optional[int] = None,
                        max_tokens_per_batch: Optional[int] = None, show_progress: bool = True) -> np.ndarray:
        texts = [format_passage(*_title_text(d), self.config) for d in docs]
        return self.encode_texts(texts, max_length or self.config.passage_max_length, max_tokens_per_batch,
                                 show_progress, desc="passages")

    def encode_texts(self, texts: Sequence[str], max_length: int, max_tokens_per_batch: Optional[int] = None,
                     show_progress: bool = True, desc: str = "texts") -> np.ndarray:
        """Encode already formatted texts (prefix and suffix included)."""
        ids = tokenize_for_embedding(self.tokenizer, list(texts), max_length, self.config.append_eos)
        return self.encode_token_ids(ids, max_tokens_per_batch, show_progress, desc)

    def encode_token_ids(self, ids: List[List[int]], max_tokens_per_batch: Optional[int] = None,
                         show_progress: bool = True, desc: str = "texts") -> np.ndarray:
        """Encode token id lists: length-sorted batches under the token budget, rows in input order."""
        from tqdm.auto import tqdm

        if not ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        on_gpu = str(self.device).startswith("cuda")
        budget = max_tokens_per_batch or self.max_tokens_per_batch or \
            DEFAULT_TOKENS_PER_BATCH["cuda" if on_gpu else "cpu"]
        multiple = 8 if on_gpu else None  # tensor-core friendly shapes; on a CPU padding only costs
        batches = plan_batches([len(row) for row in ids], budget, self.max_batch_size, multiple or 1)

        def encode_batch(indices: List[int]) -> np.ndarray:
            batch = collate(self.tokenizer, [ids[i] for i in indices], self.config.padding_side, multiple)
            if on_gpu:
                batch = {k: v.pin_memory() for k, v in batch.items()}
            return self.embed(batch).cpu().numpy()

        with tqdm(total=len(ids), desc=f"encoding {desc}", unit="text",
                  disable=not show_progress, leave=False) as bar, torch.inference_mode():
            return run_batches(batches, len(ids), encode_batch, bar.update)


def _title_text(doc: PassageLike) -> Tuple[str, str]:
    if isinstance(doc, Document):
        return doc.title, doc.text
    if isinstance(doc, str):
        return "", doc
    title, text = doc
    return title or "", text or ""


def _prefer_sdpa(model) -> None:
    """Use PyTorch's fused attention where the checkpoint asked for eager attention."""
    if getattr(model.config, "_attn_implementation", None) == "eager":
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, AttributeError, ImportError):  # a model without SDPA support keeps eager
            pass
