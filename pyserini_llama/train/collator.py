"""Turn training examples into model inputs with the inference code's own formatting and tokenization.

Training and inference share one tokenization path (``pyserini_llama.encoders.inputs`` and
``pyserini_llama.rerankers.inputs``) and one padding function (:func:`pyserini_llama.batching.pad_batch`), so a
trained checkpoint sees at search time exactly the tokens it was trained on: same prefixes, same truncation,
same appended EOS (or none), same padding side.

With ``bucket_tokens`` the rows of a micro-batch are cut into length-sorted chunks of at most that many padded
tokens (:func:`pyserini_llama.batching.plan_batches`, the encoders' own batch plan) instead of one batch padded
to its longest row; the loss modules run each chunk and put the outputs back in row order
(:func:`map_chunks`). Each row's output does not depend on the other rows of its batch, so the loss is the same
and only the padding (and its compute) goes.

Example::

    collate = EmbeddingCollator(tokenizer, config)
    batch = collate([("what is a cell", [Document("d1", "Cells", "A cell is ..."), ...])])
    batch["query"]["input_ids"].shape      # (1, query length)
    batch["passage"]["input_ids"].shape    # (group size, passage length)
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..batching import pad_batch, plan_batches
from ..models.config import CheckpointConfig
from ..models.presets import PromptFormat
from ..errors import UserError
from .data import Group


def count_tokens(batch) -> int:
    """Real (non-pad) tokens of a collated batch, for throughput."""
    if isinstance(batch, dict):
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        return sum(count_tokens(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(count_tokens(v) for v in batch)
    return 0


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, side: str, multiple_of: Optional[int],
             bucket_tokens: int = 0) -> Dict:
    """One padded batch, or with ``bucket_tokens`` ``{"chunks": [batch, ...], "inverse": LongTensor}``: the
    length-sorted chunks and, for each row, its position in the chunks' concatenated outputs."""
    if not bucket_tokens:
        return pad_batch(rows, pad_id, side, multiple_of)
    plan = plan_batches([len(r) for r in rows], bucket_tokens, multiple_of=multiple_of or 1)
    order = torch.tensor([i for chunk in plan for i in chunk], dtype=torch.long)
    return {"chunks": [pad_batch([rows[i] for i in chunk], pad_id, side, multiple_of) for chunk in plan],
            "inverse": torch.argsort(order)}


def map_chunks(fn: Callable[[Dict], torch.Tensor], batch: Dict) -> torch.Tensor:
    """``fn(padded batch) -> (rows, ...)`` over a :func:`pad_rows` result, outputs in row order."""
    if "chunks" not in batch:
        return fn(batch)
    return torch.cat([fn(chunk) for chunk in batch["chunks"]])[batch["inverse"].to(torch.long)]


class EmbeddingCollator:
    """RepLLaMA inputs: ``{"query": tensors (B, Lq), "passage": tensors (B*G, Lp)}``, groups kept contiguous."""

    def __init__(self, tokenizer, config: CheckpointConfig, pad_to_multiple_of: Optional[int] = None,
                 bucket_tokens: int = 0):
        self.tokenizer, self.config, self.pad_to_multiple_of = tokenizer, config, pad_to_multiple_of
        self.bucket_tokens = bucket_tokens

    def __call__(self, groups: List[Group]) -> Dict[str, Dict]:
        from ..encoders.inputs import pad_id, passage_token_ids, query_token_ids

        cfg = self.config
        # the inference rows, layout included: a checkpoint sees at search time the tokens it trained on
        q_ids = query_token_ids(self.tokenizer, cfg, [query for query, _ in groups])
        p_ids = passage_token_ids(self.tokenizer, cfg, [doc for _, docs in groups for doc in docs])
        pad = pad_id(self.tokenizer)
        return {"query": pad_batch(q_ids, pad, cfg.padding_side, self.pad_to_multiple_of),
                "passage": pad_rows(p_ids, pad, cfg.padding_side, self.pad_to_multiple_of, self.bucket_tokens)}


class PairCollator:
    """RankLLaMA inputs: ``{"pairs": tensors (B*G, L), "group_size": G}``, each group's positive first."""

    def __init__(self, tokenizer, config: CheckpointConfig, pad_token_id: int,
                 pad_to_multiple_of: Optional[int] = None, bucket_tokens: int = 0):
        self.tokenizer, self.config = tokenizer, config
        self.pad_token_id, self.pad_to_multiple_of = pad_token_id, pad_to_multiple_of
        self.bucket_tokens = bucket_tokens

    def __call__(self, groups: List[Group]) -> Dict:
        from ..rerankers.inputs import format_pair, tokenize_pairs

        cfg = self.config
        pairs = [format_pair(query, doc.title, doc.text, cfg) for query, docs in groups for doc in docs]
        ids = tokenize_pairs(self.tokenizer, [q for q, _ in pairs], [p for _, p in pairs],
                             cfg.query_max_length, cfg.passage_max_length, cfg.append_eos)
        sizes = {len(docs) for _, docs in groups}
        if len(sizes) != 1:
            raise ValueError(f"groups of different sizes in one batch: {sorted(sizes)}")
        return {"pairs": pad_rows(ids, self.pad_token_id, "right", self.pad_to_multiple_of, self.bucket_tokens),
                "group_size": sizes.pop()}


# --- LLaRA: EBAE + EBAR in one pass --------------------------------------------------------------------------

def attention_and_positions(lengths: torch.Tensor, width: int, padding_side: str = "left"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-pass mask and position ids for rows ``[input | EBAE suffix | EBAR suffix]``.

    ``lengths``: ``(batch, 3)`` token counts of the three segments. Returns ``allowed`` ``(batch, 1, L, L)``
    bool (query position may attend key position) and ``position_ids`` ``(batch, L)``:
      * causal attention over real tokens, pads never attended;
      * the EBAR suffix does not attend the EBAE suffix, so it sees exactly ``[input | EBAR suffix]``;
      * position ids count ``0..L-1`` over the row (pads included, as HF does by default and as the reference
        does with left padding), except that the EBAR suffix restarts at the EBAE suffix's first position;
      * a pad position attends itself only, so no softmax row is empty (it never feeds a real token).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    lengths = lengths.to(torch.long)
    total = lengths.sum(1)
    if int(total.max()) > width:
        raise ValueError(f"rows of {int(total.max())} tokens do not fit width {width}")
    start = width - total if padding_side == "left" else torch.zeros_like(total)
    a_start = start + lengths[:, 0]
    b_start = a_start + lengths[:, 1]
    pos = torch.arange(width).unsqueeze(0)
    real = (pos >= start[:, None]) & (pos < (start + total)[:, None])
    in_a = (pos >= a_start[:, None]) & (pos < b_start[:, None])
    in_b = (pos >= b_start[:, None]) & (pos < (start + total)[:, None])
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = causal[None] & real[:, None, :] & real[:, :, None] & ~(in_b[:, :, None] & in_a[:, None, :])
    allowed |= torch.eye(width, dtype=torch.bool)[None] & ~real[:, :, None]
    position_ids = torch.where(in_b, a_start[:, None] + (pos - b_start[:, None]), pos.expand_as(in_b))
    return allowed.unsqueeze(1), position_ids


class LlaraCollator:
    """Tokenize LLaRA examples into one-pass EBAE + EBAR batches (the reference's layout and truncation).

    Rows are ``prefix (with special tokens) + text (truncated to max_length minus prefix and both suffixes)
    + EBAE suffix + EBAR suffix``, padded (left, as the reference) to a multiple of ``pad_to_multiple_of``.
    Targets are the tokenizer's ids of the target texts (truncated to ``max_length``), special tokens excluded,
    as multi-hot ``(batch, vocab)`` rows; ``lm_labels`` are the input's tokens for the reference's next-token term.

    Example::

        collate = LlaraCollator(tokenizer, PROMPT_FORMATS["released"], max_length=128)
        batch = collate(examples[:8])   # input_ids, attention_4d (B,1,L,L bool), position_ids, targets...
    """

    def __init__(self, tokenizer, fmt: PromptFormat, max_length: int = 128, strip_stop_words: bool = True,
                 padding_side: str = "left", pad_to_multiple_of: int = 8):
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.max_length = max_length
        self.strip_stop_words = strip_stop_words
        self.padding_side = padding_side
        self.pad_to_multiple_of = max(1, pad_to_multiple_of)
        ebae, ebar = fmt.suffixes(tokenizer.eos_token)
        self.prefix_ids = tokenizer(fmt.prefix, add_special_tokens=True)["input_ids"]
        self.ebae_ids = tokenizer(ebae, add_special_tokens=False)["input_ids"]
        self.ebar_ids = tokenizer(ebar, add_special_tokens=False)["input_ids"]
        self.room = max_length - len(self.prefix_ids) - len(self.ebae_ids) - len(self.ebar_ids)
        if self.room < 1:
            raise UserError(f"--max-length {max_length} leaves no room for text after the two LLaRA "
                            f"suffixes ({max_length - self.room} tokens)")
        if fmt.k > min(len(self.ebae_ids), len(self.ebar_ids)):
            raise ValueError(f"prompt format {fmt.name!r}: k={fmt.k} exceeds a suffix's length")
        special = set(tokenizer.all_special_ids) | {tokenizer.pad_token_id}
        self.excluded = sorted(i for i in special if i is not None)
        self.vocab_size = len(tokenizer)

    def targets(self, texts: Sequence[str]) -> torch.Tensor:
        from .llara_data import remove_stop_words

        if self.strip_stop_words:
            texts = [remove_stop_words(t) for t in texts]
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_length,
                             return_attention_mask=False)["input_ids"]
        hot = torch.zeros(len(ids), self.vocab_size, dtype=torch.bool)
        for i, row in enumerate(ids):
            hot[i, torch.tensor(row, dtype=torch.long)] = True
        hot[:, self.excluded] = False
        return hot

    def __call__(self, examples) -> Dict[str, torch.Tensor]:
        body = self.tokenizer([ex.text for ex in examples], add_special_tokens=False, truncation=True,
                              max_length=self.room, return_attention_mask=False)["input_ids"]
        prefix, suffixes = self.prefix_ids, self.ebae_ids + self.ebar_ids
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        side, multiple = self.padding_side, self.pad_to_multiple_of
        padded = pad_batch([prefix + b + suffixes for b in body], pad_id, side, multiple)
        # next-token labels: the text's own tokens; a row's first token has nothing before it to predict it from
        labels = [([-100] * len(prefix) + b + [-100] * len(suffixes)) for b in body]
        for row in labels:
            row[0] = -100
        lm_labels = pad_batch(labels, -100, side, multiple)["input_ids"]
        width = padded["input_ids"].shape[1]
        lengths = torch.tensor([[len(prefix) + len(b), len(self.ebae_ids), len(self.ebar_ids)] for b in body])
        allowed, position_ids = attention_and_positions(lengths, width, side)
        # the last k states of each suffix: where the embeddings are read
        ends = lengths.cumsum(1) + (width - lengths.sum(1, keepdim=True) if side == "left" else 0)
        offsets = torch.arange(-self.fmt.k, 0)
        return {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"],
                "attention_4d": allowed, "position_ids": position_ids,
                "summarize_positions": ends[:, 1:2] + offsets, "predict_positions": ends[:, 2:3] + offsets,
                "lm_labels": lm_labels,
                "summarize_targets": self.targets([ex.summarize for ex in examples]),
                "predict_targets": self.targets([ex.predict for ex in examples])}
