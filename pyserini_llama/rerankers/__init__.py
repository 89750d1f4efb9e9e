"""Rerankers: RankLLaMA (pointwise LLM reranker). Model code only; no Pyserini or Java imports."""
from .inputs import format_pair, pair_template, tokenize_pairs
from .rankllama import RankLlamaReranker, rerank_hits

__all__ = ["RankLlamaReranker", "format_pair", "pair_template", "rerank_hits", "tokenize_pairs"]
