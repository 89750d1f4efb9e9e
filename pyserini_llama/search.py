"""Exact dense search of a Pyserini faiss index folder, on a GPU without faiss or on a CPU with it.

Example::

    python -m pyserini_llama.search --index indexes/scifact-repllama-smollm2 \
        --topics ../shared/ir/beir-scifact --split test --output runs/scifact-repllama.trec --hits 1000
    python -m pyserini_llama.search --index beir-scifact.repllama-smollm2 ...   # a prebuilt index, by name

``--index`` is a folder or a name from ``python -m pyserini_llama.prebuilt_indexes --list`` (read from the
cache, downloaded when it has a download). The query encoder defaults to the one recorded in the index folder
by ``python -m pyserini_llama.encode``. The run is a TREC file (written atomically), the same as
``python -m pyserini.search.faiss`` writes.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

from . import cli
from .errors import UserError


def build_parser():
    parser = cli.parser("python -m pyserini_llama.search", __doc__)
    parser.add_argument("--index", required=True, help="index folder (index + docid), or a prebuilt index name "
                                                       "(python -m pyserini_llama.prebuilt_indexes --list)")
    parser.add_argument("--topics", required=True, help="topics TSV, BEIR queries.jsonl, BEIR folder or "
                                                        "collection name")
    parser.add_argument("--split", help="with a BEIR folder or collection: only the queries of this split")
    cli.add_output(parser, help="TREC run to write")
    cli.add_checkpoint(parser, "--encoder", None, "query encoder (default: the one that built the index)")
    parser.add_argument("--hits", type=cli.positive_int, default=1000)
    parser.add_argument("--max-length", type=cli.int_at_least(2),
                        help="query tokens incl. BOS/EOS (default: the checkpoint's)")
    cli.add_device(parser)
    parser.add_argument("--fp16", action="store_true", help="hold the index in fp16 on the device (half memory)")
    parser.add_argument("--index-memory", default="device", choices=["device", "host"],
                        help="device: hold the index on the device(s); host: stream it from host memory chunk by "
                             "chunk (GPU memory stays at two chunks; same hits)")
    parser.add_argument("--index-devices", nargs="+", metavar="DEVICE",
                        help="shard the index across these devices (e.g. cuda:0 cuda:1; same hits)")
    parser.add_argument("--rows-per-chunk", type=cli.positive_int, default=1 << 18,
                        help="index rows per chunk (bounds device memory; default 262144)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "faiss"],
                        help="auto: faiss on CPU when installed, else torch matmul + top-k")
    parser.add_argument("--remove-query", action="store_true", help="drop hits whose docid equals the qid")
    parser.add_argument("--output-format", default="trec", choices=["trec", "msmarco"])
    parser.add_argument("--tag", default="repllama")
    cli.add_verbose(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import check_output_path
    from .data.collections import open_topics
    from .data.trec import write_run
    from .dense.index import check_index
    from .dense.search import DenseSearcher
    from .encoders.repllama import RepLlamaEncoder
    from .prebuilt_indexes.registry import resolve_index
    from .runtime import resolve_device

    # every input and the output are checked before the model loads (a 7B model takes minutes)
    check_output_path(args.output, args.overwrite)
    device = resolve_device(args.device)
    topics = open_topics(args.topics, split=args.split)
    index = resolve_index(args.index)
    name = args.encoder or (check_index(index) or {}).get("encoder")
    if args.encoder:
        check_index(index)
    if not name:
        raise UserError(f"{args.index}: the index does not record its encoder; pass --encoder")
    encoder = RepLlamaEncoder.from_checkpoint(name, device=device, dtype=args.dtype,
                                              trust_remote_code=args.trust_remote_code)
    if args.max_length:
        encoder = encoder.with_config(query_max_length=args.max_length)
    devices = [resolve_device(d) for d in args.index_devices] if args.index_devices else None
    searcher = DenseSearcher(index, encoder, device=device, fp16=args.fp16, backend=args.backend,
                             memory=args.index_memory, devices=devices, rows_per_chunk=args.rows_per_chunk)
    start = time.perf_counter()
    run = searcher.search(topics, k=args.hits + (1 if args.remove_query else 0))
    if args.remove_query:
        run = {qid: [h for h in hits if h[0] != qid][:args.hits] for qid, hits in run.items()}
    write_run(run, args.output, tag=args.tag, fmt=args.output_format, overwrite=args.overwrite)
    print(f"searched {len(topics)} queries over {len(searcher.docids)} documents ({searcher.backend} on "
          f"{device}) in {time.perf_counter() - start:.1f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
