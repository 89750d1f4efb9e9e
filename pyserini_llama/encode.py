"""Encode a corpus into a Pyserini dense index, or queries into Pyserini's ``--encoded-queries`` format.

Examples::

    python -m pyserini_llama.encode corpus --corpus ../data/beir-scifact/corpus.jsonl --encoder repllama \\
        --index indexes/scifact-repllama --max-length 512
    torchrun --nproc_per_node 4 -m pyserini_llama.encode corpus ...same arguments...     # one shard per GPU
    python -m pyserini_llama.encode queries --topics queries.tsv --encoder repllama --output encoded/scifact

A killed ``corpus`` run, restarted with the same command, continues from its last finished shard. The index
folder (``index`` + ``docid``) is what ``python -m pyserini.search.faiss --index`` and
``python -m pyserini_llama.search`` read.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from .errors import UserError, run_cli


def default_device() -> str:
    """``cuda:<LOCAL_RANK>`` under torchrun, ``cuda`` on a GPU machine, else ``cpu``."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def corpus_path(source: str) -> Path:
    """A corpus JSONL file, a BEIR folder, or a collection name."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    from .data.beir import BeirFolder

    if path.is_dir():
        return BeirFolder(path).corpus_path
    from .data.collections import resolve_collection
    return resolve_collection(source).corpus_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyserini_llama.encode", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="encode documents into a Pyserini faiss index folder")
    corpus.add_argument("--corpus", required=True, help="corpus JSONL (BEIR or JsonCollection), BEIR folder, "
                                                        "or collection name")
    corpus.add_argument("--index", required=True, help="index folder to write (index + docid)")
    corpus.add_argument("--shard-size", type=int, default=20_000,
                        help="documents per resumable shard (default 20000)")
    queries = commands.add_parser("queries", help="encode topics into embedding.pkl for --encoded-queries")
    queries.add_argument("--topics", required=True, help="BEIR queries.jsonl or qid<TAB>text TSV")
    queries.add_argument("--output", required=True, help="folder to write embedding.pkl into")
    for sub in (corpus, queries):
        sub.add_argument("--encoder", default="repllama",
                         help="checkpoint folder, built-in name or hub id (default: repllama)")
        sub.add_argument("--max-length", type=int, help="tokens incl. BOS/EOS (default: the checkpoint's)")
        sub.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default)")
        sub.add_argument("--dtype", help="bfloat16, float16 or float32 (default: the checkpoint's; "
                                         "float32 on CPU)")
        sub.add_argument("--max-tokens-per-batch", type=int,
                         help="padded tokens per batch (default: 32768 on GPU, 8192 on CPU)")
        sub.add_argument("--compile", action="store_true",
                         help="torch.compile the model (faster on GPUs for large corpora; compiles first)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output")
        sub.add_argument("--trust-remote-code", action="store_true")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .encoders.repllama import RepLlamaEncoder

    if args.max_length is not None and args.max_length < 2:
        raise UserError(f"--max-length must be at least 2, got {args.max_length}")
    if args.max_tokens_per_batch is not None and args.max_tokens_per_batch <= 0:
        raise UserError(f"--max-tokens-per-batch must be positive, got {args.max_tokens_per_batch}")
    if args.command == "corpus":
        corpus = corpus_path(args.corpus)
        if Path(args.index).exists() and not args.overwrite:
            raise UserError(f"{args.index} already exists; pass --overwrite to replace it")
    else:
        from .data.atomic import check_output_path

        check_output_path(Path(args.output) / "embedding.pkl", args.overwrite)
    device = default_device() if args.device == "auto" else args.device
    encoder = RepLlamaEncoder.from_checkpoint(args.encoder, device=device, dtype=args.dtype,
                                              trust_remote_code=args.trust_remote_code,
                                              max_tokens_per_batch=args.max_tokens_per_batch,
                                              compile=args.compile)
    start = time.perf_counter()
    if args.command == "corpus":
        from .dense.index import build_index, distributed_rank, read_index_info

        build_index(encoder, corpus, args.index, shard_size=args.shard_size, overwrite=args.overwrite,
                    max_length=args.max_length)
        if distributed_rank()[0] == 0:
            info = read_index_info(args.index)
            print(f"wrote {args.index}: {info['count']} documents x {info['dimension']} dims "
                  f"in {time.perf_counter() - start:.0f} s")
        return 0
    n = write_encoded_queries(encoder, args.topics, args.output, args.max_length, args.overwrite)
    print(f"wrote {Path(args.output) / 'embedding.pkl'}: {n} queries in {time.perf_counter() - start:.0f} s")
    return 0


def write_encoded_queries(encoder, topics: str, output: str, max_length: Optional[int] = None,
                          overwrite: bool = False) -> int:
    """Pyserini's pre-encoded query format: ``embedding.pkl``, a DataFrame of ``text`` and ``embedding``."""
    import pandas as pd

    from .data.atomic import atomic_write
    from .data.beir import load_queries

    queries = load_queries(topics)
    texts = list(queries.values())
    vectors = encoder.encode_queries(texts, max_length=max_length)
    frame = pd.DataFrame({"id": list(queries), "text": texts, "embedding": list(vectors)})
    with atomic_write(Path(output) / "embedding.pkl", "wb", overwrite=overwrite) as f:
        frame.to_pickle(f)
    return len(texts)


if __name__ == "__main__":
    run_cli(main)
