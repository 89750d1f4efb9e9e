"""Turn training groups into model inputs with the inference code's own formatting and tokenization.

Training and inference share one tokenization path (``pyserini_llama.encoders.repllama`` and
``pyserini_llama.rerankers.rankllama``), so a trained checkpoint sees at search time exactly the tokens
it was trained on: same prefixes, same truncation, same appended EOS (or none), same padding side.

Example::

    collate = EmbeddingCollator(tokenizer, config)
    batch = collate([("what is a cell", [Document("d1", "Cells", "A cell is ..."), ...])])
    batch["query"]["input_ids"].shape      # (1, query length)
    batch["passage"]["input_ids"].shape    # (group size, passage length)
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ..models.config import CheckpointConfig
from .data import Group


def count_tokens(batch) -> int:
    """Real (non-pad) tokens of a collated batch, for throughput."""
    if isinstance(batch, dict):
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        return sum(count_tokens(v) for v in batch.values())
    return 0


class EmbeddingCollator:
    """RepLLaMA inputs: ``{"query": tensors (B, Lq), "passage": tensors (B*G, Lp)}``, groups kept contiguous."""

    def __init__(self, tokenizer, config: CheckpointConfig, pad_to_multiple_of: Optional[int] = None):
        self.tokenizer, self.config, self.pad_to_multiple_of = tokenizer, config, pad_to_multiple_of

    def __call__(self, groups: List[Group]) -> Dict[str, Dict]:
        from ..batching import pad_batch
        from ..encoders.inputs import format_passage, format_query, pad_id, tokenize_for_embedding

        cfg = self.config
        queries = [format_query(query, cfg) for query, _ in groups]
        passages = [format_passage(doc.title, doc.text, cfg) for _, docs in groups for doc in docs]
        q_ids = tokenize_for_embedding(self.tokenizer, queries, cfg.query_max_length, cfg.append_eos)
        p_ids = tokenize_for_embedding(self.tokenizer, passages, cfg.passage_max_length, cfg.append_eos)
        pad = pad_id(self.tokenizer)
        return {"query": pad_batch(q_ids, pad, cfg.padding_side, self.pad_to_multiple_of),
                "passage": pad_batch(p_ids, pad, cfg.padding_side, self.pad_to_multiple_of)}


class PairCollator:
    """RankLLaMA inputs: ``{"pairs": tensors (B*G, L), "group_size": G}``, each group's positive first."""

    def __init__(self, tokenizer, config: CheckpointConfig, pad_token_id: int,
                 pad_to_multiple_of: Optional[int] = None):
        self.tokenizer, self.config = tokenizer, config
        self.pad_token_id, self.pad_to_multiple_of = pad_token_id, pad_to_multiple_of

    def __call__(self, groups: List[Group]) -> Dict:
        from ..batching import pad_batch
        from ..rerankers.inputs import format_pair, tokenize_pairs

        cfg = self.config
        pairs = [format_pair(query, doc.title, doc.text, cfg) for query, docs in groups for doc in docs]
        ids = tokenize_pairs(self.tokenizer, [q for q, _ in pairs], [p for _, p in pairs],
                             cfg.query_max_length, cfg.passage_max_length, cfg.append_eos)
        sizes = {len(docs) for _, docs in groups}
        if len(sizes) != 1:
            raise ValueError(f"groups of different sizes in one batch: {sorted(sizes)}")
        return {"pairs": pad_batch(ids, self.pad_token_id, "right", self.pad_to_multiple_of),
                "group_size": sizes.pop()}
