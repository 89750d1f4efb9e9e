"""BM25 -> RepLLaMA -> fusion -> RankLLaMA over a collection, in one command, with one results table.

Example::

    python -m pyserini_llama.pipeline              # packaged models; GPU: beir-scifact, CPU: cranfield (onnxruntime)
    python -m pyserini_llama.pipeline --collection beir-scifact --dense repllama --reranker rankllama \
        --rerank-depth 100 --device cuda

Every query of the split is evaluated and the dense stage searches the whole corpus. On a GPU the defaults are
BEIR SciFact (5,183 documents, 300 test queries), the torch models and a top-100 reranking. On a CPU they are
Cranfield (1,400 documents, 225 queries), the models on onnxruntime (exported once and cached, int8 where it
was measured to stay within 0.01 nDCG@10 of float32) and a shallower reranking, so that the whole pipeline
runs in about ten minutes on two cores (``benchmarks/onnx_cpu.py``).

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
# The CPU defaults keep the whole pipeline (every query, full dense search) within about ten minutes on two
# cores with the models on onnxruntime: the collection and the depth were chosen by timing it there
# (benchmarks/onnx_cpu.py, "demo" section).
CPU_DEFAULTS = dict(collection="cranfield", rerank_depth=10)
GPU_DEFAULTS = dict(collection="beir-scifact", rerank_depth=100)


def build_parser():
    parser = cli.parser("python -m pyserini_llama.pipeline", __doc__)
    parser.add_argument("--collection", help="collection name or BEIR folder (default: beir-scifact on a GPU, "
                                             "cranfield on a CPU)")
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
                        help=f"documents reranked per query (default: {GPU_DEFAULTS['rerank_depth']} on GPU, "
                             f"{CPU_DEFAULTS['rerank_depth']} on CPU)")
    parser.add_argument("--max-queries", type=cli.non_negative_int, default=0,
                        help="evaluate only the first N queries of the split (default 0: all)")
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
    cli.add_backend(parser, default="auto")
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


def describe_backend(backend: str, precision: Optional[str]) -> str:
    if backend != "onnx":
        return "torch"
    return f"onnxruntime ({precision or 'each model at its measured CPU precision'})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import atomic_write
    from .data.beir import validate_corpus
    from .data.collections import resolve_collection
    from .onnxrt import resolve_backend
    from .runtime import on_gpu, resolve_device
    from .stages import (StageCache, bm25_stage, dense_stage, evaluate_stages, hybrid_stage, rerank_stage,
                         rrf_stage, slug)

    device = resolve_device(args.device)
    defaults = GPU_DEFAULTS if on_gpu(device) else CPU_DEFAULTS
    backend = resolve_backend(args.backend, device)
    print(f"device: {describe_device(device)}; models run on {describe_backend(backend, args.precision)}")
    dense_ckpt = pick_checkpoint(args.dense, DEFAULT_DENSE, "dense")
    rerank_ckpt = pick_checkpoint(args.reranker, DEFAULT_RERANKER, "reranker")
    depth = args.rerank_depth or defaults["rerank_depth"]
    prebuilt = Path(args.dense_index) if args.dense_index else None
    if prebuilt is not None and not prebuilt.is_dir():
        raise UserError(f"--dense-index {prebuilt}: no such index folder")

    folder = resolve_collection(args.collection or defaults["collection"], args.data_dir)
    queries, qrels = folder.queries(args.split), folder.qrels(args.split)
    validate_corpus(folder.corpus_path)  # a bad line is found now, not after the first stages ran
    selected = dict(list(queries.items())[:args.max_queries]) if args.max_queries else queries
    cache = StageCache(Path(args.work_dir or Path("runs") / slug(folder.root.name)), args.overwrite)
    corpus = folder.corpus_path
    chosen = "" if args.collection else f" (the {'GPU' if on_gpu(device) else 'CPU'} default; --collection to change)"
    print(f"collection: {folder.root}{chosen}: {args.split} split, {len(selected)} of {len(queries)} queries"
          f"{'' if len(selected) == len(queries) else ' (the first ones; --max-queries 0 for all)'}; "
          f"work dir: {cache.work}")

    stages = [bm25_stage(cache, corpus, queries, args.hits)]
    by_kind = {"bm25": stages[0]}
    if dense_ckpt:
        print(f"dense: {dense_ckpt}, every document of the corpus encoded"
              f"{' (or reused from the work dir)' if prebuilt is None else f', index {prebuilt}'}; exact search")
        dense = dense_stage(cache, dense_ckpt, corpus, queries, args.hits, device, prebuilt,
                            passage_max_length=args.passage_length,
                            backend=backend, precision=args.precision)
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
        print(f"reranking the top {depth} of {source.name} for {len(selected)} queries with {rerank_ckpt}"
              f"{'' if args.rerank_depth else ' (--rerank-depth to change)'}")
        reranked = rerank_stage(cache, rerank_ckpt, source, selected, corpus, depth, device, args.batch_tokens,
                                backend=backend, precision=args.precision)
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
                            "backend": backend, "precision": args.precision,
                            "reranker": rerank_ckpt, "stages": table,
                            "runs": {s.name: str(s.path) for s in stages}}, indent=2) + "\n")
    save_chart(table, cache.work / "pipeline.png",
               f"{folder.root.name} {args.split} ({len(selected)} queries, {device})")
    print(f"wrote {cache.work / 'pipeline.json'} and {cache.work / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
