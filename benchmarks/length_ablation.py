"""Input-length ablation (the RankLLaMA paper's study): rerank one run with maximum passage lengths of
128/256/512/1024 tokens and plot effectiveness and time against length.

Example::

    # on a GPU with a real checkpoint, reranking a BM25 run made beforehand (pipeline or Pyserini)
    python benchmarks/length_ablation.py --collection beir-scifact --run runs/beir-scifact/bm25.k1000.trec \\
        --reranker rankllama --hits 100 --output-dir results/length-ablation
    # CPU smoke run with a tiny random model
    python benchmarks/length_ablation.py --collection beir-scifact --run RUN --tiny --max-queries 5 --hits 10 \\
        --output-dir /tmp/ablation

Writes ``length_ablation.json`` (nDCG@10, MRR@10, seconds, pairs/s per length), ``length_ablation.png`` and the
reranked runs into ``--output-dir``. Where ir_measures is not installed, metrics are left empty; rerun with
``--evaluate-only`` where it is, to fill them in and draw the plot.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.data.trec import load_run, truncate_run, write_run  # noqa: E402
from pyserini_llama.cli import run_cli
from pyserini_llama.errors import UserError  # noqa: E402

RESULTS = "length_ablation.json"
METRICS = ("nDCG@10", "MRR@10")


def run_path(out: Path, length: int) -> Path:
    return out / f"rerank.p{length}.trec"


def evaluate_rows(rows: List[Dict], qrels, out: Path) -> None:
    from pyserini_llama.eval import evaluate

    for row in rows:
        run = load_run(run_path(out, row["max_length"]))
        row.update(evaluate(run, {q: qrels[q] for q in run if q in qrels}, METRICS))


def plot(rows: List[Dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [r["max_length"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, marker in zip(METRICS, "os"):
        ax.plot(lengths, [r[metric] for r in rows], marker=marker, label=metric)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("maximum passage length (tokens)")
    ax.set_ylabel("effectiveness")
    ax2 = ax.twinx()
    ax2.plot(lengths, [r["seconds"] for r in rows], "k--", marker="^", label="time (s)")
    ax2.set_ylabel("reranking time (s)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def tiny_reranker(folder: Path, device: str):
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker
    from pyserini_llama.testing import build_tiny_llama

    return RankLlamaReranker.from_checkpoint(str(build_tiny_llama(folder, task="sequence-classification")),
                                             device=device)


def ablate(args, out: Path, folder) -> List[Dict]:
    from pyserini_llama.data.documents import load_corpus_subset
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker
    from pyserini_llama.runtime import resolve_device

    queries = folder.queries(args.split)
    run = truncate_run(load_run(args.run), args.hits)
    qids = [q for q in queries if q in run][:args.max_queries or None]
    if not qids:
        raise UserError(f"{args.run}: no query of the run is in the {args.split} topics")
    run = {q: run[q] for q in qids}
    docs = load_corpus_subset(folder.corpus_path, {d for hits in run.values() for d, _ in hits})
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        reranker = tiny_reranker(Path(tmp), device) if args.tiny else \
            RankLlamaReranker.from_checkpoint(args.reranker, device=device, batch_tokens=args.batch_tokens)
    rows = []
    for length in args.lengths:
        reranker.passage_max_length = length
        start = time.perf_counter()
        reranked = reranker.rerank(queries, run, docs, hits=args.hits)
        seconds = time.perf_counter() - start
        write_run(reranked, run_path(out, length), tag=f"rankllama-p{length}")
        pairs = sum(len(h) for h in run.values())
        rows.append(dict(max_length=length, seconds=seconds, pairs=pairs, pairs_per_s=pairs / seconds,
                         **{m: None for m in METRICS}))
        print(f"p{length}: {pairs} pairs in {seconds:.1f}s", flush=True)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="beir-scifact", help="collection name or BEIR folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", help="where collections live")
    parser.add_argument("--run", help="first-stage run to rerank (required unless --evaluate-only)")
    parser.add_argument("--reranker", default="rankllama", help="checkpoint name or folder")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model instead (CPU smoke run)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--hits", type=int, default=100, help="documents reranked per query")
    parser.add_argument("--max-queries", type=int, default=0, help="first N queries of the run (0 = all)")
    parser.add_argument("--batch-tokens", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--evaluate-only", action="store_true",
                        help="evaluate the runs of an earlier ablation in --output-dir and plot")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    from pyserini_llama.data.collections import resolve_collection

    if args.hits <= 0 or any(n <= 3 for n in args.lengths):
        raise UserError("--hits must be positive and every length above 3")
    out = Path(args.output_dir)
    folder = resolve_collection(args.collection, args.data_dir)
    if args.evaluate_only:
        result = json.loads((out / RESULTS).read_text())
        rows = result["rows"]
    else:
        if not args.run:
            raise UserError("--run is required (a first-stage TREC run, e.g. the pipeline's bm25 run)")
        if (out / RESULTS).exists() and not args.overwrite:
            raise UserError(f"{out / RESULTS} already exists; pass --overwrite to replace it")
        out.mkdir(parents=True, exist_ok=True)
        rows = ablate(args, out, folder)
        result = dict(collection=str(folder.root), split=args.split, run=args.run, hits=args.hits,
                      reranker="tiny-random" if args.tiny else args.reranker, rows=rows)
    has_eval = importlib.util.find_spec("ir_measures") is not None
    if has_eval:
        evaluate_rows(rows, folder.qrels(args.split), out)
    with atomic_write(out / RESULTS) as f:
        f.write(json.dumps(result, indent=2) + "\n")
    print(f"{'length':>7} {'seconds':>8} {'pairs/s':>8} " + " ".join(f"{m:>8}" for m in METRICS))
    for r in rows:
        cells = " ".join(f"{r[m]:>8.4f}" if r[m] is not None else f"{'-':>8}" for m in METRICS)
        print(f"{r['max_length']:>7} {r['seconds']:>8.1f} {r['pairs_per_s']:>8.1f} {cells}")
    if has_eval:
        title = f"{folder.root.name} {args.split}: reranking top-{result['hits']}"
        plot(rows, out / "length_ablation.png", title)
        print(f"wrote {out / RESULTS} and {out / 'length_ablation.png'}")
    else:
        print(f"wrote {out / RESULTS}; ir_measures is not installed here: rerun with --evaluate-only "
              f"where it is to add metrics and the plot")
    return 0


if __name__ == "__main__":
    run_cli(main)
