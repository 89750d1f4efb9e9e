"""Encode a corpus into a Pyserini dense index, or queries into Pyserini's ``--encoded-queries`` format.

Examples::

    python -m pyserini_llama.encode corpus --corpus ../shared/ir/beir-scifact --encoder repllama-smollm2 \
        --index indexes/scifact-repllama-smollm2
    torchrun --nproc_per_node 4 -m pyserini_llama.encode corpus ...same arguments...     # one shard per GPU
    python -m pyserini_llama.encode queries --topics queries.tsv --encoder repllama --output encoded/scifact
    python -m pyserini_llama.encode corpus --corpus cranfield --encoder repllama-smollm2 --backend onnx \
        --index indexes/cranfield-repllama-smollm2        # on a CPU: onnxruntime, several times faster

A killed ``corpus`` run, restarted with the same command, continues from its last finished shard (only if
the corpus, model and settings are unchanged). The index folder (``index`` + ``docid``) is what
``python -m pyserini.search.faiss --index`` and ``python -m pyserini_llama.search`` read.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from . import cli

RESUME_HINT = "a corpus encoding rerun with the same command continues from its finished shards"


def build_parser():
    parser = cli.parser("python -m pyserini_llama.encode", __doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    corpus = commands.add_parser("corpus", help="encode documents into a Pyserini faiss index folder")
    corpus.add_argument("--corpus", required=True,
                        help="corpus JSONL (BEIR or JsonCollection), BEIR folder, or collection name")
    corpus.add_argument("--index", required=True, help="index folder to write (index + docid)")
    corpus.add_argument("--shard-size", type=cli.positive_int, default=20_000,
                        help="documents per resumable shard (default 20000)")
    queries = commands.add_parser("queries", help="encode topics into embedding.pkl for --encoded-queries")
    queries.add_argument("--topics", required=True, help="topics TSV, BEIR queries.jsonl, BEIR folder or "
                                                         "collection name")
    queries.add_argument("--split", help="with a BEIR folder or collection: only the queries of this split")
    queries.add_argument("--output", required=True, help="folder to write embedding.pkl into")
    for sub in (corpus, queries):
        cli.add_checkpoint(sub, "--encoder", "repllama", "encoder")
        sub.add_argument("--max-length", type=cli.int_at_least(2),
                         help="tokens incl. BOS/EOS (default: the checkpoint's)")
        sub.add_argument("--max-tokens-per-batch", type=cli.positive_int,
                         help="padded tokens per batch (default: 32768 on GPU, 8192 on CPU)")
        cli.add_device(sub, compile=True)
        cli.add_backend(sub)
        cli.add_overwrite(sub)
        cli.add_verbose(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import check_output_dir, check_output_path
    from .data.collections import open_topics, resolve_corpus
    from .encoders.onnx import encoder_for_backend
    from .runtime import distributed_rank, resolve_device

    # every input and the output are checked before the model loads (a 7B model takes minutes to load, and a
    # malformed last line of a corpus must not wait for hours of encoding)
    device = resolve_device(args.device)
    if args.command == "corpus":
        from .dense.index import INDEX_FILES, validate_corpus

        corpus = resolve_corpus(args.corpus)
        check_output_dir(args.index, args.overwrite, INDEX_FILES)
        documents = validate_corpus(corpus)
    else:
        topics = open_topics(args.topics, split=args.split)
        check_output_path(Path(args.output) / "embedding.pkl", args.overwrite)
    encoder = encoder_for_backend(args.encoder, args.backend, device, args.precision, args.dtype,
                                  args.trust_remote_code, args.max_tokens_per_batch, args.compile)
    if args.compile:
        print("compiling the model on the first batch (about a minute on a GPU; on a CPU it can take longer "
              "than it saves)", flush=True)
    start = time.perf_counter()
    if args.command == "corpus":
        from .dense.index import build_index, read_index_info

        build_index(encoder, corpus, args.index, shard_size=args.shard_size, overwrite=args.overwrite,
                    max_length=args.max_length, documents=documents)
        if distributed_rank()[0] == 0:
            info = read_index_info(args.index)
            print(f"wrote {args.index}: {info['count']} documents x {info['dimension']} dims "
                  f"in {time.perf_counter() - start:.0f} s")
        return 0
    from .dense.index import write_encoded_queries

    n = write_encoded_queries(encoder, topics, args.output, args.max_length, args.overwrite)
    print(f"wrote {Path(args.output) / 'embedding.pkl'}: {n} queries in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
