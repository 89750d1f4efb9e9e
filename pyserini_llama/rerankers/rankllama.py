"""RankLLaMA: a pointwise LLM reranker (sequence classification with one output, score = logit).

The input is RankLLaMA v1's, token for token: the tokenizer's *pair* encoding of ``query: {q}`` and
``document: {title} {text}``, which for LLaMA-2 puts a BOS before each part, and no EOS (the reference dropped
it because it overflowed in fp16). As in the reference code that produced the published checkpoints
(tevatron ``examples/rankllama/data.py``), the query part is cut to ``query_max_length`` tokens and the
document part to ``passage_max_length - 3`` tokens, both counted without special tokens; truncation is from
the right. The score head reads the hidden state of the last non-pad token (right padding).

This module needs only torch and transformers (no Pyserini, no Java), so it runs on a GPU machine without them.

Example::

    from pyserini_llama.rerankers import RankLlamaReranker
    reranker = RankLlamaReranker.from_checkpoint("rankllama", device="cuda")
    scores = reranker.score("what is a lobster roll", [("", "A lobster roll is a sandwich ..."), ...])
    reranked = reranker.rerank(queries, first_stage_run, corpus, hits=100)
"""
from __future__ import annotations

import json
import logging
from typing import Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from ..data.beir import Document, parse_document
from ..data.trec import Run
from ..encoders.batching import plan_batches
from ..errors import UserError
from ..models.checkpoint import CheckpointConfig

log = logging.getLogger(__name__)

# tevatron's v1 RankLLaMA preprocessing keeps passage_max_length - 3 document tokens (room for special tokens)
PASSAGE_SPECIAL_RESERVE = 3
DEFAULT_BATCH_TOKENS = {"cuda": 32768, "cpu": 4096}


class DocLookup(Protocol):
    """Anything that maps a docid to a :class:`Document` and raises ``KeyError`` for unknown ids."""

    def __getitem__(self, docid: str) -> Document: ...


def default_config() -> CheckpointConfig:
    """RankLLaMA v1 settings, used for checkpoints that carry no ``pyserini_llama.json``."""
    return CheckpointConfig(kind="rankllama", query_prefix="query: ", passage_prefix="document: ",
                            query_max_length=32, passage_max_length=164, append_eos=False,
                            normalize=False, dtype="bfloat16")


def format_pair(query: str, title: str, text: str, config: CheckpointConfig) -> Tuple[str, str]:
    """The two texts of a (query, document) pair: ``("query: {q}", "document: {title} {text}")`` for v1."""
    return (config.query_prefix + query + config.query_suffix,
            config.passage_prefix + f"{title} {text}".strip() + config.passage_suffix)


def pair_template(tokenizer) -> Tuple[List[int], List[int], List[int]]:
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
        raise UserError(f"maximum length must be positive, got {max_length}")
    from ..encoders.repllama import cut_long_texts

    ids = tokenizer(cut_long_texts(tokenizer, texts, max_length), add_special_tokens=False)["input_ids"]
    return [list(x[:max_length]) for x in ids]


def join_pair(template: Tuple[List[int], List[int], List[int]], query_ids: List[int],
              passage_ids: List[int], eos: Optional[int] = None) -> List[int]:
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


def collate_pairs(token_ids: Sequence[Sequence[int]], pad_token_id: int,
                  pad_to_multiple_of: Optional[int] = None) -> Dict[str, "torch.Tensor"]:  # noqa: F821
    """Right-pad pairs into ``input_ids`` and ``attention_mask`` tensors (the head reads the last real token)."""
    import torch

    width = max(len(x) for x in token_ids)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(token_ids), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def inference_dtype(requested: Optional[str], device: str) -> str:
    """bf16 on GPUs that have it: the published float16 setting overflows LLaMA's activations in pure fp16
    (the reference trained with fp16 *autocast*), and bf16 costs the same on the GPU. fp32 on CPU."""
    if requested not in (None, "auto"):
        return requested
    if str(device).startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


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
        self.compile = compile  # torch.compile on first use (models.load.compiled): faster on GPUs
        self.tokenizer = tokenizer
        self.config = config or default_config()
        self.device = str(device)
        self.query_max_length = self.config.query_max_length
        self.passage_max_length = self.config.passage_max_length
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS["cuda" if self.device.startswith("cuda")
                                                                 else "cpu"]
        self.pad_token_id = model.config.pad_token_id
        if self.pad_token_id is None:
            raise UserError("the model config has no pad_token_id; the score head cannot find the last token")
        if self.config.append_eos and tokenizer.eos_token_id == self.pad_token_id:
            raise UserError("append_eos is set but EOS is also the pad token: the score head would skip it; "
                            "set a distinct pad token or append_eos=false")
        self.template = pair_template(tokenizer)

    @classmethod
    def from_checkpoint(cls, name_or_path: str, device: str = "cpu", dtype: Optional[str] = None,
                        trust_remote_code: bool = False, batch_tokens: Optional[int] = None,
                        compile: bool = False) -> "RankLlamaReranker":
        """Load a checkpoint by name (``rankllama``, ``rankllama-smollm2``, ...) or folder; LoRA is merged."""
        from ..models.checkpoint import resolve_checkpoint
        from ..models.load import load_checkpoint

        device = auto_device() if device == "auto" else device
        _, found = resolve_checkpoint(name_or_path)
        config = found or default_config()
        if config.kind != "rankllama":
            raise UserError(f"{name_or_path}: a {config.kind!r} checkpoint, not a RankLLaMA reranker")
        loaded = load_checkpoint(name_or_path, task="sequence-classification", device=device,
                                 dtype=inference_dtype(dtype, device), trust_remote_code=trust_remote_code,
                                 config=config)
        return cls(loaded.model, loaded.tokenizer, loaded.config, device, batch_tokens, compile)

    # -- scoring -------------------------------------------------------------------------------------------

    def score_batch(self, batch: Dict[str, "torch.Tensor"]) -> "torch.Tensor":  # noqa: F821
        """Logits of a collated batch, shape ``[B]``, in float32; differentiable (the trainer calls this)."""
        from ..models.load import compiled

        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        model = compiled(self.model) if self.compile else self.model
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()

    def collate(self, token_ids: Sequence[Sequence[int]]) -> Dict[str, "torch.Tensor"]:  # noqa: F821
        return collate_pairs(token_ids, self.pad_token_id, 8 if self.device.startswith("cuda") else None)

    def encode_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> List[List[int]]:
        """Token ids of formatted pairs, with this reranker's maximum lengths."""
        return tokenize_pairs(self.tokenizer, list(queries), list(passages), self.query_max_length,
                              self.passage_max_length, self.config.append_eos)

    def score_token_ids(self, token_ids: Sequence[List[int]], progress: bool = False) -> np.ndarray:
        """Scores of tokenized pairs in input order, computed longest first under the token budget."""
        import torch
        from tqdm.auto import tqdm

        if not token_ids:
            return np.zeros(0, dtype=np.float32)
        multiple = 8 if self.device.startswith("cuda") else 1
        batches = plan_batches([len(x) for x in token_ids], self.batch_tokens, multiple_of=multiple)
        scores = np.empty(len(token_ids), dtype=np.float32)
        with torch.inference_mode(), tqdm(total=len(token_ids), desc="rerank", unit="pair",
                                          disable=not progress, mininterval=2.0) as bar:
            for batch in batches:
                logits = self.score_batch(self.collate([token_ids[i] for i in batch]))
                if not torch.isfinite(logits).all():
                    raise UserError(f"non-finite reranker scores in {self.model.dtype}; rerun with "
                                    f"--dtype bfloat16 or float32")
                scores[batch] = logits.cpu().numpy()
                bar.update(len(batch))
        return scores

    def score(self, query: str, docs: Sequence[Tuple[str, str]]) -> np.ndarray:
        """Scores of ``(title, text)`` documents for one query, in input order."""
        pairs = [format_pair(query, title, text, self.config) for title, text in docs]
        return self.score_token_ids(self.encode_pairs([q for q, _ in pairs], [p for _, p in pairs]))

    # -- reranking -----------------------------------------------------------------------------------------

    def rerank(self, queries: Mapping[str, str], run: Run, corpus: Union[Mapping[str, Document], DocLookup],
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
                                f"is it the right corpus? pass --skip-missing to keep them unscored")
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


def check_rerank_inputs(queries: Mapping[str, str], run: Run, hits: int) -> None:
    if hits <= 0:
        raise UserError(f"--hits must be positive, got {hits}")
    if not run or not any(run.values()):
        raise UserError("the run to rerank is empty")
    lacking = sorted(set(run) - set(queries))
    if lacking:
        raise UserError(f"{len(lacking)} queries of the run are not in the topics (e.g. "
                        f"{', '.join(map(repr, lacking[:5]))}); are the run and topics from the same set?")


def fetch_documents(corpus: Union[Mapping[str, Document], DocLookup], docids) -> Tuple[Dict[str, Document],
                                                                                       List[str]]:
    docs: Dict[str, Document] = {}
    missing: List[str] = []
    for docid in sorted(docids):
        try:
            docs[docid] = corpus[docid]
        except KeyError:
            missing.append(docid)
    return docs, missing


def merge_reranked(hits: List[Tuple[str, float]], scores: Mapping[Tuple[str, str], float],
                   qid: str) -> List[Tuple[str, float]]:
    """Scored hits best first, then the unscored ones in their first-stage order with lower scores."""
    scored = [(d, scores[qid, d]) for d, _ in hits if (qid, d) in scores]
    scored.sort(key=lambda h: -h[1])  # stable: ties keep their first-stage order
    floor = scored[-1][1] if scored else 0.0
    rest = [(d, floor - i - 1.0) for i, (d, _) in enumerate(h for h in hits if (qid, h[0]) not in scores)]
    return scored + rest


def document_from_raw(docid: str, raw: str) -> Document:
    """A document from a Lucene ``raw`` field: JsonCollection/BEIR JSON, or plain text."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        obj = None
    if isinstance(obj, dict) and ("text" in obj or "contents" in obj):
        return parse_document({**obj, "id": docid, "_id": docid}, f"document {docid}", 1)
    return Document(docid, "", raw or "")


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
