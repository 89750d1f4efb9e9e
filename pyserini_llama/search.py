"""Exact dense search of a Pyserini faiss index folder, on a GPU without faiss or on a CPU with it.

Example::

    python -m pyserini_llama.search --index indexes/scifact-repllama \\
        --topics ../data/beir-scifact/queries.jsonl --output runs/scifact-repllama.trec --hits 1000
    python -m pyserini_llama.search --index beir-scifact.repllama-smollm2 ...   # a prebuilt index, by name

``--index`` is a folder or a name from ``python -m pyserini_llama.prebuilt_indexes --list`` (read from the
cache, downloaded when it has a download). The query encoder defaults to the one recorded in the index folder
by ``python -m pyserini_llama.encode``.
The run is a TREC file (written atomically), the same as ``python -m pyserini.search.faiss`` writes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

from .errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyserini_llama.search", description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True,
                        help="index folder (index + docid), or a prebuilt index name (see python -m "
                             "pyserini_llama.prebuilt_indexes --list)")
    parser.add_argument("--topics", required=True, help="BEIR queries.jsonl, qid<TAB>text TSV, or a BEIR folder")
    parser.add_argument("--output", required=True, help="TREC run to write")
    parser.add_argument("--encoder", help="query encoder checkpoint (default: the one that built the index)")
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--max-length", type=int, help="query tokens incl. BOS/EOS (default: the checkpoint's)")
    parser.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default)")
    parser.add_argument("--dtype", help="bfloat16, float16 or float32 (default: the checkpoint's)")
    parser.add_argument("--fp16", action="store_true", help="hold the index in fp16 on the device (half memory)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "faiss"],
                        help="auto: faiss on CPU when installed, else torch matmul + top-k")
    parser.add_argument("--remove-query", action="store_true", help="drop hits whose docid equals the qid")
    parser.add_argument("--output-format", default="trec", choices=["trec", "msmarco"])
    parser.add_argument("--tag", default="repllama")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import check_output_path
    from .data.trec import write_run
    from .dense.index import read_index_info
    from .dense.search import DenseSearcher
    from .encode import default_device
    from .encoders.repllama import RepLlamaEncoder
    from .prebuilt_indexes.registry import resolve_index
    from .rerank import open_topics

    if args.hits <= 0:
        raise UserError(f"--hits must be positive, got {args.hits}")
    check_output_path(args.output, args.overwrite)
    topics = open_topics(args.topics)
    index = resolve_index(args.index)
    name = args.encoder or (read_index_info(index) or {}).get("encoder")
    if not name:
        raise UserError(f"{args.index}: the index does not record its encoder; pass --encoder")
    device = default_device() if args.device == "auto" else args.device
    encoder = RepLlamaEncoder.from_checkpoint(name, device=device, dtype=args.dtype)
    if args.max_length:
        encoder = encoder.with_config(query_max_length=args.max_length)
    searcher = DenseSearcher(index, encoder, device=device, fp16=args.fp16, backend=args.backend)
    start = time.perf_counter()
    run = searcher.search(topics, k=args.hits + (1 if args.remove_query else 0))
    if args.remove_query:
        run = {qid: [h for h in hits if h[0] != qid][:args.hits] for qid, hits in run.items()}
    write_run(run, args.output, tag=args.tag, fmt=args.output_format, overwrite=args.overwrite)
    print(f"searched {len(topics)} queries over {len(searcher.docids)} documents ({searcher.backend} on "
          f"{device}) in {time.perf_counter() - start:.1f} s; wrote {Path(args.output)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
