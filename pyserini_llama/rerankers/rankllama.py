"""RankLLaMA: a pointwise LLM reranker (sequence classification with one output, score = logit).

Inputs are RankLLaMA v1's, token for token (:mod:`.inputs`). The score head reads the hidden state of the last
real token, found from the attention mask (right padding). This module needs only torch and transformers (no Pyserini, no Java), so it runs
on a GPU machine without them.

Example::

    from pyserini_llama.rerankers import RankLlamaReranker
    reranker = RankLlamaReranker.from_checkpoint("rankllama", device="cuda")
    scores = reranker.score("what is a lobster roll", [("", "A lobster roll is a sandwich ..."), ...])
    reranked = reranker.rerank(queries, first_stage_run, corpus, hits=100)
"""
from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..batching import default_max_padding, default_token_budget, map_batches, pad_batch
from ..data.beir import Document
from ..data.documents import DocLookup, document_from_raw, fetch_documents
from ..data.trec import Run
from ..encoders.inputs import last_hidden_states, pad_id, pool
from ..errors import UserError
from ..models.config import CheckpointConfig
from ..models.presets import rankllama_v1_config
from ..progress import progress_bar
from ..runtime import compiled, on_gpu, resolve_device
from .inputs import (PASSAGE_SPECIAL_RESERVE, encode_truncated, format_pair, join_pair, pair_template,
                     tokenize_pairs)

log = logging.getLogger(__name__)


class RankLlamaReranker:
    """Score (query, document) pairs with a RankLLaMA checkpoint and rerank runs.

    Example::

        reranker = RankLlamaReranker.from_checkpoint("rankllama", device="cuda")     # published 7B LoRA
        reranker = RankLlamaReranker.from_checkpoint("path/to/checkpoint")          # ours, or any folder
        reranker.score("query text", [("title", "text"), ("", "another text")])     # -> np.ndarray
        new_run = reranker.rerank(queries, run, corpus, hits=100)

    ``batch_tokens`` bounds each batch's padded size (batch size x longest pair): pairs from all queries are
    sorted by length, so batches carry little padding.
    """

    def __init__(self, model, tokenizer, config: Optional[CheckpointConfig] = None, device: str = "cpu",
                 batch_tokens: Optional[int] = None, compile: bool = False):
        self.model = model
        self.compile = compile  # torch.compile on the first batch (runtime.compiled): faster on GPUs
        self.tokenizer = tokenizer
        self.config = config or rankllama_v1_config()
        self.device = str(device)
        self.query_max_length = self.config.query_max_length
        self.passage_max_length = self.config.passage_max_length
        self.batch_tokens = batch_tokens or default_token_budget(self.device)
        # padded positions are masked out and the score position comes from the mask, so any id pads
        self.pad_token_id = model.config.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = pad_id(tokenizer)
        self.template = pair_template(tokenizer)

    @classmethod
    def from_checkpoint(cls, name_or_path: str, device: str = "auto", dtype: Optional[str] = None,
                        trust_remote_code: bool = False, batch_tokens: Optional[int] = None,
                        compile: bool = False) -> "RankLlamaReranker":
        """Load a checkpoint by name (``rankllama``, ``rankllama-smollm2``, ...) or folder; LoRA is merged."""
        from ..models.load import load_checkpoint, resolve_checkpoint

        device = resolve_device(device)
        _, found = resolve_checkpoint(name_or_path)
        config = found or rankllama_v1_config()
        if config.kind != "rankllama":
            raise UserError(f"{name_or_path}: a {config.kind!r} checkpoint, not a RankLLaMA reranker")
        loaded = load_checkpoint(name_or_path, task="sequence-classification", device=device, dtype=dtype,
                                 trust_remote_code=trust_remote_code, config=config)
        return cls(loaded.model, loaded.tokenizer, loaded.config, device, batch_tokens, compile)

    # -- scoring -------------------------------------------------------------------------------------------

    def score_batch(self, batch: Dict[str, "torch.Tensor"]) -> "torch.Tensor":  # noqa: F821
        """Logits of a collated batch, shape ``[B]``, in float32; differentiable (the trainer calls this).

        The score head reads the last real token as the attention mask says. (Transformers' own sequence
        classifier searches the input ids for the pad id instead: Llama-2 pads with ``<unk>`` (id 0), so a
        document whose last token is ``<unk>`` would be scored from the token before it.)
        """
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        backbone, head = backbone_and_head(self.model)
        backbone = compiled(backbone) if self.compile else backbone
        states = last_hidden_states(backbone, batch, "right")
        return head(pool(states, batch["attention_mask"], "eos"))[:, 0].float()

    def collate(self, token_ids: Sequence[Sequence[int]]) -> Dict[str, "torch.Tensor"]:  # noqa: F821
        """Right-padded tensors (the score head reads the last real token)."""
        return pad_batch(token_ids, self.pad_token_id, "right", 8 if on_gpu(self.device) else None)

    def encode_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> List[List[int]]:
        """Token ids of formatted pairs, with this reranker's maximum lengths."""
        return tokenize_pairs(self.tokenizer, list(queries), list(passages), self.query_max_length,
                              self.passage_max_length, self.config.append_eos)

    def score_token_ids(self, token_ids: Sequence[List[int]], progress: bool = False) -> np.ndarray:
        """Scores of tokenized pairs in input order, computed longest first under the token budget."""
        import torch

        if not token_ids:
            return np.zeros(0, dtype=np.float32)

        def score_rows(rows: List[Sequence[int]]) -> np.ndarray:
            logits = self.score_batch(self.collate(rows))
            if not torch.isfinite(logits).all():
                raise UserError(f"non-finite reranker scores in {self.model.dtype}; use bfloat16 or float32")
            return logits.cpu().numpy()

        with torch.inference_mode(), progress_bar(len(token_ids), "reranking", "pair", enabled=progress) as bar:
            return map_batches(token_ids, score_rows, self.batch_tokens, multiple_of=8 if on_gpu(self.device) else 1,
                               progress=bar.update, max_padding=default_max_padding(self.device))

    def score(self, query: str, docs: Sequence[Tuple[str, str]]) -> np.ndarray:
        """Scores of ``(title, text)`` documents for one query, in input order."""
        pairs = [format_pair(query, title, text, self.config) for title, text in docs]
        return self.score_token_ids(self.encode_pairs([q for q, _ in pairs], [p for _, p in pairs]))

    # -- reranking -----------------------------------------------------------------------------------------

    def rerank(self, queries: Mapping[str, str], run: Run, corpus: DocLookup,
               hits: int = 100, skip_missing: bool = False, progress: bool = True) -> Run:
        """Rerank each query's top ``hits`` documents; the rest keep their order below them.

        Documents the corpus lacks are an error, or with ``skip_missing`` a warning: they are then kept, in
        their order, below the reranked ones. Every document of ``run`` is in the result.
        """
        check_rerank_inputs(queries, run, hits)
        docs, missing = fetch_documents(corpus, {d for qid in run for d, _ in run[qid][:hits]})
        if missing:
            sample = ", ".join(map(repr, missing[:5]))
            if not skip_missing:
                raise UserError(f"{len(missing)} documents of the run are not in the corpus (e.g. {sample}); "
                                f"is it the right corpus? (skipping missing documents keeps them unscored)")
            log.warning("%d documents of the run are not in the corpus (e.g. %s); they stay unscored below "
                        "the reranked ones", len(missing), sample)

        pairs = [(qid, docid) for qid in run for docid, _ in run[qid][:hits] if docid in docs]
        qids = sorted({qid for qid, _ in pairs})
        docids = sorted({docid for _, docid in pairs})
        # Queries and documents repeat across pairs: tokenize each once, then join.
        q_ids = dict(zip(qids, encode_truncated(
            self.tokenizer, [format_pair(queries[q], "", "", self.config)[0] for q in qids],
            self.query_max_length)))
        p_texts = [format_pair("", docs[d].title, docs[d].text, self.config)[1] for d in docids]
        p_ids = dict(zip(docids, encode_truncated(self.tokenizer, p_texts,
                                                  self.passage_max_length - PASSAGE_SPECIAL_RESERVE)))
        eos = self.tokenizer.eos_token_id if self.config.append_eos else None
        token_ids = [join_pair(self.template, q_ids[q], p_ids[d], eos) for q, d in pairs]
        scores = self.score_token_ids(token_ids, progress=progress)
        by_pair = {pair: float(s) for pair, s in zip(pairs, scores)}
        return {qid: merge_reranked(run[qid], by_pair, qid) for qid in run}


def backbone_and_head(model):
    """The transformer body and the score head of a sequence-classification model (peft-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = getattr(base, "score", None)
    if backbone is None or head is None:
        raise UserError(f"{type(base).__name__}: not a decoder sequence classifier with a 'score' head "
                        f"(RankLLaMA checkpoints are LlamaForSequenceClassification)")
    return backbone, head


def check_rerank_inputs(queries: Mapping[str, str], run: Run, hits: int) -> None:
    if hits <= 0:
        raise ValueError(f"hits must be positive, got {hits}")
    if not run or not any(run.values()):
        raise UserError("the run to rerank is empty")
    lacking = sorted(set(run) - set(queries))
    if lacking:
        raise UserError(f"{len(lacking)} queries of the run are not in the topics (e.g. "
                        f"{', '.join(map(repr, lacking[:5]))}); are the run and topics from the same set?")


def merge_reranked(hits: List[Tuple[str, float]], scores: Mapping[Tuple[str, str], float],
                   qid: str) -> List[Tuple[str, float]]:
    """Scored hits best first, then the unscored ones in their first-stage order with lower scores."""
    scored = [(d, scores[qid, d]) for d, _ in hits if (qid, d) in scores]
    scored.sort(key=lambda h: -h[1])  # stable: ties keep their first-stage order
    floor = scored[-1][1] if scored else 0.0
    rest = [(d, floor - i - 1.0) for i, (d, _) in enumerate(h for h in hits if (qid, h[0]) not in scores)]
    return scored + rest


def _hit_raw(hit) -> Optional[str]:
    raw = getattr(hit, "raw", None)
    if callable(raw):
        raw = raw()
    if raw is None and getattr(hit, "lucene_document", None) is not None:
        raw = hit.lucene_document.get("raw")
    return raw


def rerank_hits(reranker: RankLlamaReranker, query: str, hits: Sequence, docs: Optional[DocLookup] = None,
                k: Optional[int] = None) -> List[Tuple[str, float]]:
    """Rerank Pyserini hits (``LuceneSearcher.search``, ``FaissSearcher.search``, ``HybridSearcher.search``).

    Text comes from ``docs`` (a corpus dict or any docid lookup) when given, else from each hit's stored
    ``raw`` document (Lucene hits). The top ``k`` hits (default: all) are reranked; the rest keep their order
    below. Returns ``[(docid, score)]`` best first.

    Example::

        hits = LuceneSearcher("indexes/scifact").search("what causes cancer", k=100)
        ranked = rerank_hits(reranker, "what causes cancer", hits, k=20)
    """
    if not hits:
        return []
    if docs is None:
        lookup: Dict[str, Document] = {}
        for hit in hits[:k]:
            raw = _hit_raw(hit)
            if raw is None:
                raise UserError(f"hit {hit.docid!r} carries no stored document (dense hits do not): "
                                f"pass docs=<corpus dict or Lucene doc lookup>")
            lookup[hit.docid] = document_from_raw(hit.docid, raw)
        docs = lookup
    run = {"q": [(hit.docid, float(hit.score)) for hit in hits]}
    return reranker.rerank({"q": query}, run, docs, hits=k or len(hits), progress=False)["q"]
