"""Encoding and reranking on a CPU with and without the padding bound of :mod:`pyserini_llama.batching`
(``MAX_PADDING``).

Two ways documents reach the encoder: ``pyserini.encode`` hands over batches of ``--batch-size`` documents in
file order (the plugin's ``RepLlamaDocumentEncoder.encode`` gets each batch), and ``pyserini_llama.encode`` gives
the whole corpus at once (sorted by length first). With ``--pairs N`` the reranker of ``--rerank-backend`` (by default
``auto``, what the pipeline and the README demo run on a CPU: onnxruntime in the checkpoint's measured CPU
precision, int8 for the packaged reranker) also scores N query-document pairs (test queries x the same documents)
in one call, as a rerank does. Each path is timed with the bound off (one
batch per token budget, padded to its longest row) and on, in interleaved rounds on the same inputs; the outputs
of the two settings are compared (largest absolute difference of the vectors, or of the scores: a reranker whose
activations are quantized with one scale per batch scores a pair differently in another batch). Absolute CPU
times are noisy on a shared machine; the ratios of one run much less so.

Usage::

    python benchmarks/cpu_batching.py --docs 96 --rounds 2 --pairs 400 --output benchmarks/results/cpu-batching.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", default="cranfield", help="BEIR folder or name (default cranfield)")
    parser.add_argument("--docs", type=int, default=96, help="the first N documents, in file order")
    parser.add_argument("--batch-size", type=int, default=16, help="pyserini.encode's --batch-size")
    parser.add_argument("--max-length", type=int, default=512, help="pyserini.encode's --max-length")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checkpoint", default="repllama-smollm2")
    parser.add_argument("--pairs", type=int, default=0, help="also rerank this many pairs (0: encoding only)")
    parser.add_argument("--reranker", default="rankllama-smollm2")
    parser.add_argument("--rerank-backend", default="auto", choices=["auto", "onnx", "torch"],
                        help="auto (default): onnx on a CPU, as the pipeline picks")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)

    import torch

    from common import print_table, recorded_command, write_report
    from onnx_cpu import machine, versions
    from pyserini_llama import batching
    from pyserini_llama.data.collections import resolve_collection
    from pyserini_llama.encoders.pyserini_adapters import RepLlamaDocumentEncoder

    from pyserini_llama.errors import UserError
    from pyserini_llama.rerankers.onnx import reranker_for_backend

    try:
        folder = resolve_collection(args.collection)
        docs = [doc for _, doc in zip(range(args.docs), folder.corpus().values())]
        adapter = RepLlamaDocumentEncoder(args.checkpoint, device="cpu")
        reranker = reranker_for_backend(args.reranker, args.rerank_backend) if args.pairs else None
        queries = list(folder.queries("test").values()) if args.pairs else []
        if args.pairs < 0 or (args.pairs and not (queries and docs)):
            raise UserError(f"--pairs {args.pairs}: needs a non-negative count, test queries and documents")
    except UserError as e:  # a missing collection or checkpoint: one line, as the CLIs say it
        print(f"error: {e}", file=sys.stderr)
        return 2
    encoder = adapter.encoder
    lengths = [len(r) for r in encoder.passage_token_ids([(d.title, d.text) for d in docs], args.max_length)]
    # pair k: the (k // len(docs))-th query with the k-th document, round the documents
    pair_ids = reranker.encode_pairs([queries[(k // len(docs)) % len(queries)] for k in range(args.pairs)],
                                     [(docs[k % len(docs)].title, docs[k % len(docs)].text)
                                      for k in range(args.pairs)]) if args.pairs else []

    def pyserini_batches():
        return np.concatenate([adapter.encode([d.text for d in docs[i:i + args.batch_size]],
                                              titles=[d.title for d in docs[i:i + args.batch_size]],
                                              max_length=args.max_length)
                               for i in range(0, len(docs), args.batch_size)])

    def whole_corpus():
        return encoder.encode_passages([(d.title, d.text) for d in docs], max_length=args.max_length)

    def rerank_pairs():
        return reranker.score_token_ids(pair_ids)

    def padded_tokens(sizes, groups, budget, bound):
        return sum(max(sizes[i] for i in batch) * len(batch)
                   for group in groups
                   for batch in batching.plan_batches([sizes[i] for i in group], budget, max_padding=bound)
                   for batch in [[group[j] for j in batch]])

    encode_budget = batching.DEFAULT_TOKENS_PER_BATCH["cpu"]
    paths = {"pyserini.encode batches": (pyserini_batches, lengths, encode_budget,
                                         [list(range(i, min(i + args.batch_size, len(docs))))
                                          for i in range(0, len(docs), args.batch_size)]),
             "whole corpus": (whole_corpus, lengths, encode_budget, [list(range(len(docs)))])}
    scored = f"rerank pairs ({getattr(reranker, 'precision', 'torch')})" if args.pairs else None
    if scored:
        paths[scored] = (rerank_pairs, [len(r) for r in pair_ids], reranker.batch_tokens, [list(range(args.pairs))])
    bounds = {"off": None, "on": batching.MAX_PADDING["cpu"]}
    seconds = {(p, b): [] for p in paths for b in bounds}
    vectors = {}
    torch.set_grad_enabled(False)
    whole_corpus()  # warm-up, not timed
    for _ in range(args.rounds):
        for path, (run, *_) in paths.items():
            for name, bound in bounds.items():
                batching.MAX_PADDING["cpu"] = bound
                start = time.perf_counter()
                vectors[path, name] = run()
                seconds[path, name].append(time.perf_counter() - start)
    batching.MAX_PADDING["cpu"] = bounds["on"]
    rows = []
    for path, (_, sizes, budget, groups) in paths.items():
        off, on = (float(np.median(seconds[path, b])) for b in bounds)
        rows.append({"path": path, "seconds_off": round(off, 2), "seconds_on": round(on, 2),
                     "speedup": round(off / on, 3), "padded_tokens_off": padded_tokens(sizes, groups, budget, None),
                     "padded_tokens_on": padded_tokens(sizes, groups, budget, bounds["on"]),
                     "max_abs_difference": float(np.abs(vectors[path, "off"] - vectors[path, "on"]).max())})
        if path == scored:  # scores: how far apart pairs are anyway
            rows[-1]["score_std"] = float(np.std(vectors[path, "on"]))
    report = {"benchmark": "cpu-batching", "command": recorded_command("cpu_batching.py", argv),
        "machine": machine(), "versions": versions(),
        "checkpoint": args.checkpoint, "collection": folder.root.name, "docs": len(docs),
        "real_tokens": sum(lengths), "batch_size": args.batch_size, "max_length": args.max_length,
        "max_padding": bounds["on"], "rounds": args.rounds, "pairs": args.pairs,
        "reranker": args.reranker if args.pairs else None, "results": rows}
    write_report(args.output, report)
    print_table(["path", "off s", "on s", "speed-up", "padded off", "padded on", "max diff"],
                [[r["path"], f"{r['seconds_off']:.1f}", f"{r['seconds_on']:.1f}", f"{r['speedup']:.2f}x",
                  f"{r['padded_tokens_off']:,}", f"{r['padded_tokens_on']:,}", f"{r['max_abs_difference']:.2e}"]
                 for r in rows])
    print(f"{len(docs)} documents, {sum(lengths):,} real tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
