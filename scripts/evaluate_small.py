"""Evaluate the small-scale checkpoints with the pipeline's own stages: BM25, dense, fusion, reranking.

For each collection (``NAME`` or ``NAME:SPLIT``, a folder under --data-dir): BM25 (a run file computed beforehand,
``<collection>[.<split>].bm25.trec[.gz]`` under --bm25-runs, for machines without Java; else Pyserini's BM25),
every dense checkpoint (the corpus encoded at --passage-length, exact search), BM25 + the first dense model fused
by reciprocal rank fusion (k 60, nothing to tune), every reranker over that fusion's top --rerank-depth, and that
reranking fused once more with its input (the reranker as a third voter). Every stage is a function of
:mod:`pyserini_llama.stages`, cached in --runs by everything that determines it; the JSON has
``{collection: {system: {metric: value}}}`` plus ``_meta`` (hardware, command, seconds per stage).
``beir-scifact-dev:train-dev`` (a folder from ``scripts/dev_split.py``) evaluates on held-out training queries.

    python scripts/evaluate_small.py --data-dir ../shared/ir --collections beir-scifact cranfield \\
        --bm25-runs runs/small --dense repllama-smollm2=checkpoints/small/repllama-smollm2 \\
        --rerankers rankllama-smollm2=checkpoints/small/rankllama-smollm2 --output results/raw/evaluate_small.json
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama import cli, stages  # noqa: E402
from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.data.beir import BeirFolder  # noqa: E402
from pyserini_llama.data.trec import load_run  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402
from pyserini_llama.fingerprint import file_sha256  # noqa: E402

METRICS = ("nDCG@10", "R@100", "MRR@10")


def named(items: Sequence[str]) -> List[Tuple[str, str]]:
    """``NAME=CHECKPOINT`` (or a bare checkpoint, named by its folder) pairs."""
    return [tuple(item.split("=", 1)) if "=" in item else (Path(item).name, item) for item in items]


def bm25_file(folder: Path, collection: str, split: str) -> Optional[Path]:
    for name in (f"{collection}.{split}.bm25.trec", f"{collection}.bm25.trec"):
        for path in (folder / name, folder / f"{name}.gz"):
            if path.exists():
                return path
    return None


def bm25_from_file(path: Path, queries: dict) -> stages.Stage:
    """A BM25 run made elsewhere (on a machine with Java), restricted to the evaluated queries."""
    run = load_run(path)
    missing = [q for q in queries if q not in run]
    if len(missing) == len(queries):
        raise UserError(f"{path}: none of the evaluated queries is in this run (another split?)")
    return stages.Stage("bm25", {q: run.get(q, []) for q in queries}, 0.0, True, path,
                        {"stage": "bm25-file", "run": file_sha256(path)})


def evaluate_collection(cache: stages.StageCache, folder: BeirFolder, split: str, args) -> dict:
    queries, qrels = folder.queries(split), folder.qrels(split)
    corpus = folder.corpus_path
    name = folder.root.name
    path = bm25_file(Path(args.bm25_runs), name, split) if args.bm25_runs else None
    bm25 = bm25_from_file(path, queries) if path else stages.bm25_stage(cache, corpus, queries, k=1000)
    systems = [bm25]
    dense = [stages.dense_stage(cache, ckpt, corpus, queries, k=1000, device=args.device, name=label,
                                passage_max_length=args.passage_length) for label, ckpt in named(args.dense)]
    systems += dense
    if dense:
        fused = stages.rrf_stage(cache, [bm25, dense[0]], k=1000, name=f"bm25+{dense[0].name} (rrf)")
        systems.append(fused)
        for label, ckpt in named(args.rerankers):
            reranked = stages.rerank_stage(cache, ckpt, fused, queries, corpus, depth=args.rerank_depth,
                                           device=args.device, name=f"{label} (reranks rrf top-{args.rerank_depth})")
            systems += [reranked, stages.rrf_stage(cache, [reranked, fused], k=1000,
                                                   name=f"rrf({label}, {fused.name})")]
    table = stages.evaluate_stages(systems, qrels, list(queries), METRICS)
    for system, row in table.items():
        print(f"{name:<14} {system:<48} " + "  ".join(f"{m} {row[m]:.4f}" for m in METRICS) +
              f"  ({row['seconds']:.1f}s{', cached' if row['cached'] else ''})", flush=True)
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python scripts/evaluate_small.py", __doc__)
    parser.add_argument("--data-dir", required=True, help="folder holding the collections' BEIR folders")
    parser.add_argument("--collections", nargs="+", default=["beir-scifact", "cranfield"],
                        help="NAME or NAME:SPLIT (default split: --split)")
    parser.add_argument("--split", default="test", help="queries and judgments evaluated (default: test)")
    parser.add_argument("--bm25-runs", help="folder with <collection>[.<split>].bm25.trec[.gz] runs (default: "
                                            "BM25 computed here, which needs Java)")
    parser.add_argument("--dense", nargs="+", default=[], help="NAME=CHECKPOINT; the first is fused and reranked")
    parser.add_argument("--rerankers", nargs="+", default=[], help="NAME=CHECKPOINT")
    parser.add_argument("--rerank-depth", type=cli.positive_int, default=100)
    parser.add_argument("--passage-length", type=cli.positive_int, default=512)
    parser.add_argument("--runs", default="runs/small-eval", help="work folder: runs and indexes, reused when "
                                                                  "their inputs are the same")
    cli.add_device(parser, dtype=False)
    cli.add_output(parser, help="results JSON")
    args = parser.parse_args(argv)

    import torch

    from pyserini_llama.runtime import resolve_device

    args.device = resolve_device(args.device)
    from pyserini_llama.data.atomic import check_output_path

    check_output_path(args.output, args.overwrite)
    cache = stages.StageCache(Path(args.runs))
    results: dict = {}
    meta: dict = {"splits": {}, "seconds": {}}
    started = time.perf_counter()
    for item in args.collections:
        collection, _, split = item.partition(":")
        split = split or args.split
        table = evaluate_collection(cache, BeirFolder(Path(args.data_dir) / collection), split, args)
        results[collection] = {s: {m: round(v, 4) for m, v in row.items() if m in METRICS} for s, row in table.items()}
        meta["splits"][collection] = split
        meta["seconds"][collection] = {s: round(row["seconds"], 1) for s, row in table.items()}
    results["_meta"] = dict(meta, command=" ".join(["python scripts/evaluate_small.py"] + sys.argv[1:]),
                            device=torch.cuda.get_device_name() if args.device.startswith("cuda")
                            else platform.machine(), torch=torch.__version__,
                            total_seconds=round(time.perf_counter() - started, 1))
    with atomic_write(args.output, overwrite=args.overwrite) as f:
        f.write(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
