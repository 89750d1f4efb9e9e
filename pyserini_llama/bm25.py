"""BM25 through Pyserini itself, with evaluation: ``python -m pyserini_llama.bm25``.

Indexes the collection once under ``--index`` (Pyserini's Lucene, title + text in one field, raw documents
stored), then searches with k1=0.9, b=0.4 (Anserini's defaults) and evaluates::

    python -m pyserini_llama.bm25 --collection beir-scifact --split test --output runs/scifact-bm25.trec

From Python, see :mod:`pyserini_llama.lucene` (``build_lucene_index``, ``bm25_search``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from . import cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.bm25", __doc__)
    parser.add_argument("--collection", default="beir-scifact", help="name or BEIR folder (default: beir-scifact)")
    parser.add_argument("--data-dir", help="where collections live (default: ../shared/ir when present)")
    parser.add_argument("--split", default="test", help="queries/qrels split (default: test)")
    parser.add_argument("--index", help="Lucene index folder (default: indexes/<collection>-lucene)")
    cli.add_output(parser, required=False, help="TREC run to write (default: runs/<collection>-<split>-bm25.trec)")
    parser.add_argument("--hits", type=cli.positive_int, default=1000)
    parser.add_argument("--k1", type=cli.finite_float, default=0.9)
    parser.add_argument("--b", type=cli.finite_float, default=0.4)
    parser.add_argument("--threads", type=cli.positive_int, default=2)
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    from .data.atomic import check_output_path
    from .data.collections import resolve_collection
    from .data.trec import write_run
    from .eval import evaluate, format_table
    from .lucene import bm25_search, ensure_lucene_index

    collection = resolve_collection(args.collection, args.data_dir)
    name = collection.root.name
    index = Path(args.index or f"indexes/{name}-lucene")
    output = Path(args.output or f"runs/{name}-{args.split}-bm25.trec")
    check_output_path(output, args.overwrite)
    queries, qrels = collection.queries(args.split), collection.qrels(args.split)
    t0 = time.perf_counter()
    ensure_lucene_index(collection.corpus_path, index, threads=args.threads, overwrite=args.overwrite)
    t1 = time.perf_counter()
    run = bm25_search(index, queries, k=args.hits, k1=args.k1, b=args.b, threads=args.threads)
    t2 = time.perf_counter()
    write_run(run, output, tag="bm25", overwrite=args.overwrite)
    scores = evaluate(run, qrels, ("nDCG@10", "R@100", "R@1000", "MRR@10", "MAP"))
    print(f"{name} {args.split}: {len(queries)} queries, index {t1 - t0:.1f}s, search {t2 - t1:.1f}s -> {output}")
    print(format_table({f"bm25 (k1={args.k1}, b={args.b})": scores}))
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
