"""Text -> token ids -> one vector: the input recipe of RepLLaMA-style embedding models, shared by inference,
training and ONNX export so that all three see exactly the same tokens.

The published recipe (Ma et al., 2023; tevatron): the tokenizer's own special tokens (BOS for LLaMA-2) +
``query: {q}`` or ``passage: {title} {text}`` + an appended EOS, truncated so that the EOS always survives; the
embedding is the last layer's state at that EOS (or, for LLaRA, the mean of the last ``k`` states), optionally
L2-normalised.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch

from ..data.beir import Document
from ..models.config import CheckpointConfig

PassageLike = Union[Tuple[str, str], Document, str]


def title_text(doc: PassageLike) -> Tuple[str, str]:
    """``(title, text)`` of a Document, a ``(title, text)`` pair or a plain string."""
    if isinstance(doc, Document):
        return doc.title, doc.text
    if isinstance(doc, str):
        return "", doc
    title, text = doc
    return title or "", text or ""


def format_query(query: str, config: CheckpointConfig) -> str:
    return f"{config.query_prefix}{query}{config.query_suffix}"


def format_passage(title: str, text: str, config: CheckpointConfig) -> str:
    """``passage: {title} {text}`` as tevatron joins them (an empty title leaves no stray space)."""
    return f"{config.passage_prefix}{f'{title} {text}'.strip()}{config.passage_suffix}"


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


def pad_id(tokenizer) -> int:
    """The id padded positions carry (masked out, so any id works): pad, else EOS, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


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
