"""Evaluate the small-scale checkpoints on SciFact test and Cranfield (zero-shot): results/small-scale.json.

For each collection: BM25 (a run computed beforehand with ``python -m pyserini_llama.bm25``), every dense
checkpoint (corpus encoded at --passage-length, exact search), BM25 + dense reciprocal rank fusion (k 60, nothing
to tune), every reranker over the fused top --rerank-depth, and that reranking fused once more with the hybrid
run (RRF k 60: the reranker as a third voter). Runs are written under --runs; the JSON has
``{collection: {system: {metric: value}}}`` plus ``_meta`` (hardware, command, timings). Needs no pyserini.
``--split train-dev`` on a folder from ``scripts/dev_split.py`` evaluates on held-out training queries.

    python scripts/evaluate_small.py --data-dir ../shared/ir --bm25-runs runs/small \\
        --dense repllama-smollm2=checkpoints/small/repllama-smollm2 \\
        --rerankers rankllama-smollm2=checkpoints/small/rankllama-smollm2 --output results/small-scale.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.data.beir import BeirFolder  # noqa: E402
from pyserini_llama.data.trec import load_run, truncate_run, write_run  # noqa: E402
from pyserini_llama.eval import evaluate  # noqa: E402
from pyserini_llama.fusion import reciprocal_rank_fusion  # noqa: E402

METRICS = ("nDCG@10", "R@100", "MRR@10")


def named(items):
    return [tuple(item.split("=", 1)) if "=" in item else (Path(item).name, item) for item in items]


def dense_run(name, checkpoint, folder: BeirFolder, queries, device, passage_length, runs: Path, timings,
              embeddings: Path):
    import torch

    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    path = runs / f"{folder.root.name}.{name}.trec"
    if path.exists():
        return load_run(path)
    start = time.perf_counter()
    encoder = RepLlamaEncoder.from_checkpoint(checkpoint, device=device)
    corpus = folder.corpus()
    ids = list(corpus)
    # One encoding per (checkpoint, corpus file, length): a development split shares its corpus with the test
    # folder (scripts/dev_split.py links it), so the second evaluation reuses the vectors.
    key = hashlib.sha1(f"{folder.corpus_path.resolve()}:{passage_length}".encode()).hexdigest()[:12]
    cache = embeddings / f"{name}.{key}.docs.npy"
    if cache.exists():
        docs = np.load(cache)
    else:
        docs = encoder.encode_passages([corpus[i] for i in ids], max_length=passage_length, progress=False)
        embeddings.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache, "wb") as f:
            np.save(f, docs)
    qids = list(queries)
    q = encoder.encode_queries([queries[i] for i in qids], progress=False)
    scores = torch.from_numpy(q) @ torch.from_numpy(docs).T
    top = torch.topk(scores, k=min(1000, len(ids)), dim=1)
    run = {qid: [(ids[j], float(s)) for s, j in zip(top.values[r].tolist(), top.indices[r].tolist())]
           for r, qid in enumerate(qids)}
    write_run(run, path, tag=name)
    timings[f"{folder.root.name}/{name}"] = round(time.perf_counter() - start, 1)
    del encoder
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder with beir-scifact/ and cranfield/")
    parser.add_argument("--collections", nargs="+", default=["beir-scifact", "cranfield"])
    parser.add_argument("--split", default="test", help="queries and judgments evaluated (default: test)")
    parser.add_argument("--bm25-runs", required=True, help="folder with <collection>.bm25.trec files")
    parser.add_argument("--dense", nargs="+", default=[], help="NAME=CHECKPOINT; the first is fused and reranked")
    parser.add_argument("--rerankers", nargs="+", default=[], help="NAME=CHECKPOINT")
    parser.add_argument("--rerank-depth", type=int, default=100)
    parser.add_argument("--passage-length", type=int, default=512)
    parser.add_argument("--runs", default="runs/small-eval")
    parser.add_argument("--embeddings", help="where corpus vectors are kept for reuse (default: --runs)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    results, timings = {}, {}
    dense, rerankers = named(args.dense), named(args.rerankers)
    for collection in args.collections:
        folder = BeirFolder(Path(args.data_dir) / collection)
        queries, qrels = folder.queries(args.split), folder.qrels(args.split)
        table = results[collection] = {}
        bm25 = load_run(Path(args.bm25_runs) / f"{collection}.bm25.trec")
        systems = {"bm25": {qid: hits for qid, hits in bm25.items() if qid in queries}}
        for name, checkpoint in dense:
            systems[name] = dense_run(name, checkpoint, folder, queries, args.device, args.passage_length, runs,
                                      timings, Path(args.embeddings) if args.embeddings else runs)
        if dense:
            fused = reciprocal_rank_fusion([systems["bm25"], systems[dense[0][0]]], rrf_k=60, depth=1000, k=1000)
            systems[f"bm25+{dense[0][0]} (rrf)"] = fused
            corpus = folder.corpus()
            for name, checkpoint in rerankers:
                path = runs / f"{collection}.{name}.trec"
                if not path.exists():
                    from pyserini_llama.rerankers.rankllama import RankLlamaReranker

                    start = time.perf_counter()
                    reranker = RankLlamaReranker.from_checkpoint(checkpoint, device=args.device)
                    write_run(reranker.rerank(queries, truncate_run(fused, args.rerank_depth), corpus,
                                              hits=args.rerank_depth, progress=False), path, tag=name)
                    timings[f"{collection}/{name}"] = round(time.perf_counter() - start, 1)
                reranked = systems[f"{name} (reranks rrf top-{args.rerank_depth})"] = load_run(path)
                systems[f"rrf({name}, bm25+{dense[0][0]})"] = reciprocal_rank_fusion(
                    [reranked, fused], rrf_k=60, depth=1000, k=1000)
        for system, run in systems.items():
            table[system] = {m: round(v, 4) for m, v in evaluate(run, qrels, METRICS).items()}
            print(f"{collection:<14} {system:<48} " + "  ".join(f"{m} {v:.4f}" for m, v in table[system].items()),
                  flush=True)
    results["_meta"] = dict(command=" ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
                            device=torch.cuda.get_device_name() if torch.cuda.is_available() else platform.machine(),
                            torch=torch.__version__, seconds=timings, split=args.split)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
