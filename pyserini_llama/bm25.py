"""BM25 through Pyserini itself: JsonCollection conversion, Lucene indexing and search.

Command line (indexes the collection once under ``--index``, then searches and evaluates)::

    python -m pyserini_llama.bm25 --collection beir-scifact --split test --output runs/scifact-bm25.trec

Python::

    from pyserini_llama.bm25 import build_lucene_index, bm25_search
    build_lucene_index("../shared/ir/beir-scifact/corpus.jsonl", "indexes/scifact-lucene")
    run = bm25_search("indexes/scifact-lucene", queries, k=1000)   # k1=0.9, b=0.4 (Anserini defaults)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

from .data.atomic import atomic_dir, atomic_write
from .data.beir import iter_corpus
from .data.trec import Run
from .errors import UserError, run_cli

PathLike = Union[str, os.PathLike]


def convert_to_jsoncollection(corpus: PathLike, output: PathLike, overwrite: bool = True) -> int:
    """Write a BEIR corpus as Pyserini JsonCollection lines ``{"id", "contents"}`` (title + text in one field)."""
    n = 0
    with atomic_write(output, overwrite=overwrite) as f:
        for doc in iter_corpus(corpus):
            f.write(json.dumps({"id": doc.docid, "contents": doc.contents}, ensure_ascii=False) + "\n")
            n += 1
    return n


def _java_env() -> dict:
    from .java import ensure_java

    ensure_java()
    return dict(os.environ)


def build_lucene_index(corpus: PathLike, index_dir: PathLike, threads: int = 2, overwrite: bool = False,
                       quiet: bool = True) -> Path:
    """Index a BEIR (or JsonCollection) corpus with ``python -m pyserini.index.lucene`` (raw docs stored)."""
    index_dir = Path(index_dir)
    env = _java_env()
    with tempfile.TemporaryDirectory(prefix="jsoncollection-") as tmp, atomic_dir(index_dir, overwrite) as out:
        convert_to_jsoncollection(corpus, Path(tmp) / "docs.jsonl")
        cmd = [sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
               "--input", tmp, "--index", str(out), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(threads), "--storePositions", "--storeDocvectors", "--storeRaw"]
        proc = subprocess.run(cmd, env=env, capture_output=quiet, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise UserError(f"Lucene indexing failed (exit {proc.returncode}): {' '.join(tail)}")
    return index_dir


def bm25_search(index_dir: PathLike, queries: Dict[str, str], k: int = 1000, k1: float = 0.9,
                b: float = 0.4, threads: int = 2) -> Run:
    """BM25 top-``k`` per query with Pyserini's LuceneSearcher (Python API, same scores as the CLI)."""
    if k <= 0:
        raise UserError(f"--hits must be positive, got {k}")
    _java_env()
    from pyserini.search.lucene import LuceneSearcher

    if not Path(index_dir, "segments.gen").exists() and not any(Path(index_dir).glob("segments_*")):
        raise UserError(f"{index_dir}: not a Lucene index")
    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(k1, b)
    qids = list(queries)
    hits = searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)
    return {qid: [(h.docid, float(h.score)) for h in hits.get(qid, [])] for qid in qids}


def lucene_doc_text(searcher, docid: str) -> str:
    """The stored raw text of a document (JsonCollection ``contents``), or KeyError."""
    doc = searcher.doc(docid)
    if doc is None:
        raise KeyError(docid)
    raw = doc.raw()
    try:
        return json.loads(raw).get("contents", raw)
    except (json.JSONDecodeError, AttributeError):
        return raw


def ensure_lucene_index(corpus: PathLike, index_dir: PathLike, threads: int = 2) -> Path:
    """Reuse a finished index (atomic builds mean an existing folder is complete), else build it."""
    index_dir = Path(index_dir)
    if index_dir.is_dir() and any(index_dir.glob("segments_*")):
        return index_dir
    return build_lucene_index(corpus, index_dir, threads=threads, overwrite=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    import time

    from .data.collections import resolve_collection
    from .data.trec import write_run
    from .eval import evaluate, format_table

    parser = argparse.ArgumentParser(prog="python -m pyserini_llama.bm25",
                                     description="BM25 (Pyserini/Lucene) over a BEIR collection, with evaluation.")
    parser.add_argument("--collection", default="beir-scifact", help="name or BEIR folder (default: beir-scifact)")
    parser.add_argument("--data-dir", help="where collections live (default: ../shared/ir when present)")
    parser.add_argument("--split", default="test", help="queries/qrels split (default: test)")
    parser.add_argument("--index", help="Lucene index folder (default: indexes/<collection>-lucene)")
    parser.add_argument("--output", help="TREC run to write (default: runs/<collection>-<split>-bm25.trec)")
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--k1", type=float, default=0.9)
    parser.add_argument("--b", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run file")
    args = parser.parse_args(argv)
    if args.hits <= 0:
        raise UserError(f"--hits must be positive, got {args.hits}")

    collection = resolve_collection(args.collection, args.data_dir)
    name = collection.root.name
    index = Path(args.index or f"indexes/{name}-lucene")
    output = Path(args.output or f"runs/{name}-{args.split}-bm25.trec")
    from .data.atomic import check_output_path
    check_output_path(output, args.overwrite)
    queries = collection.queries(args.split)
    t0 = time.perf_counter()
    ensure_lucene_index(collection.corpus_path, index, threads=args.threads)
    t1 = time.perf_counter()
    run = bm25_search(index, queries, k=args.hits, k1=args.k1, b=args.b, threads=args.threads)
    t2 = time.perf_counter()
    write_run(run, output, tag="bm25", overwrite=True)
    scores = evaluate(run, collection.qrels(args.split), ("nDCG@10", "R@100", "R@1000", "MRR@10", "MAP"))
    print(f"{name} {args.split}: {len(queries)} queries, index {t1 - t0:.1f}s, search {t2 - t1:.1f}s -> {output}")
    print(format_table({f"bm25 (k1={args.k1}, b={args.b})": scores}))
    return 0


if __name__ == "__main__":
    run_cli(main)
