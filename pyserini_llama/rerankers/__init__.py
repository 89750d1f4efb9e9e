"""Rerankers: RankLLaMA (pointwise LLM reranker). Model code only; no Pyserini or Java imports."""
from .rankllama import (DocLookup, RankLlamaReranker, collate_pairs, default_config, document_from_raw,
                        format_pair, pair_template, rerank_hits, tokenize_pairs)

__all__ = ["DocLookup", "RankLlamaReranker", "collate_pairs", "default_config", "document_from_raw",
           "format_pair", "pair_template", "rerank_hits", "tokenize_pairs"]
