"""Rerank any TREC run (Pyserini lucene, faiss, hybrid, fusion, ...) with RankLLaMA.

Example::

    python -m pyserini_llama.rerank --run runs/bm25.trec --topics ../shared/ir/beir-scifact --split test \
        --index beir-scifact --reranker rankllama-smollm2 --hits 100 --output runs/bm25.rankllama.trec
    torchrun --nproc_per_node 2 -m pyserini_llama.rerank --input-run runs/bm25.trec ...    # queries shared by 2 GPUs

(Under torchrun spell ``--run`` as ``--input-run``: torchrun takes ``--run`` for its own ``--run-path``.)

Document text comes from a Lucene index built with stored raw documents (``--storeRaw``; JsonCollection
``contents`` or BEIR ``title``/``text``), a prebuilt one by name (``--index beir-v1.0.0-scifact.flat``), or
from a BEIR folder / JSONL corpus / collection name. Documents ranked below ``--hits`` are kept, in their
first-stage order, below the reranked ones. The output is a TREC run (written atomically) that
``pyserini.eval.trec_eval`` and ir_measures read.
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

from . import cli
from .errors import UserError

log = logging.getLogger(__name__)


def build_parser():
    parser = cli.parser("python -m pyserini_llama.rerank", __doc__)
    parser.add_argument("--run", "--input-run", dest="run", required=True,
                        help="first-stage run (TREC or MS MARCO format)")
    parser.add_argument("--topics", required=True, help="queries: topics TSV, BEIR queries.jsonl, BEIR folder "
                                                        "or collection name")
    parser.add_argument("--split", help="with a BEIR folder or collection: only the queries of this split")
    parser.add_argument("--index", required=True, help="document text: a Lucene index with stored raw docs, "
                                                       "a BEIR folder, a corpus JSONL, a prebuilt Lucene index "
                                                       "name or a collection name")
    cli.add_checkpoint(parser, "--reranker", "rankllama", "reranker (rankllama = castorini/rankllama-v1-7b-lora-"
                                                           "passage)")
    parser.add_argument("--hits", type=cli.positive_int, default=100,
                        help="rerank the top N of each query (default 100)")
    parser.add_argument("--max-queries", type=cli.non_negative_int, default=0,
                        help="rerank only the first N queries of the run (0: all; the rest are left out)")
    parser.add_argument("--qids", nargs="+", help="rerank only these queries (the rest are left out)")
    cli.add_output(parser, help="output TREC run")
    parser.add_argument("--batch-tokens", type=cli.positive_int,
                        help="padded tokens per batch (default: 32768 on GPU, 8192 on CPU)")
    cli.add_device(parser, compile=True)
    cli.add_backend(parser)
    parser.add_argument("--max-length-query", type=cli.positive_int,
                        help="query tokens (default: the checkpoint's, 32)")
    parser.add_argument("--max-length-passage", type=cli.int_at_least(4),
                        help="passage tokens incl. 3 reserved as in RankLLaMA v1 (default: the checkpoint's, 164)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="keep documents the corpus lacks, unscored below the reranked ones (warns), "
                             "instead of failing")
    parser.add_argument("--tag", default="rankllama", help="run tag (6th column)")
    cli.add_verbose(parser)
    return parser


def select_queries(run, qids: Optional[Sequence[str]], max_queries: int):
    """The part of ``run`` to rerank: the named queries, or the first ``max_queries`` (0: all)."""
    if qids:
        unknown = [q for q in qids if q not in run]
        if unknown:
            raise UserError(f"--qids: {len(unknown)} queries are not in the run (e.g. {unknown[0]!r})")
        return {q: run[q] for q in qids}
    return dict(list(run.items())[:max_queries]) if max_queries else run


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import check_output_path
    from .data.collections import open_topics
    from .data.documents import fetch_documents, open_documents
    from .data.trec import load_run
    from .rerankers.onnx import reranker_for_backend
    from .rerankers.rankllama import check_rerank_inputs
    from .rerankers.sharding import prepare_parts, shard_run, write_sharded_run
    from .runtime import distributed_rank, resolve_device

    check_output_path(args.output, args.overwrite)
    device = resolve_device(args.device)
    run = select_queries(load_run(args.run), args.qids, args.max_queries)
    topics = open_topics(args.topics, split=args.split)
    check_rerank_inputs(topics, run, args.hits)
    rank, world = distributed_rank()
    mine = shard_run(run, rank, world)  # under torchrun: this rank's queries (all of them otherwise)
    wanted = {d for hits in mine.values() for d, _ in hits[:args.hits]}
    docs = open_documents(args.index, wanted)
    if not args.skip_missing:  # found now, not after the model has loaded
        missing = fetch_documents(docs, wanted)[1]
        if missing:  # the reranker's own message, said before it loads
            raise UserError(f"{len(missing)} documents of the run are not in the corpus (e.g. "
                            f"{', '.join(map(repr, missing[:5]))}); is it the right corpus? (skipping missing "
                            f"documents keeps them unscored)")
    prepare_parts(args.output, world)
    reranker = reranker_for_backend(args.reranker, args.backend, device, args.precision, args.dtype,
                                    args.trust_remote_code, args.batch_tokens, args.compile)
    reranker.query_max_length = args.max_length_query or reranker.query_max_length
    reranker.passage_max_length = args.max_length_passage or reranker.passage_max_length
    n_pairs = sum(min(len(h), args.hits) for h in mine.values())
    weights = f"onnxruntime {reranker.precision}" if hasattr(reranker, "precision") else reranker.model.dtype
    print((f"rank {rank} of {world}: " if world > 1 else "") +
          f"reranking top-{args.hits} of {len(mine)} queries ({n_pairs} pairs) with {args.reranker} on {device} "
          f"({weights}, q {reranker.query_max_length} + p {reranker.passage_max_length} tokens)"
          + ("; compiling on the first batch" if args.compile else ""), flush=True)
    start = time.perf_counter()
    reranked = reranker.rerank(topics, mine, docs, hits=args.hits, skip_missing=args.skip_missing,
                               progress=rank == 0) if mine else {}
    seconds = time.perf_counter() - start
    if write_sharded_run(reranked, list(run), args.output, args.tag, args.overwrite):
        print(f"wrote {args.output}: {len(run)} queries in {seconds:.1f}s ({n_pairs / max(seconds, 1e-9):.1f} "
              f"pairs/s" + (f" on rank 0 of {world})" if world > 1 else ")"))
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
