"""The retrieval stages as functions: BM25 -> dense retrieval -> fusion -> reranking -> evaluation.

The pipeline CLI, the regressions and ``scripts/evaluate_small.py`` all call these. Each stage's run is cached
in a work folder under a name derived from everything that determines it (the corpus bytes, the queries, the
model's weights and settings, the depth, the inputs' own keys), so another split, another model with the same
folder name or another collection in the same work folder never reuses a run made for something else.

Example::

    cache = StageCache(Path("runs/scifact"))
    bm25 = bm25_stage(cache, corpus, queries, k=1000)
    dense = dense_stage(cache, "repllama-smollm2", corpus, queries, k=1000, device="cuda")
    rrf = rrf_stage(cache, [bm25, dense], k=1000)
    reranked = rerank_stage(cache, "rankllama-smollm2", rrf, queries, corpus, depth=100, device="cuda")
    table = evaluate_stages([bm25, dense, rrf, reranked], qrels, list(queries))
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .data.atomic import atomic_write, check_writable_folder
from .data.trec import Run, load_run, write_run
from .fingerprint import file_sha256, fingerprint

METRICS = ("nDCG@10", "R@100", "MRR@10")


@dataclass
class Stage:
    name: str  # what a reader sees in the table, e.g. "RankLLaMA on BM25+RepLLaMA (RRF) top-100"
    run: Run
    seconds: float
    cached: bool
    path: Path
    key: Dict = field(repr=False, default_factory=dict)  # what determines the run (inputs' keys nested)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "stage"


class StageCache:
    """Runs of a work folder, each reused only when its key (everything that determines it) is the same.

    ``overwrite`` recomputes every stage (and replaces the cached files).
    """

    def __init__(self, work: Path, overwrite: bool = False):
        self.work = check_writable_folder(work)
        self.overwrite = overwrite

    def path(self, kind: str, key: Dict) -> Path:
        return self.work / f"{kind}.{fingerprint(key)[:16]}.trec"

    def stage(self, name: str, kind: str, key: Dict, compute: Callable[[], Run]) -> Stage:
        path = self.path(kind, key)
        meta = path.with_name(path.name + ".json")
        if path.exists() and meta.exists() and not self.overwrite:
            try:
                recorded = json.loads(meta.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                recorded = {}
            if recorded.get("key") == json.loads(json.dumps(key, default=str)):
                return Stage(name, load_run(path, allow_empty=True), recorded["seconds"], True, path, key)
        start = time.perf_counter()
        run = compute()
        seconds = time.perf_counter() - start
        write_run(run, path, tag=slug(kind))
        # what later stages use is what the file holds (scores to 6 decimals), so a rerun that reads the cached
        # file computes exactly what this run computes from it: cached = fresh, byte for byte
        run = load_run(path, allow_empty=True)
        with atomic_write(meta) as f:
            f.write(json.dumps({"stage": name, "seconds": seconds, "key": key}, indent=1, default=str) + "\n")
        return Stage(name, run, seconds, False, path, key)


def queries_key(queries: Dict[str, str]) -> str:
    return fingerprint(queries)


def model_key(checkpoint: str) -> str:
    """The identity of a checkpoint's weights and settings, without loading it."""
    from .models.load import checkpoint_identity, resolve_checkpoint
    from .models.config import CheckpointConfig

    folder, config = resolve_checkpoint(checkpoint)
    return checkpoint_identity(folder, config or CheckpointConfig())


# --- first stages ----------------------------------------------------------------------------------------------

def bm25_stage(cache: StageCache, corpus: Path, queries: Dict[str, str], k: int = 1000,
               index_dir: Optional[Path] = None, name: str = "BM25") -> Stage:
    """BM25 (Pyserini's Lucene, k1=0.9, b=0.4); the index is built in the work folder (or ``index_dir``)."""
    from .lucene import bm25_search, ensure_lucene_index, index_source

    key = {"stage": "bm25", "source": index_source(corpus), "queries": queries_key(queries), "k": k}
    index = index_dir or cache.work / f"lucene-index.{file_sha256(corpus)[:16]}"

    def compute() -> Run:
        ensure_lucene_index(corpus, index, overwrite=cache.overwrite and index_dir is None)
        return bm25_search(index, queries, k=k)

    return cache.stage(name, "bm25", key, compute)


def backend_key(checkpoint: str, task: str, backend: str, device: str, precision: Optional[str]) -> Dict:
    """What a run owes to the inference backend: nothing for torch (older keys stay valid), the graph's
    precision for onnxruntime (int8 vectors and scores differ from float32 ones)."""
    from .onnxrt import default_precision, resolve_backend

    if resolve_backend(backend, device) != "onnx":
        return {}
    return {"backend": "onnx", "precision": precision or default_precision(checkpoint, task)}


def dense_stage(cache: StageCache, checkpoint: str, corpus: Path, queries: Dict[str, str], k: int = 1000,
                device: str = "cpu", index_dir: Optional[Path] = None, candidates: Optional[Run] = None,
                passage_max_length: Optional[int] = None, name: str = "RepLLaMA", backend: str = "torch",
                precision: Optional[str] = None) -> Stage:
    """Dense retrieval with a RepLLaMA/LLaRA checkpoint over the whole corpus (an exact flat index, built in the
    work folder unless ``index_dir`` is an index of this corpus made with this checkpoint), run by ``backend``
    (torch, onnx or auto: see :func:`~pyserini_llama.encoders.onnx.encoder_for_backend`).

    With ``candidates`` only those documents are encoded and each query's candidates are re-scored by the dense
    model: the same scores as a full search, over a smaller candidate set.
    """
    if index_dir is not None:  # a given index is checked (docids, NaN vectors) before any model loads
        from .dense.index import check_index

        check_index(index_dir)
    key = {"stage": "dense", "model": model_key(checkpoint), "corpus": file_sha256(corpus),
           "queries": queries_key(queries), "k": k, "passage_max_length": passage_max_length,
           "index": str(index_dir) if index_dir else None,
           "candidates": fingerprint(candidates) if candidates is not None else None,
           **backend_key(checkpoint, "embedding", backend, device, precision)}

    def compute() -> Run:
        from .dense import DenseSearcher
        from .encoders.onnx import encoder_for_backend

        encoder = encoder_for_backend(checkpoint, backend, device, precision)
        if candidates is not None:
            return rescore(encoder, corpus, queries, candidates, passage_max_length)
        index = index_dir or ensure_dense_index(cache, encoder, corpus, passage_max_length)
        return DenseSearcher(index, encoder, device).search(queries, k=k)

    return cache.stage(name, "dense", key, compute)


def ensure_dense_index(cache: StageCache, encoder, corpus: Path, passage_max_length: Optional[int]) -> Path:
    """The work folder's index of ``corpus`` by ``encoder``: reused when its recorded inputs match."""
    from .dense.index import build_index, build_manifest, read_index_info

    max_length = passage_max_length or encoder.config.passage_max_length
    manifest = build_manifest(encoder, corpus, max_length, 20_000)
    index = cache.work / f"dense-index.{fingerprint(manifest)[:16]}"
    info = read_index_info(index) if index.is_dir() else None
    if info is not None and not cache.overwrite and {k: info.get(k) for k in manifest} == manifest:
        return index
    return build_index(encoder, corpus, index, overwrite=True, max_length=max_length)


def rescore(encoder, corpus: Path, queries: Dict[str, str], candidates: Run,
            passage_max_length: Optional[int] = None) -> Run:
    """Each query's candidate documents, scored by the dense model, best first."""
    from .data.documents import load_corpus_subset

    wanted = sorted({d for qid in queries for d, _ in candidates.get(qid, [])})
    docs = load_corpus_subset(corpus, set(wanted))
    vectors = dict(zip(wanted, encoder.encode_passages([docs[d] for d in wanted], max_length=passage_max_length,
                                                       progress=True)))
    qids = list(queries)
    run: Run = {}
    for qid, qv in zip(qids, encoder.encode_queries([queries[q] for q in qids])):
        scored = [(d, float(qv @ vectors[d])) for d, _ in candidates.get(qid, [])]
        run[qid] = sorted(scored, key=lambda h: (-h[1], h[0]))
    return run


# --- fusion ----------------------------------------------------------------------------------------------------

def rrf_stage(cache: StageCache, inputs: Sequence[Stage], k: int = 1000, rrf_k: int = 60,
              name: Optional[str] = None) -> Stage:
    """Reciprocal rank fusion (Pyserini's formula) of the inputs' runs."""
    from .fusion import reciprocal_rank_fusion

    key = {"stage": "rrf", "inputs": [s.key for s in inputs], "k": k, "rrf_k": rrf_k}
    return cache.stage(name or "+".join(s.name for s in inputs) + " (RRF)", "rrf", key,
                       lambda: reciprocal_rank_fusion([s.run for s in inputs], rrf_k=rrf_k, depth=k, k=k))


def hybrid_stage(cache: StageCache, dense: Stage, sparse: Stage, alpha: float = 1.0, normalization: bool = True,
                 k: int = 1000, name: Optional[str] = None) -> Stage:
    """Pyserini's weighted hybrid: ``alpha * sparse + dense`` (min-max centred with ``normalization``)."""
    from .fusion import hybrid_fusion

    key = {"stage": "hybrid", "dense": dense.key, "sparse": sparse.key, "alpha": alpha,
           "normalization": normalization, "k": k}
    return cache.stage(name or f"{sparse.name}+{dense.name} (hybrid)", "hybrid", key,
                       lambda: hybrid_fusion(dense.run, sparse.run, alpha=alpha, normalization=normalization, k=k))


# --- reranking -------------------------------------------------------------------------------------------------

def rerank_stage(cache: StageCache, checkpoint: str, source: Stage, queries: Dict[str, str], corpus: Path,
                 depth: int = 100, device: str = "cpu", batch_tokens: Optional[int] = None,
                 name: Optional[str] = None, backend: str = "torch", precision: Optional[str] = None) -> Stage:
    """RankLLaMA over the top ``depth`` of ``source`` for ``queries``; the rest keep their order below. Run by
    ``backend`` (torch, onnx or auto: see :func:`~pyserini_llama.rerankers.onnx.reranker_for_backend`)."""
    run = {qid: source.run.get(qid, []) for qid in queries}
    key = {"stage": "rerank", "model": model_key(checkpoint), "source": source.key, "corpus": file_sha256(corpus),
           "queries": queries_key(queries), "depth": depth,
           **backend_key(checkpoint, "score", backend, device, precision)}

    def compute() -> Run:
        from .data.documents import load_corpus_subset
        from .rerankers.onnx import reranker_for_backend

        docs = load_corpus_subset(corpus, {d for hits in run.values() for d, _ in hits[:depth]})
        reranker = reranker_for_backend(checkpoint, backend, device, precision, batch_tokens=batch_tokens)
        return reranker.rerank(queries, run, docs, hits=depth)

    return cache.stage(name or f"RankLLaMA on {source.name} top-{depth}", "rerank", key, compute)


# --- evaluation ------------------------------------------------------------------------------------------------

def evaluate_stages(stages: Sequence[Stage], qrels, qids: Sequence[str],
                    metrics: Sequence[str] = METRICS) -> Dict[str, Dict]:
    """``{stage name: {metric: value, "seconds": ..., "cached": ...}}`` over the same queries for every stage."""
    from .eval import evaluate

    judged = {q: qrels[q] for q in qids if q in qrels}
    table: Dict[str, Dict] = {}
    for stage in stages:
        run = {q: stage.run.get(q, []) for q in qids}
        table[stage.name] = dict(evaluate(run, judged, metrics), seconds=stage.seconds, cached=stage.cached)
    return table
