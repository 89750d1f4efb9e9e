"""The onnxruntime backend on a CPU against torch float32: speed (as ratios in one run), fidelity on real weights,
and the CPU demo's wall time. The models are the packaged SmolLM2-135M checkpoints (repllama-smollm2,
rankllama-smollm2); every precision of :mod:`pyserini_llama.onnxrt.quantize` is measured.

Sections (each writes its own JSON, with the command that made it; ``benchmarks/render_readme.py`` renders
them into ``benchmarks/README.md``)::

    # corpus encoding and reranking speed: the same texts, batches and token budget for every backend,
    # interleaved rounds (absolute CPU times are noisy on a shared machine; their ratios much less so)
    python benchmarks/onnx_cpu.py speed --output benchmarks/results/onnx-cpu-speed.json
    # encoder fidelity: cosine of every vector to torch float32's, nDCG@10 of exact dense search
    python benchmarks/onnx_cpu.py encoder --collection cranfield --output benchmarks/results/onnx-cpu-cranfield.json
    python benchmarks/onnx_cpu.py encoder --collection beir-scifact --max-docs 1500 \\
        --output benchmarks/results/onnx-cpu-scifact.json
    # reranker fidelity: Kendall tau of each query's reranked top-k to torch float32's order, nDCG@10
    python benchmarks/onnx_cpu.py reranker --collection cranfield --depth 10 \\
        --output benchmarks/results/onnx-cpu-rerank.json
    # the README demo with the CPU defaults, timed end to end (a fresh export cache: the first run's cost)
    python benchmarks/onnx_cpu.py demo --output benchmarks/results/onnx-cpu-demo.json

``--max-docs N`` keeps a deterministic sub-corpus: every document judged for the split's queries, then the
corpus in file order until N documents; all the split's queries are evaluated on it.
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
from typing import Dict, List, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.onnxrt import packaged_weights_sha256  # noqa: E402
from pyserini_llama.onnxrt.quantize import PRECISIONS  # noqa: E402

ENCODER, RERANKER = "repllama-smollm2", "rankllama-smollm2"
BACKENDS = ["torch-fp32"] + [f"onnx-{p}" for p in PRECISIONS]  # torch-fp32 first: the reference


def machine() -> Dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "load_average": list(os.getloadavg())}


def versions() -> Dict:
    from pyserini_llama.onnxrt.cache import library_versions

    return library_versions()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def load_encoders(names: Sequence[str]):
    from pyserini_llama.encoders.onnx import OnnxEncoder
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    return {name: RepLlamaEncoder.from_checkpoint(ENCODER, device="cpu", dtype="float32")
            if name == "torch-fp32" else OnnxEncoder.from_checkpoint(ENCODER, precision=name[5:])
            for name in names}


def load_rerankers(names: Sequence[str]):
    from pyserini_llama.rerankers.onnx import OnnxReranker
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker

    return {name: RankLlamaReranker.from_checkpoint(RERANKER, device="cpu", dtype="float32")
            if name == "torch-fp32" else OnnxReranker.from_checkpoint(RERANKER, precision=name[5:])
            for name in names}


def collection(name: str, split: str, max_docs: int):
    """(documents, queries, qrels): the whole corpus, or the deterministic sub-corpus of ``--max-docs``."""
    from pyserini_llama.data.beir import iter_corpus
    from pyserini_llama.data.collections import resolve_collection

    folder = resolve_collection(name)
    queries, qrels = folder.queries(split), folder.qrels(split)
    docs = list(iter_corpus(folder.corpus_path))
    if max_docs and len(docs) > max_docs:
        judged = {d for q in qrels.values() for d in q}
        keep = {d.docid for d in docs if d.docid in judged}
        for d in docs:
            if len(keep) >= max_docs:
                break
            keep.add(d.docid)
        docs = [d for d in docs if d.docid in keep]
    return folder, docs, queries, qrels


def dense_run(doc_vectors: np.ndarray, docids: List[str], query_vectors: np.ndarray, qids: List[str], k: int = 100):
    scores = query_vectors @ doc_vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {q: [(docids[i], float(scores[r, i])) for i in top[r]] for r, q in enumerate(qids)}


# --- sections -----------------------------------------------------------------------------------------------

def speed(args) -> Dict:
    """Docs/s and pairs/s of every backend on the same inputs, in ``--rounds`` interleaved rounds."""
    folder, docs, queries, _ = collection(args.collection, args.split, 0)
    docs = docs[:args.docs]
    encoders, rerankers = load_encoders(args.backends), load_rerankers(args.backends)
    rows = encoders["torch-fp32"].passage_token_ids(docs)
    qids = list(queries)[:args.queries]
    reranker = rerankers["torch-fp32"]
    from pyserini_llama.rerankers.inputs import format_pair

    texts = [format_pair(queries[q], d.title, d.text, reranker.config)
             for i, q in enumerate(qids) for d in docs[i * args.depth % len(docs):][:args.depth]]
    pairs = reranker.encode_pairs([q for q, _ in texts], [p for _, p in texts])
    for name in args.backends:  # the same tokens everywhere: only the model runs differently
        assert encoders[name].passage_token_ids(docs[:8]) == rows[:8]
        assert rerankers[name].encode_pairs([q for q, _ in texts[:8]], [p for _, p in texts[:8]]) == pairs[:8]
    times: Dict[str, Dict[str, List[float]]] = {"encode": {n: [] for n in args.backends},
                                               "rerank": {n: [] for n in args.backends}}
    for name in args.backends:  # warm-up (first-call allocations, onnxruntime's lazy initialisation)
        encoders[name].encode_token_ids(rows[:16])
        rerankers[name].score_token_ids(pairs[:16])
    for _ in range(args.rounds):
        for name in args.backends:
            start = time.perf_counter()
            encoders[name].encode_token_ids(rows)
            times["encode"][name].append(time.perf_counter() - start)
            start = time.perf_counter()
            rerankers[name].score_token_ids(pairs)
            times["rerank"][name].append(time.perf_counter() - start)
    result = {"docs": len(rows), "doc_tokens": int(sum(map(len, rows))), "pairs": len(pairs),
              "pair_tokens": int(sum(map(len, pairs))), "rounds": args.rounds, "times": times}
    for task, count in (("encode", len(rows)), ("rerank", len(pairs))):
        base = float(np.median(times[task]["torch-fp32"]))
        result[task] = {name: {"per_s": count / float(np.median(t)), "speedup": base / float(np.median(t))}
                        for name, t in times[task].items()}
    return result


def encoder_fidelity(args) -> Dict:
    from pyserini_llama.eval import evaluate

    folder, docs, queries, qrels = collection(args.collection, args.split, args.max_docs)
    encoders = load_encoders(args.backends)
    qids, docids = list(queries), [d.docid for d in docs]
    rows = encoders["torch-fp32"].passage_token_ids(docs)
    query_rows = encoders["torch-fp32"].query_token_ids([queries[q] for q in qids])
    result = {"collection": str(folder.root), "split": args.split, "docs": len(docs), "queries": len(qids),
              "backends": {}}
    reference = None
    for name in args.backends:
        encoder = encoders[name]
        assert encoder.passage_token_ids(docs[:8]) == rows[:8]
        start = time.perf_counter()
        d, q = encoder.encode_token_ids(rows), encoder.encode_token_ids(query_rows)
        seconds = time.perf_counter() - start
        if reference is None:
            reference = d, q
        run = dense_run(d, docids, q, qids)
        row = {"seconds": seconds, **evaluate(run, qrels, ["nDCG@10", "R@100"])}
        dc, qc = cosines(d, reference[0]), cosines(q, reference[1])
        row.update(doc_cosine_mean=float(dc.mean()), doc_cosine_min=float(dc.min()),
                   query_cosine_mean=float(qc.mean()), query_cosine_min=float(qc.min()))
        result["backends"][name] = row
        print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)
    base = result["backends"]["torch-fp32"]["nDCG@10"]
    for row in result["backends"].values():
        row["nDCG@10_delta"] = row["nDCG@10"] - base
    return result


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two score lists over the same items (1: the same order)."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            x, y = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if x == 0 and y == 0:
                continue
            if x == 0:
                ties_a += 1
            elif y == 0:
                ties_b += 1
            elif x == y:
                concordant += 1
            else:
                discordant += 1
    denominator = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denominator) if denominator else 1.0


def reranker_fidelity(args) -> Dict:
    from pyserini_llama.eval import evaluate
    from pyserini_llama.stages import StageCache, bm25_stage

    folder, docs, queries, qrels = collection(args.collection, args.split, 0)
    with tempfile.TemporaryDirectory() as work:
        first = bm25_stage(StageCache(Path(work)), folder.corpus_path, queries, k=100).run
    by_id = {d.docid: d for d in docs}
    rerankers = load_rerankers(args.backends)
    result = {"collection": str(folder.root), "split": args.split, "queries": len(queries), "depth": args.depth,
              "first_stage": "BM25 (Pyserini, k1=0.9 b=0.4)", "backends": {}}
    result["bm25_nDCG@10"] = evaluate(first, qrels, ["nDCG@10"])["nDCG@10"]
    reference = None
    for name in args.backends:
        start = time.perf_counter()
        reranked = rerankers[name].rerank(queries, first, by_id, hits=args.depth, progress=False)
        seconds = time.perf_counter() - start
        scores = {q: dict(hits[:args.depth]) for q, hits in reranked.items()}
        if reference is None:
            reference = scores
        taus = [kendall_tau([reference[q][d] for d, _ in first[q][:args.depth]],
                            [scores[q][d] for d, _ in first[q][:args.depth]]) for q in first if first[q]]
        row = {"seconds": seconds, "pairs_per_s": sum(min(len(h), args.depth) for h in first.values()) / seconds,
               "kendall_tau_mean": float(np.mean(taus)), "kendall_tau_min": float(np.min(taus)),
               "identical_order": float(np.mean([t == 1.0 for t in taus])),
               **evaluate(reranked, qrels, ["nDCG@10"])}
        result["backends"][name] = row
        print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)
    base = result["backends"]["torch-fp32"]["nDCG@10"]
    for row in result["backends"].values():
        row["nDCG@10_delta"] = row["nDCG@10"] - base
    return result


def demo(args) -> Dict:
    """``python -m pyserini_llama.pipeline`` with no arguments on a CPU, timed, with a fresh export cache."""
    from pyserini_llama.paths import cache_dir

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        models = cache_dir() / "models"  # the converted SmolLM2 base, shared: converting it is not ONNX's cost
        if models.is_dir():
            (cache / "models").symlink_to(models)
        env = dict(os.environ, PYSERINI_LLAMA_CACHE=str(cache))
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "pyserini_llama.pipeline", "--device", "cpu",
                   "--work-dir", str(Path(tmp) / "work"), *args.pipeline_args]
        load_before = list(os.getloadavg())
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        table = json.loads((Path(tmp) / "work" / "pipeline.json").read_text())
    return {"seconds": seconds, "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
            "pipeline_args": args.pipeline_args, "stdout": proc.stdout.splitlines(),
            "pipeline": {k: v for k, v in table.items() if k != "runs"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["speed", "encoder", "reranker", "demo"])
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-docs", type=int, default=0, help="encoder: deterministic sub-corpus (0: all)")
    parser.add_argument("--docs", type=int, default=160, help="speed: documents encoded per round")
    parser.add_argument("--queries", type=int, default=12, help="speed: queries whose pairs are scored")
    parser.add_argument("--depth", type=int, default=10, help="speed/reranker: documents per query")
    parser.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds (median)")
    parser.add_argument("--pipeline-args", nargs=argparse.REMAINDER, default=[], help="demo: extra arguments")
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS,
                        help="what to measure (default: all); torch-fp32, the reference, is always included")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    args.backends = ["torch-fp32"] + [b for b in args.backends if b != "torch-fp32"]
    run = {"speed": speed, "encoder": encoder_fidelity, "reranker": reranker_fidelity, "demo": demo}[args.section]
    result = {"command": "python benchmarks/onnx_cpu.py " + " ".join(sys.argv[1:]), "section": args.section,
              "machine": machine(), "versions": versions(), "weights": packaged_weights_sha256(), **run(args)}
    result["machine"]["load_average_after"] = list(os.getloadavg())
    with atomic_write(args.output) as f:
        f.write(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
