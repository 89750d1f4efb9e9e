"""BM25 -> RepLLaMA -> fusion -> RankLLaMA over a collection, in one command, with one results table.

Example::

    python -m pyserini_llama.pipeline                                   # beir-scifact test, packaged models
    python -m pyserini_llama.pipeline --collection beir-scifact --dense repllama --reranker rankllama \
        --rerank-depth 100 --max-queries 0 --device cuda

Stages: BM25 (Pyserini Lucene) -> dense retrieval (RepLLaMA encoder, exact inner-product search) -> RRF and
Pyserini's weighted hybrid of the two -> RankLLaMA reranking of the fused run (of BM25 when there is no dense
stage), and the reranked run fused with its input. Each stage's run and index is kept in ``--work-dir`` and
reused only when everything it depends on is unchanged (``--overwrite`` recomputes all). Every stage is
evaluated on the same queries; a table (nDCG@10, R@100, MRR@10, time) is printed, and ``pipeline.json`` and a
bar chart ``pipeline.png`` are written to the work dir.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

from . import cli
from .errors import UserError

DEFAULT_DENSE = "repllama-smollm2"
DEFAULT_RERANKER = "rankllama-smollm2"
# On a CPU, encoding a whole corpus with an LLM takes long and a reranker scores a few pairs a second: the CPU
# defaults re-score each sampled query's BM25 candidates with the dense model and rerank a shallow pool.
CPU_DEFAULTS = dict(rerank_depth=10, max_queries=10, dense_candidates=10)
GPU_DEFAULTS = dict(rerank_depth=100, max_queries=0, dense_candidates=0)


def build_parser():
    parser = cli.parser("python -m pyserini_llama.pipeline", __doc__)
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
    parser.add_argument("--rerank-depth", type=cli.positive_int,
                        help="documents reranked per query (default: 100 on GPU, 10 on CPU)")
    parser.add_argument("--max-queries", type=cli.non_negative_int,
                        help="evaluate the first N queries of the split, 0 = all (default: all on GPU, 10 on CPU "
                             "when a model runs)")
    parser.add_argument("--dense-candidates", type=cli.non_negative_int,
                        help="re-score only each query's BM25 top N with the dense model instead of searching the "
                             "whole corpus (default: 0 = full search on GPU, 10 on CPU)")
    parser.add_argument("--hits", type=cli.positive_int, default=1000, help="first-stage depth (default 1000)")
    parser.add_argument("--passage-length", type=cli.int_at_least(2),
                        help="passage tokens when encoding the corpus (default: the checkpoint's)")
    parser.add_argument("--rrf-k", type=cli.positive_int, default=60, help="RRF constant (default 60)")
    parser.add_argument("--hybrid-alpha", type=cli.finite_float, default=1.0,
                        help="hybrid: alpha * sparse + dense (default 1.0, with --hybrid-normalization)")
    parser.add_argument("--hybrid-normalization", action=argparse.BooleanOptionalAction, default=True,
                        help="min-max centre each run's scores before the hybrid sum (default: on)")
    parser.add_argument("--batch-tokens", type=cli.positive_int, help="reranker tokens per batch")
    cli.add_device(parser, dtype=False)
    parser.add_argument("--work-dir", help="runs, indexes, table and chart (default: runs/<collection>)")
    cli.add_overwrite(parser)
    cli.add_verbose(parser)
    return parser


def pick_checkpoint(requested: Optional[str], default: str, what: str) -> Optional[str]:
    """The checkpoint to use, or None (with the reason printed) when the stage is skipped."""
    from .models.presets import PACKAGED_DIR

    if requested is not None:
        return None if requested.lower() == "none" else requested
    if (PACKAGED_DIR / default).is_dir():
        return default
    print(f"{what} stage skipped: the packaged checkpoint {default!r} is missing; pass --{what} NAME_OR_PATH")
    return None


def format_stage_table(table: Dict[str, Dict]) -> str:
    from .eval import format_table
    from .stages import METRICS

    shown = {name: dict(row, time=f"{row['seconds']:.1f}s" + ("*" if row["cached"] else ""))
             for name, row in table.items()}
    return format_table(shown, list(METRICS) + ["time"])


def save_chart(table: Dict[str, Dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.atomic import atomic_write
    from .stages import METRICS

    names = list(table)
    width = 0.8 / len(METRICS)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(names) + 2), 4.5))
    for i, metric in enumerate(METRICS):
        xs = [j + (i - (len(METRICS) - 1) / 2) * width for j in range(len(names))]
        bars = ax.bar(xs, [table[n][metric] for n in names], width, label=metric)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(").replace(" top-", "\ntop-") for n in names],
                  fontsize=8)
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
    return "cpu (no GPU found)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import atomic_write
    from .data.beir import validate_corpus
    from .data.collections import resolve_collection
    from .runtime import on_gpu, resolve_device
    from .stages import (StageCache, bm25_stage, dense_stage, evaluate_stages, hybrid_stage, rerank_stage,
                         rrf_stage, slug)

    device = resolve_device(args.device)
    defaults = GPU_DEFAULTS if on_gpu(device) else CPU_DEFAULTS
    print(f"device: {describe_device(device)}")
    dense_ckpt = pick_checkpoint(args.dense, DEFAULT_DENSE, "dense")
    rerank_ckpt = pick_checkpoint(args.reranker, DEFAULT_RERANKER, "reranker")
    depth = args.rerank_depth or defaults["rerank_depth"]
    candidates_depth = args.dense_candidates if args.dense_candidates is not None else \
        (0 if args.dense_index else defaults["dense_candidates"])
    # the query sample only bounds model time: with neither model every query is evaluated
    max_queries = args.max_queries if args.max_queries is not None else \
        defaults["max_queries"] if (rerank_ckpt or (dense_ckpt and candidates_depth)) else 0
    prebuilt = Path(args.dense_index) if args.dense_index else None
    if prebuilt is not None and not prebuilt.is_dir():
        raise UserError(f"--dense-index {prebuilt}: no such index folder")

    folder = resolve_collection(args.collection, args.data_dir)
    queries, qrels = folder.queries(args.split), folder.qrels(args.split)
    validate_corpus(folder.corpus_path)  # a bad line is found now, not after the first stages ran
    selected = dict(list(queries.items())[:max_queries]) if max_queries else queries
    cache = StageCache(Path(args.work_dir or Path("runs") / slug(folder.root.name)), args.overwrite)
    corpus = folder.corpus_path
    print(f"collection: {folder.root} ({args.split}: {len(selected)} of {len(queries)} queries"
          f"{'' if len(selected) == len(queries) else ', the first ones; --max-queries 0 for all'}); "
          f"work dir: {cache.work}")

    stages = [bm25_stage(cache, corpus, queries, args.hits)]
    by_kind = {"bm25": stages[0]}
    if dense_ckpt:
        candidates = None
        if candidates_depth:
            candidates = {q: hits[:candidates_depth] for q, hits in stages[0].run.items() if q in selected}
            print(f"dense stage re-scores the BM25 top {candidates_depth} of {len(selected)} queries (its R@100 "
                  f"is BM25's recall at {candidates_depth}; --dense-candidates 0 searches the whole corpus)")
        dense = dense_stage(cache, dense_ckpt, corpus, selected if candidates else queries, args.hits, device,
                            prebuilt, candidates, args.passage_length,
                            name=f"RepLLaMA (re-scores BM25 top-{candidates_depth})" if candidates else "RepLLaMA")
        rrf = rrf_stage(cache, [stages[0], dense], args.hits, args.rrf_k, name="BM25+RepLLaMA (RRF)")
        hybrid = hybrid_stage(cache, dense, stages[0], args.hybrid_alpha, args.hybrid_normalization, args.hits,
                              name="BM25+RepLLaMA (hybrid)")
        stages += [dense, rrf, hybrid]
        by_kind.update(dense=dense, rrf=rrf, hybrid=hybrid)
    if rerank_ckpt:
        wanted = ("rrf" if dense_ckpt else "bm25") if args.rerank_input == "auto" else args.rerank_input
        if wanted not in by_kind:
            raise UserError(f"--rerank-input {wanted}: no such stage (without a dense checkpoint only bm25 runs)")
        source = by_kind[wanted]
        print(f"reranking the top {depth} of {source.name} for {len(selected)} queries with {rerank_ckpt}")
        reranked = rerank_stage(cache, rerank_ckpt, source, selected, corpus, depth, device, args.batch_tokens)
        # The reranker as one more RRF voter with its input: both rows are printed, so nothing is chosen here.
        stages += [reranked, rrf_stage(cache, [reranked, source], args.hits, args.rrf_k,
                                       name="RankLLaMA+its input (RRF)")]

    table = evaluate_stages(stages, qrels, list(selected))
    print()
    print(format_stage_table(table))
    if any(s.cached for s in stages):
        print("* reused from the work dir (time of the run that made it)")
    with atomic_write(cache.work / "pipeline.json") as f:
        f.write(json.dumps({"collection": str(folder.root), "split": args.split, "device": device,
                            "queries": len(selected), "rerank_depth": depth, "dense": dense_ckpt,
                            "reranker": rerank_ckpt, "stages": table,
                            "runs": {s.name: str(s.path) for s in stages}}, indent=2) + "\n")
    save_chart(table, cache.work / "pipeline.png",
               f"{folder.root.name} {args.split} ({len(selected)} queries, {device})")
    print(f"wrote {cache.work / 'pipeline.json'} and {cache.work / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
