"""Reranking on several GPUs: one run reranked by 1 and by N torchrun ranks, wall-clock time and scaling.

Each ``--gpus`` count starts ``torchrun --nproc_per_node N`` on this script; every rank builds the same random
RankLLaMA at Llama-2-7B shape (one seed; speed does not depend on weight values) on its GPU, warms it up, then
the timed part runs what ``torchrun -m pyserini_llama.rerank`` runs: the run's queries dealt to the ranks
(:func:`~pyserini_llama.rerankers.sharding.shard_run`), each rank reranks its share (tokenization included),
writes its part, and rank 0 joins the parts into the output file. Queries are ``--queries`` real ones and
documents real ones when ``--collection`` is given (a BEIR folder; the first-stage run is a seeded random
sample of ``--depth`` documents per query), else synthetic text. Reported: seconds from the start of
reranking to the joined file, pairs/s, and the speed-up over one GPU.

Example::

    python benchmarks/rerank_scaling.py --gpus 1 2 --collection ../shared/ir/beir-scifact --output scaling.json
    python benchmarks/rerank_scaling.py --tiny --gpus 1 2 --device cpu --output /tmp/scaling.json   # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import recorded_command, write_report  # noqa: E402

LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
WORDS = ("protein cell gene expression cancer mice study risk heat transfer boundary layer shock wave flow pressure "
         "velocity model results data analysis method treatment disease patients levels effect human increased").split()


def inputs(args):
    """``(topics, run, docs)``: real queries and documents from ``--collection``, or synthetic ones."""
    from pyserini_llama.data.beir import Document, load_corpus, load_queries

    rng = np.random.default_rng(0)
    if args.collection:
        folder = Path(args.collection)
        topics = dict(list(load_queries(folder / "queries.jsonl").items())[:args.queries])
        docs = load_corpus(folder / "corpus.jsonl")
    else:
        topics = {f"q{i}": " ".join(rng.choice(WORDS, 12)) for i in range(args.queries)}
        docs = {f"d{i}": Document(f"d{i}", " ".join(rng.choice(WORDS, 4)), " ".join(rng.choice(WORDS, 150)))
                for i in range(max(args.depth * 2, 500))}
    docids = sorted(docs)
    run = {q: [(docids[j], float(-r)) for r, j in enumerate(rng.choice(len(docids), args.depth, replace=False))]
           for q in topics}
    return topics, run, docs


def worker(args) -> None:
    """One torchrun rank: build, warm up, then time sharded reranking up to the joined output."""
    import torch

    from pyserini_llama.rerankers.rankllama import RankLlamaReranker
    from pyserini_llama.rerankers.sharding import prepare_parts, shard_run, write_sharded_run
    from pyserini_llama.runtime import barrier, distributed_rank, resolve_device
    from pyserini_llama.testing import build_tokenizer

    rank, world = distributed_rank()
    device = resolve_device(args.device or "auto")
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    topics, run, docs = inputs(args)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(tmp, style="llama")
    from rerank import build_random_model  # noqa: E402 - the 7B-shape builder of benchmarks/rerank.py

    shape = dict(TINY if args.tiny else LLAMA2_7B, vocab_size=len(tokenizer))
    model = build_random_model(shape, device, torch.bfloat16 if device.startswith("cuda") else torch.float32)
    if args.dtype == "fp8":
        from pyserini_llama.models.fp8 import quantize_model

        quantize_model(model, emulate=not device.startswith("cuda"))
    reranker = RankLlamaReranker(model, tokenizer, device=device, batch_tokens=args.batch_tokens,
                                 compile=args.compile)
    warm = dict(list(run.items())[:2])
    reranker.rerank(topics, warm, docs, hits=args.depth, progress=False)  # kernels, allocator, compilation
    prepare_parts(args.output, world)
    barrier(world)
    start = time.perf_counter()
    mine = shard_run(run, rank, world)
    reranked = reranker.rerank(topics, mine, docs, hits=args.depth, progress=False) if mine else {}
    if write_sharded_run(reranked, list(run), args.output, "scaling", overwrite=True):
        seconds = time.perf_counter() - start
        pairs = sum(min(len(h), args.depth) for h in run.values())
        Path(args.output + ".json").write_text(json.dumps(dict(
            gpus=world, seconds=round(seconds, 2), pairs=pairs, pairs_per_s=round(pairs / seconds, 1),
            ms_per_query=round(1000 * seconds / len(run), 1), device=str(device),
            device_name=torch.cuda.get_device_name() if device.startswith("cuda") else "cpu")) + "\n")


def scores(path: Path) -> dict:
    return {(p[0], p[2]): float(p[4]) for p in (line.split() for line in path.read_text().splitlines())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2], help="rank counts to time (default 1 2)")
    parser.add_argument("--collection", help="BEIR folder for real queries and documents (default: synthetic)")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--batch-tokens", type=int, default=32768)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "fp8"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: a tiny model")
    parser.add_argument("--device", help="auto (each rank's GPU, else cpu) or cpu")
    parser.add_argument("--master-port", type=int, default=29561)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    passed = list(sys.argv[1:] if argv is None else argv)
    keep = []
    skip = {"--gpus", "--output", "--master-port"}
    i = 0
    while i < len(passed):  # forward every option but the ones this launcher sets per count
        if passed[i] in skip:
            i += 1
            while i < len(passed) and not passed[i].startswith("--"):
                i += 1
            continue
        keep.append(passed[i])
        i += 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, gpus in enumerate(args.gpus):
            out = str(Path(tmp) / f"run-{gpus}.trec")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus), "--master_port",
                   str(args.master_port + n), str(Path(__file__).resolve()), "--worker", "--output", out, *keep]
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"torchrun with {gpus} ranks failed (exit {proc.returncode})")
            rows.append(json.loads(Path(out + ".json").read_text()))
            print(json.dumps(rows[-1]), flush=True)
        first = scores(Path(tmp) / f"run-{args.gpus[0]}.trec")
        for gpus, row in zip(args.gpus, rows):
            other = scores(Path(tmp) / f"run-{gpus}.trec")
            row["speedup"] = round(rows[0]["seconds"] / row["seconds"], 2)
            row["max_score_difference"] = max(abs(first[k] - other[k]) for k in first) if set(first) == set(other) \
                else None
    report = dict(command=recorded_command("rerank_scaling.py", argv), device=rows[0]["device_name"],
                  platform=platform.machine(), dtype=args.dtype, compile=args.compile, queries=args.queries,
                  depth=args.depth,
                  batch_tokens=args.batch_tokens, model="tiny" if args.tiny else "llama2-7b shape (random weights)",
                  texts=f"{Path(args.collection).name} queries and documents" if args.collection else "synthetic",
                  results=rows)
    write_report(args.output, report)
    print(" | ".join(f"{r['gpus']} GPU(s): {r['seconds']} s, {r['pairs_per_s']} pairs/s, x{r['speedup']}"
                     for r in rows))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
