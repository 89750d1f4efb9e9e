"""RankLLaMA v1's input, token for token, shared by inference and training.

The tokenizer's *pair* encoding of ``query: {q}`` and ``document: {title} {text}``, which for LLaMA-2 puts a BOS
before each part, and no EOS (the reference dropped it because it overflowed in fp16). As in the reference code
that produced the published checkpoints (tevatron v1 ``examples/rankllama/data.py``), the query part is cut to
``query_max_length`` tokens and the document part to ``passage_max_length - 3`` tokens, both counted without
special tokens; truncation is from the right. Title and text are joined as the checkpoint's ``input_layout``
says (:func:`pyserini_llama.encoders.inputs.join_title`): tevatron v1 and the model card keep an empty title's
space (``document:  text``), v2 strips it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ..encoders.inputs import cut_long_texts, join_title
from ..models.config import CheckpointConfig

# tevatron's v1 RankLLaMA preprocessing keeps passage_max_length - 3 document tokens (room for special tokens)
PASSAGE_SPECIAL_RESERVE = 3
Template = Tuple[List[int], List[int], List[int]]


def format_pair(query: str, title: Optional[str], text: str, config: CheckpointConfig) -> Tuple[str, str]:
    """The two texts of a (query, document) pair: ``("query: {q}", "document: {title} {text}")`` for v1."""
    return (config.query_prefix + query + config.query_suffix,
            config.passage_prefix + join_title(title, text, config.input_layout) + config.passage_suffix)


def pair_template(tokenizer) -> Template:
    """The special tokens the tokenizer's pair call puts before, between and after the two parts.

    Read off the tokenizer itself (LLaMA-2: ``([bos], [bos], [])``; SmolLM2: ``([], [], [])``), so that
    truncated parts can be joined exactly as ``tokenizer(a, b)`` would join untruncated ones.
    """
    a, b = "query", "document"
    ids_a = tokenizer(a, add_special_tokens=False)["input_ids"]
    ids_b = tokenizer(b, add_special_tokens=False)["input_ids"]
    full = list(tokenizer(a, b)["input_ids"])
    for i in range(len(full) - len(ids_a) + 1):
        if full[i:i + len(ids_a)] != ids_a:
            continue
        rest = full[i + len(ids_a):]
        for j in range(len(rest) - len(ids_b) + 1):
            if rest[j:j + len(ids_b)] == ids_b:
                return full[:i], rest[:j], rest[j + len(ids_b):]
    raise ValueError(f"cannot find the parts of a pair in the tokenizer's pair encoding {full}")


def encode_truncated(tokenizer, texts: Sequence[str], max_length: int) -> List[List[int]]:
    """Token ids without special tokens, cut to the first ``max_length`` (whatever the tokenizer's side)."""
    if max_length <= 0:
        raise ValueError(f"maximum length must be positive, got {max_length}")
    ids = tokenizer(cut_long_texts(tokenizer, texts, max_length), add_special_tokens=False)["input_ids"]
    return [list(x[:max_length]) for x in ids]


def join_pair(template: Template, query_ids: List[int], passage_ids: List[int],
              eos: Optional[int] = None) -> List[int]:
    pre, mid, post = template
    return pre + query_ids + mid + passage_ids + post + ([eos] if eos is not None else [])


def tokenize_pairs(tokenizer, queries: List[str], passages: List[str], query_max_length: int,
                   passage_max_length: int, append_eos: bool = False) -> List[List[int]]:
    """Token ids of formatted (query, passage) pairs, exactly as RankLLaMA v1 builds them.

    ``queries``/``passages`` are the outputs of :func:`format_pair`. Without truncation the result equals
    ``tokenizer(q, p)["input_ids"]``.
    """
    if len(queries) != len(passages):
        raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
    template = pair_template(tokenizer)
    q_ids = encode_truncated(tokenizer, queries, query_max_length)
    p_ids = encode_truncated(tokenizer, passages, passage_max_length - PASSAGE_SPECIAL_RESERVE)
    eos = tokenizer.eos_token_id if append_eos else None
    return [join_pair(template, q, p, eos) for q, p in zip(q_ids, p_ids)]
