"""BM25 -> RepLLaMA -> fusion -> RankLLaMA over a collection, in one command, with one results table.

Example::

    python -m pyserini_llama.pipeline                                   # beir-scifact test, packaged models
    python -m pyserini_llama.pipeline --collection beir-scifact --dense repllama --reranker rankllama \\
        --rerank-depth 100 --max-queries 0 --device cuda

Stages: BM25 (Pyserini Lucene) -> dense retrieval (RepLLaMA encoder, flat inner-product index) -> RRF and
Pyserini's weighted hybrid of the two -> RankLLaMA reranking of the fused run (of BM25 when there is no dense
stage). Each stage's run and index is kept in ``--work-dir``; a rerun reuses them (``--overwrite`` redoes
all). Every stage is evaluated on the same queries; a table (nDCG@10, R@100, MRR@10, time) is printed, and
``pipeline.json`` and a bar chart ``pipeline.png`` are written to the work dir.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .data.atomic import atomic_write
from .data.trec import Run, load_run, write_run
from .errors import UserError, run_cli

DEFAULT_DENSE = "repllama-smollm2"
DEFAULT_RERANKER = "rankllama-smollm2"
METRICS = ("nDCG@10", "R@100", "MRR@10")
# On a CPU the default run must take minutes: a 135M reranker scores ~1-2 pairs/s on 2 cores at 200 tokens,
# so it reranks a shallow pool of a query sample.
# On a CPU, encoding a whole corpus with an LLM takes hours: the dense stage then re-scores each sampled query's
# BM25 candidates instead (say so in the output), and reranking is kept to a few queries and documents.
CPU_DEFAULTS = dict(rerank_depth=10, max_queries=10, dense_candidates=10)
GPU_DEFAULTS = dict(rerank_depth=100, max_queries=0, dense_candidates=0)


@dataclass
class StageResult:
    name: str
    run: Run
    seconds: float
    cached: bool
    path: Path


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name or name).strip("-") or "model"


def cached_stage(name: str, path: Path, compute: Callable[[], Run], overwrite: bool) -> StageResult:
    """Reuse ``path`` (and the time it took, from ``path.json``) or compute the run and save both."""
    meta = path.with_name(path.name + ".json")
    if path.exists() and meta.exists() and not overwrite:
        return StageResult(name, load_run(path, allow_empty=True), json.loads(meta.read_text())["seconds"],
                           True, path)
    start = time.perf_counter()
    run = compute()
    seconds = time.perf_counter() - start
    write_run(run, path, tag=name)
    with atomic_write(meta) as f:
        f.write(json.dumps({"stage": name, "seconds": seconds}) + "\n")
    return StageResult(name, run, seconds, False, path)


def pick_checkpoint(requested: Optional[str], default: str, what: str) -> Optional[str]:
    """The checkpoint to use, or None (with the reason printed) when the stage is skipped."""
    from .models.checkpoint import PACKAGED_DIR

    if requested is not None:
        return None if requested.lower() == "none" else requested
    if (PACKAGED_DIR / default).is_dir():
        return default
    print(f"{what} stage skipped: the packaged checkpoint {default!r} is missing (not trained yet); "
          f"pass --{what} NAME_OR_PATH to use another checkpoint")
    return None


def bm25_stage(work: Path, corpus_path: Path, queries: Dict[str, str], k: int, overwrite: bool) -> StageResult:
    from .bm25 import bm25_search, build_lucene_index

    index = work / "lucene-index"

    def compute() -> Run:
        if overwrite or not index.exists():
            build_lucene_index(corpus_path, index, overwrite=True)
        return bm25_search(index, queries, k=k)

    return cached_stage("bm25", work / f"bm25.k{k}.trec", compute, overwrite)


def dense_stage(work: Path, checkpoint: str, corpus_path: Path, queries: Dict[str, str], k: int, device: str,
                overwrite: bool, prebuilt: Optional[Path] = None, candidates: Optional[Run] = None) -> StageResult:
    """Dense retrieval; the corpus is encoded into the work dir unless a ``prebuilt`` index is given.

    With ``candidates`` (the CPU default) only those documents are encoded and each query's candidates are
    re-scored by the dense model: the same scores as a full search, over a smaller candidate set.
    """
    from .dense import DenseSearcher, build_index
    from .encoders.repllama import RepLlamaEncoder

    if candidates is not None:
        depth = max(len(hits) for hits in candidates.values()) if candidates else 0

        def rescore() -> Run:
            from .rerank import load_corpus_subset

            encoder = RepLlamaEncoder.from_checkpoint(checkpoint, device=device)
            wanted = sorted({d for qid in queries for d, _ in candidates.get(qid, [])})
            docs = load_corpus_subset(corpus_path, set(wanted))
            vectors = dict(zip(wanted, encoder.encode_passages([docs[d] for d in wanted])))
            qids = list(queries)
            q_vectors = encoder.encode_queries([queries[q] for q in qids])
            run = {}
            for qid, qv in zip(qids, q_vectors):
                scored = [(d, float(qv @ vectors[d])) for d, _ in candidates.get(qid, [])]
                run[qid] = sorted(scored, key=lambda h: -h[1])
            return run

        name = f"dense.{slug(checkpoint)}.bm25-top{depth}.q{len(queries)}.trec"
        return cached_stage("dense", work / name, rescore, overwrite)

    index = prebuilt or work / f"dense-index.{slug(checkpoint)}"

    def compute() -> Run:
        encoder = RepLlamaEncoder.from_checkpoint(checkpoint, device=device)
        if prebuilt is None and (overwrite or not index.exists()):
            build_index(encoder, corpus_path, index, overwrite=True)
        return DenseSearcher(index, encoder, device).search(queries, k=k)

    return cached_stage("dense", work / f"dense.{slug(checkpoint)}.k{k}.trec", compute, overwrite)


def fusion_stages(work: Path, bm25: StageResult, dense: StageResult, k: int, rrf_k: int, alpha: float,
                  normalization: bool, overwrite: bool) -> List[StageResult]:
    from .fusion import hybrid_fusion, reciprocal_rank_fusion

    key = dense.path.stem
    rrf = cached_stage("rrf", work / f"rrf{rrf_k}.{key}.trec",
                       lambda: reciprocal_rank_fusion([bm25.run, dense.run], rrf_k=rrf_k, depth=k, k=k),
                       overwrite)
    norm = ".norm" if normalization else ""
    hybrid = cached_stage("hybrid", work / f"hybrid{alpha:g}{norm}.{key}.trec",
                          lambda: hybrid_fusion(dense.run, bm25.run, alpha=alpha, normalization=normalization,
                                                k=k), overwrite)
    return [rrf, hybrid]


def rerank_stage(work: Path, checkpoint: str, source: StageResult, queries: Dict[str, str], corpus_path: Path,
                 depth: int, device: str, batch_tokens: Optional[int], overwrite: bool) -> StageResult:
    from .rerank import load_corpus_subset
    from .rerankers.rankllama import RankLlamaReranker

    run = {qid: source.run.get(qid, []) for qid in queries}
    name = f"rerank.{slug(checkpoint)}.{source.path.stem}.d{depth}.q{len(queries)}.trec"

    def compute() -> Run:
        docs = load_corpus_subset(corpus_path, {d for hits in run.values() for d, _ in hits[:depth]})
        reranker = RankLlamaReranker.from_checkpoint(checkpoint, device=device, batch_tokens=batch_tokens)
        return reranker.rerank(queries, run, docs, hits=depth)

    return cached_stage(f"{source.name}+rankllama", work / name, compute, overwrite)


def evaluate_stages(stages: Sequence[StageResult], qrels, qids: Sequence[str]) -> Dict[str, Dict]:
    from .eval import evaluate

    judged = {q: qrels[q] for q in qids if q in qrels}
    table: Dict[str, Dict] = {}
    for stage in stages:
        run = {q: stage.run.get(q, []) for q in qids}
        table[stage.name] = dict(evaluate(run, judged, METRICS), seconds=stage.seconds, cached=stage.cached)
    return table


def format_stage_table(table: Dict[str, Dict]) -> str:
    from .eval import format_table

    shown = {name: dict(row, time=f"{row['seconds']:.1f}s" + ("*" if row["cached"] else ""))
             for name, row in table.items()}
    return format_table(shown, list(METRICS) + ["time"])


def save_chart(table: Dict[str, Dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    width = 0.8 / len(METRICS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(names) + 2), 4))
    for i, metric in enumerate(METRICS):
        xs = [j + (i - (len(METRICS) - 1) / 2) * width for j in range(len(names))]
        bars = ax.bar(xs, [table[n][metric] for n in names], width, label=metric)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylim(0, 1.2)  # headroom for the legend above bars that reach 1
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", ncol=len(METRICS), fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def describe_device(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} (no GPU found)" if device == "cpu" else device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyserini_llama.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="beir-scifact", help="collection name or BEIR folder")
    parser.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    parser.add_argument("--data-dir", help="where collections live (default: ../shared/ir when present)")
    parser.add_argument("--dense", help=f"RepLLaMA checkpoint, or 'none' (default: packaged {DEFAULT_DENSE})")
    parser.add_argument("--reranker", help=f"RankLLaMA checkpoint, or 'none' (default: packaged "
                                           f"{DEFAULT_RERANKER})")
    parser.add_argument("--dense-index", help="an existing dense index of the corpus made with --dense's "
                                              "checkpoint (skips encoding the corpus)")
    parser.add_argument("--rerank-input", default="auto", choices=["auto", "bm25", "dense", "rrf", "hybrid"],
                        help="run to rerank (auto: rrf when there is a dense stage, else bm25; fixed, not "
                             "chosen on the evaluation qrels)")
    parser.add_argument("--rerank-depth", type=int, help="documents reranked per query (default: 100 on GPU, "
                                                         "10 on CPU)")
    parser.add_argument("--max-queries", type=int, help="evaluate the first N queries of the split, 0 = all "
                                                        "(default: all on GPU, 20 on CPU when reranking)")
    parser.add_argument("--dense-candidates", type=int,
                        help="re-score only each query's BM25 top N with the dense model instead of searching the "
                             "whole corpus (default: 0 = full search on GPU, 10 on CPU); 0 forces full search")
    parser.add_argument("--hits", type=int, default=1000, help="first-stage depth (default 1000)")
    parser.add_argument("--rrf-k", type=int, default=60, help="RRF constant (default 60)")
    parser.add_argument("--hybrid-alpha", type=float, default=1.0,
                        help="hybrid: alpha * sparse + dense (default 1.0, with --hybrid-normalization)")
    parser.add_argument("--hybrid-normalization", action=argparse.BooleanOptionalAction, default=True,
                        help="min-max centre each run's scores before the hybrid sum (default: on)")
    parser.add_argument("--batch-tokens", type=int, help="reranker tokens per batch")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    parser.add_argument("--work-dir", help="runs, indexes, table and chart (default: runs/<collection>)")
    parser.add_argument("--overwrite", action="store_true", help="recompute every stage")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.collections import resolve_collection
    from .rerankers.rankllama import auto_device

    if args.dense_candidates is not None and args.dense_candidates < 0:
        raise UserError(f"--dense-candidates must be >= 0, got {args.dense_candidates}")
    for flag in ("hits", "rerank_depth", "rrf_k"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if args.max_queries is not None and args.max_queries < 0:
        raise UserError(f"--max-queries must be >= 0, got {args.max_queries}")
    device = auto_device() if args.device == "auto" else args.device
    defaults = GPU_DEFAULTS if device.startswith("cuda") else CPU_DEFAULTS
    print(f"device: {describe_device(device)}")
    dense_ckpt = pick_checkpoint(args.dense, DEFAULT_DENSE, "dense")
    rerank_ckpt = pick_checkpoint(args.reranker, DEFAULT_RERANKER, "reranker")
    depth = args.rerank_depth or defaults["rerank_depth"]
    # the query sample only bounds reranking time: without a reranker every query is evaluated
    candidates_depth = args.dense_candidates if args.dense_candidates is not None else \
        (0 if args.dense_index else defaults["dense_candidates"])
    # the query sample only bounds model time: with neither model every query is evaluated
    max_queries = args.max_queries if args.max_queries is not None else \
        defaults["max_queries"] if (rerank_ckpt or (dense_ckpt and candidates_depth)) else 0

    folder = resolve_collection(args.collection, args.data_dir)
    queries, qrels = folder.queries(args.split), folder.qrels(args.split)
    selected = dict(list(queries.items())[:max_queries]) if max_queries else queries
    work = Path(args.work_dir or Path("runs") / slug(str(args.collection)))
    work.mkdir(parents=True, exist_ok=True)
    print(f"collection: {folder.root} ({args.split}: {len(selected)} of {len(queries)} queries"
          f"{'' if len(selected) == len(queries) else ', --max-queries 0 for all'}); work dir: {work}")

    stages = [bm25_stage(work, folder.corpus_path, queries, args.hits, args.overwrite)]
    if dense_ckpt:
        prebuilt = Path(args.dense_index) if args.dense_index else None
        if prebuilt is not None and not prebuilt.is_dir():
            raise UserError(f"--dense-index {prebuilt}: no such index folder")
        candidates = None
        if candidates_depth:
            candidates = {q: hits[:candidates_depth] for q, hits in stages[0].run.items() if q in selected}
            print(f"dense stage re-scores the BM25 top {candidates_depth} of {len(selected)} queries"
                  f"{' (CPU default: a full-corpus search needs a GPU or --dense-index)' if not device.startswith('cuda') else ''}")
        stages.append(dense_stage(work, dense_ckpt, folder.corpus_path, selected if candidates else queries,
                                  args.hits, device, args.overwrite, prebuilt, candidates))
        stages += fusion_stages(work, stages[0], stages[1], args.hits, args.rrf_k, args.hybrid_alpha,
                                args.hybrid_normalization, args.overwrite)
    if rerank_ckpt:
        by_name = {s.name: s for s in stages}
        wanted = ("rrf" if dense_ckpt else "bm25") if args.rerank_input == "auto" else args.rerank_input
        if wanted not in by_name:
            raise UserError(f"--rerank-input {wanted}: no such stage (without a dense checkpoint only bm25 runs)")
        print(f"reranking the top {depth} of {wanted} for {len(selected)} queries with {rerank_ckpt}"
              f"{' (CPU defaults; see --rerank-depth, --max-queries)' if not device.startswith('cuda') else ''}")
        reranked = rerank_stage(work, rerank_ckpt, by_name[wanted], selected, folder.corpus_path, depth,
                                device, args.batch_tokens, args.overwrite)
        from .fusion import reciprocal_rank_fusion

        source = by_name[wanted]
        # The reranker as one more RRF voter with its input: the full pipeline the small-scale recipe picked on
        # held-out train queries (results/NOTES.md); both rows are printed, so nothing is chosen here.
        stages += [reranked, cached_stage(f"rrf[{reranked.name},{wanted}]",
                                          reranked.path.with_name(f"rrf{args.rrf_k}.{reranked.path.name}"),
                                          lambda: reciprocal_rank_fusion([reranked.run, source.run],
                                                                         rrf_k=args.rrf_k, depth=args.hits,
                                                                         k=args.hits), args.overwrite)]

    table = evaluate_stages(stages, qrels, list(selected))
    print()
    print(format_stage_table(table))
    if any(s.cached for s in stages):
        print("* reused from the work dir (time of the run that made it)")
    with atomic_write(work / "pipeline.json") as f:
        f.write(json.dumps({"collection": str(folder.root), "split": args.split, "device": device,
                            "queries": len(selected), "rerank_depth": depth, "dense": dense_ckpt,
                            "reranker": rerank_ckpt, "stages": table,
                            "runs": {s.name: str(s.path) for s in stages}}, indent=2) + "\n")
    save_chart(table, work / "pipeline.png",
               f"{Path(str(args.collection)).name} {args.split} ({len(selected)} queries, {device})")
    print(f"wrote {work / 'pipeline.json'} and {work / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
