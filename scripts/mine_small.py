"""Hard negatives for the small-scale recipe straight from a retriever: BM25 (needs Java) or a dense checkpoint.

Retrieves the top --depth documents for the split's judged queries (or the --max-queries subsample the trainers
draw with the same flag) with the pipeline's own stages (:mod:`pyserini_llama.stages`, cached in --work), then
mines them with :func:`pyserini_llama.mine_negatives.mine_negatives`, optionally without the near duplicates of
each positive. Only the negatives file is written (gzipped for a ``.gz`` name): runs of tens of thousands of
queries stay in the work folder, and the small file is what travels to the GPU machine.

    python scripts/mine_small.py --collection ../shared/ir/debian-descriptions --split train --max-queries 12000 \\
        --retriever bm25 --exclude-near-duplicates --output runs/reproduce/carry/debian.bm25.negatives.jsonl.gz
    python scripts/mine_small.py --collection DATA/beir-scifact --retriever checkpoints/repllama-debian \\
        --device cuda --output runs/reproduce/scifact.dense.negatives.jsonl.gz
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama import cli, stages  # noqa: E402
from pyserini_llama.data.collections import resolve_collection  # noqa: E402
from pyserini_llama.mine_negatives import (NEAR_DUPLICATE_THRESHOLD, mine_negatives, near_duplicate_filter,  # noqa: E402
                                           summary, write_negatives)
from pyserini_llama.train.data import subsample_queries  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python scripts/mine_small.py", __doc__)
    parser.add_argument("--collection", required=True, help="BEIR folder or collection name")
    parser.add_argument("--split", default="train", help="judged queries to mine for (never test; default: train)")
    parser.add_argument("--max-queries", type=cli.non_negative_int, default=0,
                        help="only the subsample the trainers' --max-queries draws (0: all)")
    parser.add_argument("--retriever", required=True, help="bm25, or a dense checkpoint (folder or name)")
    parser.add_argument("--depth", type=cli.positive_int, default=200)
    parser.add_argument("--num", type=cli.positive_int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--exclude-near-duplicates", action="store_true",
                        help="drop candidates that nearly repeat a positive's text and hold every query word it "
                             "holds (see python -m pyserini_llama.mine_negatives --help)")
    parser.add_argument("--near-duplicate-threshold", type=cli.finite_float, default=NEAR_DUPLICATE_THRESHOLD)
    parser.add_argument("--passage-length", type=cli.positive_int, help="dense: passage tokens (default: the "
                                                                        "checkpoint's)")
    parser.add_argument("--work", default="runs/mine", help="cache of runs and indexes")
    parser.add_argument("--stats", help="JSON to write: queries, negatives, near duplicates dropped, seconds")
    cli.add_device(parser, dtype=False)
    cli.add_output(parser, help="negatives JSONL (.jsonl.gz: gzipped)")
    args = parser.parse_args(argv)

    from pyserini_llama.data.atomic import check_output_path
    from pyserini_llama.errors import UserError
    from pyserini_llama.runtime import resolve_device

    check_output_path(args.output, args.overwrite)
    if "test" in args.split.lower():
        raise UserError(f"refusing to mine training negatives for split {args.split!r}")
    started = time.perf_counter()
    folder = resolve_collection(args.collection)
    queries = folder.queries(args.split)
    queries = {q: queries[q] for q in subsample_queries(list(queries), args.max_queries)}
    qrels = {q: rels for q, rels in folder.qrels(args.split).items() if q in queries}
    cache = stages.StageCache(Path(args.work))
    corpus = folder.corpus_path
    if args.retriever == "bm25":
        stage = stages.bm25_stage(cache, corpus, queries, k=args.depth)
    else:
        stage = stages.dense_stage(cache, args.retriever, corpus, queries, k=args.depth,
                                   device=resolve_device(args.device), passage_max_length=args.passage_length)
    exclude, dropped = None, []
    if args.exclude_near_duplicates:
        texts = {d: doc.contents for d, doc in folder.corpus().items()}
        is_duplicate = near_duplicate_filter(texts, args.near_duplicate_threshold, queries)

        def exclude(qid: str, candidate: str, positives) -> bool:
            if is_duplicate(qid, candidate, positives):
                dropped.append((qid, candidate))
                return True
            return False

    mined = mine_negatives(stage.run, qrels, args.depth, args.num, sample="random", seed=args.seed, exclude=exclude)
    if not mined:
        raise UserError(f"no query of split {args.split!r} has a positive in the retrieved documents")
    write_negatives(mined, args.output, args.overwrite)
    if args.stats:
        import json

        from pyserini_llama.data.atomic import atomic_write

        top10 = {(q, d) for q, hits in stage.run.items() for d, _ in hits[:10]}
        stats = {"command": " ".join(["python scripts/mine_small.py"] + list(argv if argv is not None else sys.argv[1:])),
                 "queries": len(mined), "negatives": sum(len(e["negatives"]) for e in mined.values()),
                 "candidates": sum(len(hits[:args.depth]) for hits in stage.run.values()),
                 "near_duplicates_dropped": len(dropped),
                 "near_duplicates_dropped_in_top10": sum(1 for x in dropped if x in top10),
                 "queries_with_a_near_duplicate": len({q for q, _ in dropped}),
                 "seconds": round(time.perf_counter() - started, 1)}
        with atomic_write(args.stats) as f:
            f.write(json.dumps(stats, indent=1) + "\n")
    print(f"wrote {args.output}: {summary(mined, args.num, len(stage.run))} ({args.retriever} top {args.depth}, "
          f"{time.perf_counter() - started:.0f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
