"""BM25 through Pyserini itself: JsonCollection conversion, Lucene indexing and search.

Example::

    from pyserini_llama.bm25 import build_lucene_index, bm25_search
    build_lucene_index("../shared/ir/beir-scifact/corpus.jsonl", "indexes/scifact-lucene")
    run = bm25_search("indexes/scifact-lucene", queries, k=1000)   # k1=0.9, b=0.4 (Anserini defaults)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Union

from .data.atomic import atomic_dir, atomic_write
from .data.beir import iter_corpus
from .data.trec import Run
from .errors import UserError

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


def remove_index(index_dir: PathLike) -> None:
    shutil.rmtree(index_dir, ignore_errors=True)
