"""FP8 fidelity on real weights: the packaged SmolLM2 RepLLaMA encoder and RankLLaMA reranker in FP8 vs bf16.

For each collection (a BEIR folder: corpus, queries, qrels of ``--split``): every document and test query is
encoded by the reference model (bf16 on a GPU) and by the FP8 one (the same model quantised in place, exactly
what ``--dtype fp8`` does at load: e4m3 matmuls with rowwise scales); reported are the per-vector cosine between the two (min and mean, documents and queries), and nDCG@10
and R@100 of exact search (in torch, no faiss) with each. The reranker then rescores the reference run's top
``--depth`` of every query in bf16 and in FP8: Kendall's tau-b between the two score lists of each query (mean
and min) and nDCG@10 of each reranked run. The budget: mean cosine >= 0.999, min >= 0.99, |nDCG@10 change|
<= 0.005 for the encoder and the reranker on every collection. Metrics are computed here (trec_eval's
definitions) so the script needs no ir_measures.

On a CPU (or with ``--emulate``) FP8 is the float32 emulation of the same maths against a float32 reference.

Example::

    # one H200, ~2 minutes; BASE is the SmolLM2-135M safetensors folder (python -m pyserini_llama.doctor shows it)
    python benchmarks/fp8_fidelity.py --base "$BASE" --collections ../shared/ir/beir-scifact ../shared/ir/cranfield \\
        --output fp8-fidelity.json
    # CPU smoke run on any small checkpoints and collection
    python benchmarks/fp8_fidelity.py --encoder ENC --reranker RR --collections toy --max-docs 50 --output /tmp/f.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import recorded_command, write_report  # noqa: E402

BUDGET = dict(mean_cosine=0.999, min_cosine=0.99, ndcg10_change=0.005)


# --- metrics (trec_eval's definitions) --------------------------------------------------------------------------

def ndcg_at(ranking: Sequence[str], judged: Dict[str, int], k: int = 10) -> float:
    """nDCG@k with gain = relevance grade and a log2(rank + 1) discount; the ideal from all judged documents."""
    gains = [max(judged.get(d, 0), 0) for d in ranking[:k]]
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
    best = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best > 0 else 0.0


def recall_at(ranking: Sequence[str], judged: Dict[str, int], k: int = 100) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mean_metric(run: Dict[str, List[str]], qrels: Dict[str, Dict[str, int]], fn, k: int) -> float:
    """Averaged over the queries with a relevant judgement (an unretrieved one counts zero)."""
    qids = [q for q, judged in qrels.items() if any(g > 0 for g in judged.values())]
    return float(np.mean([fn(run.get(q, []), qrels[q], k) for q in qids])) if qids else 0.0


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of two score lists over the same items (ties in either list handled as tau-b does)."""
    upper = np.triu_indices(len(x), 1)
    sx = np.sign(np.subtract.outer(x, x))[upper]
    sy = np.sign(np.subtract.outer(y, y))[upper]
    denominator = np.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float((sx * sy).sum() / denominator) if denominator else 1.0


def cosine_stats(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return dict(min=round(float(cos.min()), 6), mean=round(float(cos.mean()), 6), n=int(len(cos)))


# --- models ------------------------------------------------------------------------------------------------------

def checkpoint_config(name: str, base: Optional[str]):
    """The checkpoint's config, its adapter pointed at ``base`` when given (the base model's folder)."""
    from pyserini_llama.models.load import resolve_checkpoint

    _, config = resolve_checkpoint(name)
    if base and config is not None:
        config = replace(config, base_model=str(Path(base).resolve()))
    return config


def load_models(args, device: str, emulate: bool):
    """The reference encoder and reranker (bf16 on a GPU, float32 when emulating), the packaged adapters
    merged into ``--base``; :func:`to_fp8` later quantises them in place, as ``--dtype fp8`` does at load."""
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.load import load_checkpoint
    from pyserini_llama.models.presets import rankllama_v1_config
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker

    dtype = "float32" if emulate else "bfloat16"
    encoder = RepLlamaEncoder.from_checkpoint(args.encoder, device=device, dtype=dtype,
                                              config=checkpoint_config(args.encoder, args.base),
                                              max_tokens_per_batch=args.batch_tokens)
    loaded = load_checkpoint(args.reranker, task="sequence-classification", device=device, dtype=dtype,
                             config=checkpoint_config(args.reranker, args.base) or rankllama_v1_config())
    reranker = RankLlamaReranker(loaded.model, loaded.tokenizer, loaded.config, device, args.batch_tokens)
    return encoder, reranker


def to_fp8(encoder, reranker, emulate: bool) -> None:
    from pyserini_llama.models.fp8 import quantize_model

    for model in (encoder.model, reranker.model):
        quantize_model(model, emulate=emulate)


# --- one collection ----------------------------------------------------------------------------------------------

def load_collection(folder: Path, split: str, max_docs: Optional[int], max_queries: Optional[int]):
    from pyserini_llama.data.beir import load_corpus, load_qrels, load_queries

    corpus = load_corpus(folder / "corpus.jsonl")
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    queries = {q: t for q, t in load_queries(folder / "queries.jsonl").items() if q in qrels}
    if max_queries:
        queries = dict(list(queries.items())[:max_queries])
    if max_docs:  # smoke runs: the judged documents of the kept queries first, then the corpus in order
        judged = [d for q in queries for d in qrels[q] if d in corpus]
        keep = list(dict.fromkeys(judged + list(corpus)))[:max_docs]
        corpus = {d: corpus[d] for d in keep}
    return corpus, queries, {q: qrels[q] for q in queries}


def search(q: np.ndarray, d: np.ndarray, docids: List[str], qids: List[str], depth: int,
           device: str) -> Dict[str, List[str]]:
    from pyserini_llama.dense.exact import ResidentChunks, exact_search

    _, rows = exact_search(q, [ResidentChunks(d, device)], depth)
    return {qid: [docids[i] for i in row] for qid, row in zip(qids, rows)}


class Collection:
    """One collection's data and what each model variant made of it."""

    def __init__(self, folder: Path, args):
        self.name, self.split = folder.name, args.split
        self.corpus, self.queries, self.qrels = load_collection(folder, args.split, args.max_docs, args.max_queries)
        self.docids, self.qids = list(self.corpus), list(self.queries)
        self.depth = min(args.depth, len(self.docids))
        self.vectors: Dict[str, tuple] = {}
        self.runs: Dict[str, Dict[str, List[str]]] = {}
        self.scored: Dict[str, dict] = {}
        print(f"{self.name}: {len(self.docids)} documents, {len(self.qids)} {args.split} queries", flush=True)

    def encode(self, variant: str, encoder, device: str) -> None:
        start = time.perf_counter()
        q = encoder.encode_queries([self.queries[q] for q in self.qids])
        d = encoder.encode_passages(list(self.corpus.values()))
        self.vectors[variant] = (q, d)
        top = min(max(self.depth, 100), len(self.docids))  # R@100 needs the top 100
        self.runs[variant] = search(q, d, self.docids, self.qids, top, device)
        print(f"  {self.name}: encoded and searched ({variant}) in {time.perf_counter() - start:.1f} s", flush=True)

    def rerank(self, variant: str, reranker) -> None:
        """Rescore the reference run's top ``depth`` (the same candidates for both variants)."""
        start = time.perf_counter()
        candidates = {q: [(d, 0.0) for d in self.runs["reference"][q][:self.depth]] for q in self.qids}
        self.scored[variant] = reranker.rerank(self.queries, candidates, self.corpus, hits=self.depth,
                                               progress=False)
        print(f"  {self.name}: reranked ({variant}) in {time.perf_counter() - start:.1f} s", flush=True)

    def report(self) -> dict:
        (rq, rd), (fq, fd) = self.vectors["reference"], self.vectors["fp8"]
        encoder = dict(cosine_documents=cosine_stats(rd, fd), cosine_queries=cosine_stats(rq, fq),
                       cosine_all=cosine_stats(np.concatenate([rd, rq]), np.concatenate([fd, fq])))
        for variant in ("reference", "fp8"):
            encoder[f"ndcg10_{variant}"] = round(mean_metric(self.runs[variant], self.qrels, ndcg_at, 10), 5)
            encoder[f"recall100_{variant}"] = round(mean_metric(self.runs[variant], self.qrels, recall_at, 100), 5)
        taus = []
        for q in self.qids:
            ref, new = dict(self.scored["reference"][q]), dict(self.scored["fp8"][q])
            order = self.runs["reference"][q][:self.depth]
            taus.append(kendall_tau_b(np.array([ref[d] for d in order]), np.array([new[d] for d in order])))
        reranker = dict(kendall_tau_mean=round(float(np.mean(taus)), 5), kendall_tau_min=round(float(min(taus)), 5),
                        depth=self.depth)
        for variant in ("reference", "fp8"):
            ranked = {q: [d for d, _ in hits] for q, hits in self.scored[variant].items()}
            reranker[f"ndcg10_{variant}"] = round(mean_metric(ranked, self.qrels, ndcg_at, 10), 5)
        cos = encoder["cosine_all"]
        encoder["within_budget"] = bool(
            cos["mean"] >= BUDGET["mean_cosine"] and cos["min"] >= BUDGET["min_cosine"]
            and abs(encoder["ndcg10_fp8"] - encoder["ndcg10_reference"]) <= BUDGET["ndcg10_change"])
        reranker["within_budget"] = bool(abs(reranker["ndcg10_fp8"] - reranker["ndcg10_reference"])
                                         <= BUDGET["ndcg10_change"])
        return dict(collection=self.name, split=self.split, documents=len(self.docids), queries=len(self.qids),
                    encoder=encoder, reranker=reranker)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base model folder of the packaged adapters (SmolLM2-135M safetensors); "
                                       "default: the cached conversion")
    parser.add_argument("--encoder", default="repllama-smollm2")
    parser.add_argument("--reranker", default="rankllama-smollm2")
    parser.add_argument("--collections", nargs="+", required=True, help="BEIR folders (corpus, queries, qrels)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=100, help="reranked candidates per query (default 100)")
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per batch (default: the library's)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--emulate", action="store_true", help="FP8 emulated in float32 (the default on a CPU)")
    parser.add_argument("--max-docs", type=int, help="smoke runs: at most N documents per collection")
    parser.add_argument("--max-queries", type=int, help="smoke runs: at most N queries per collection")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    emulate = args.emulate or not device.startswith("cuda")
    start = time.perf_counter()
    collections = [Collection(Path(c), args) for c in args.collections]
    encoder, reranker = load_models(args, device, emulate)
    for variant in ("reference", "fp8"):
        if variant == "fp8":
            to_fp8(encoder, reranker, emulate)
        for c in collections:
            c.encode(variant, encoder, device)
            c.rerank(variant, reranker)
    results = [c.report() for c in collections]
    report = dict(command=recorded_command("fp8_fidelity.py", argv),
                  device=torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
                  torch=torch.__version__, encoder=args.encoder, reranker=args.reranker,
                  reference="float32" if emulate else "bfloat16",
                  fp8="float32 emulation of the e4m3 maths" if emulate else "e4m3 torch._scaled_mm (rowwise)",
                  budget=BUDGET, within_budget=all(r["encoder"]["within_budget"] and r["reranker"]["within_budget"]
                                                   for r in results),
                  seconds=round(time.perf_counter() - start, 1), results=results)
    write_report(args.output, report)
    for r in results:
        e, k = r["encoder"], r["reranker"]
        print(f"{r['collection']}: cosine mean {e['cosine_all']['mean']:.5f} min {e['cosine_all']['min']:.5f}; "
              f"nDCG@10 {e['ndcg10_reference']:.4f} -> {e['ndcg10_fp8']:.4f}, R@100 {e['recall100_reference']:.4f} "
              f"-> {e['recall100_fp8']:.4f}; rerank nDCG@10 {k['ndcg10_reference']:.4f} -> {k['ndcg10_fp8']:.4f}, "
              f"tau mean {k['kendall_tau_mean']:.4f} min {k['kendall_tau_min']:.4f}")
    print(f"within budget: {report['within_budget']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
