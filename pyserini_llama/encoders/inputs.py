"""Text -> token ids -> one vector: the input recipe of RepLLaMA-style embedding models, shared by inference,
training and ONNX export so that all three see exactly the same tokens.

The recipe (Ma et al., 2023; tevatron): ``query: {q}`` or ``passage: {title} {text}`` + an appended EOS, truncated
so that the EOS always survives; the embedding is the last layer's state at that EOS (or, for LLaRA, the mean of
the last ``k`` states), optionally L2-normalised. Three codebases build the rows slightly differently, and a
checkpoint's ``input_layout`` names the one it is used with (:data:`LAYOUTS`):

``tevatron-v1``  tevatron v1 (transformers 4.33), which trained the published RepLLaMA adapters and produced their
                 published numbers: ``ids(text)[:max_length - 3] + [EOS]``, **no BOS** (its
                 ``prepare_for_model`` adds no special tokens for LLaMA's fast tokenizer); title and text joined
                 by one space as they are, so an empty title leaves ``passage:  text`` (two spaces).
``model-card``   the example on the published adapters' model card, ``tokenizer(f"passage: {title} {text}</s>")``:
                 BOS + ``ids(text)`` + EOS, the title joined as in v1 (cut to ``max_length`` with the EOS kept;
                 the card itself does not truncate).
``tevatron-v2``  tevatron v2 (``src/tevatron/retriever``) and this project's trainers: ``BOS + ids(text)`` cut to
                 ``max_length - 1``, + EOS; ``f"{title} {text}".strip()``, so an empty title leaves no extra space.

A document without a title field (a plain string) is ``passage: {text}`` in every layout.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..data.beir import Document
from ..errors import UserError
from ..models.config import INPUT_LAYOUTS, CheckpointConfig

PassageLike = Union[Tuple[Optional[str], str], Document, str]

# layout -> (special tokens of the tokenizer before the text, tokens reserved besides the text)
LAYOUTS: Dict[str, Tuple[bool, int]] = {"tevatron-v1": (False, 3), "model-card": (True, 1),
                                        "tevatron-v2": (True, 1)}
assert tuple(LAYOUTS) == INPUT_LAYOUTS


def title_text(doc: PassageLike) -> Tuple[Optional[str], str]:
    """``(title, text)`` of a Document, a ``(title, text)`` pair or a plain string (title ``None``: no field)."""
    if isinstance(doc, Document):
        return doc.title, doc.text
    if isinstance(doc, str):
        return None, doc
    title, text = doc
    return title, text or ""


def format_query(query: str, config: CheckpointConfig) -> str:
    return f"{config.query_prefix}{query}{config.query_suffix}"


def join_title(title: Optional[str], text: str, layout: str) -> str:
    """``{title} {text}`` as ``layout`` joins them: v2 strips the result, v1 and the model card keep it as it is
    (an empty title leaves a leading space); without a title field (``None``) the text alone."""
    body = text if title is None else f"{title} {text}"
    return body.strip() if layout == "tevatron-v2" else body


def format_passage(title: Optional[str], text: str, config: CheckpointConfig) -> str:
    """``passage: {title} {text}`` as the checkpoint's layout joins them."""
    return f"{config.passage_prefix}{join_title(title, text, config.input_layout)}{config.passage_suffix}"


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


def tokenize_for_embedding(tokenizer, texts: List[str], max_length: int, append_eos: bool = True,
                           layout: str = "tevatron-v2") -> List[List[int]]:
    """Token ids of formatted texts in ``layout`` (see :data:`LAYOUTS`), at most ``max_length`` per row.

    The EOS is appended after truncation, so it survives however long the text is.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown input layout {layout!r} (use {', '.join(LAYOUTS)})")
    special, reserve = LAYOUTS[layout]
    if max_length <= reserve:
        raise UserError(f"max length {max_length} leaves no room for text in input layout {layout} "
                        f"(it needs at least {reserve + 1})")
    if append_eos and tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; set append_eos=false in the checkpoint config")
    if not texts:
        return []
    limit = max_length - reserve if append_eos or not special else max_length
    ids = tokenizer(cut_long_texts(tokenizer, texts, limit), add_special_tokens=special, truncation=True,
                    max_length=limit, padding=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    if append_eos:
        eos = tokenizer.eos_token_id
        ids = [row + [eos] for row in ids]
    return ids


def query_token_ids(tokenizer, config: CheckpointConfig, queries: Sequence[str],
                    max_length: Optional[int] = None) -> List[List[int]]:
    """Query rows of a RepLLaMA-style checkpoint: its prefix, length and layout."""
    return tokenize_for_embedding(tokenizer, [format_query(q, config) for q in queries],
                                  max_length or config.query_max_length, config.append_eos, config.input_layout)


def passage_token_ids(tokenizer, config: CheckpointConfig, docs: Sequence[PassageLike],
                      max_length: Optional[int] = None) -> List[List[int]]:
    """Passage rows of a RepLLaMA-style checkpoint; a document is ``(title, text)``, a Document or a string."""
    texts = [format_passage(*title_text(d), config) for d in docs]
    return tokenize_for_embedding(tokenizer, texts, max_length or config.passage_max_length, config.append_eos,
                                  config.input_layout)


def pad_id(tokenizer) -> int:
    """The id padded positions carry (masked out, so any id works): pad, else EOS, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def last_hidden_states(model, batch: Dict[str, torch.Tensor], padding_side: str) -> torch.Tensor:
    """The backbone's last-layer token states for a padded batch (``input_ids``, ``attention_mask``).

    In training, right-padded rows go through without the padding mask. A real token attends only to earlier
    positions, which right padding keeps real, so every real token's state (and every pooled vector) is the
    same (in a causal model: :func:`is_causal`); the causal attention kernel then runs without building and
    reading a mask, which at 135M is about a tenth of a training step (``benchmarks/train.py``, variant
    ``fast-unmasked``). Pad positions' states differ, and are never read: pooling reads the mask. Inference
    keeps the mask, as the reference does.
    """
    mask = None if model.training and padding_side == "right" and is_causal(model) else batch["attention_mask"]
    return model(input_ids=batch["input_ids"], attention_mask=mask, use_cache=False).last_hidden_state


def is_causal(model) -> bool:
    """Whether every attention layer of ``model`` is causal (decoders; not a bidirectional encoder such as BERT,
    whose real tokens would attend the pads without the mask). Found once per model."""
    found = getattr(model, "_pyserini_llama_causal", None)
    if found is None:
        flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
        found = bool(flags) and all(flags)
        model._pyserini_llama_causal = found
    return found


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
