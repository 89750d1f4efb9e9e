"""Pyserini and Java, in one place: Lucene indexing, BM25 search, and stored-document lookup.

Everything else in the package runs without Pyserini or Java (the GPU machine has neither); this module starts
the JVM (a Java >= 21, see :mod:`.java`) only when one of its functions is called.

Example::

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
from typing import Dict, Optional, Union

from .data.atomic import atomic_dir, atomic_write
from .data.beir import iter_corpus
from .data.trec import Run
from .errors import UserError
from .fingerprint import file_sha256

PathLike = Union[str, os.PathLike]


def is_lucene_index(path: PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (any(path.glob("segments_*")) or (path / "segments.gen").exists())


def java_environment() -> dict:
    """This process's environment with JAVA_HOME and PATH pointing at a Java >= 21 (set here too)."""
    from .java import ensure_java

    ensure_java()
    return dict(os.environ)


def open_searcher(index_dir: PathLike):
    """Pyserini's ``LuceneSearcher`` over ``index_dir`` (a UserError when it is not a Lucene index)."""
    if not is_lucene_index(index_dir):
        raise UserError(f"{index_dir}: not a Lucene index")
    java_environment()
    from pyserini.search.lucene import LuceneSearcher

    return LuceneSearcher(str(index_dir))


def convert_to_jsoncollection(corpus: PathLike, output: PathLike, overwrite: bool = True) -> int:
    """Write a BEIR corpus as Pyserini JsonCollection lines ``{"id", "contents"}`` (title + text in one field)."""
    n = 0
    with atomic_write(output, overwrite=overwrite) as f:
        for doc in iter_corpus(corpus):
            f.write(json.dumps({"id": doc.docid, "contents": doc.contents}, ensure_ascii=False) + "\n")
            n += 1
    return n


SOURCE_NAME = "pyserini_llama.source.json"  # inside an index we built: the corpus it was built from
# What a Lucene index folder holds (segments, per-segment files, the lock, our source record): a folder with
# anything else is someone's and is never replaced.
LUCENE_FILES = ("segments_*", "segments.gen", "write.lock", "_*", SOURCE_NAME)


def index_source(corpus: PathLike) -> dict:
    return {"corpus_sha256": file_sha256(corpus), "lucene_major": lucene_major_version()}


def lucene_major_version() -> Optional[int]:
    """The Lucene major version of the installed Pyserini's Anserini (9 for pyserini 1.x, 10 for 2.x): an index
    written by a newer Lucene cannot be read by an older one."""
    import importlib.metadata as md

    try:
        major = int(md.version("pyserini").split(".")[0])
    except (md.PackageNotFoundError, ValueError):
        return None
    return 10 if major >= 2 else 9


def build_lucene_index(corpus: PathLike, index_dir: PathLike, threads: int = 2, overwrite: bool = False,
                       quiet: bool = True) -> Path:
    """Index a BEIR (or JsonCollection) corpus with ``python -m pyserini.index.lucene`` (raw docs stored)."""
    index_dir = Path(index_dir)
    env = java_environment()
    source = index_source(corpus)
    with tempfile.TemporaryDirectory(prefix="jsoncollection-") as tmp, \
            atomic_dir(index_dir, overwrite, owns=LUCENE_FILES) as out:
        convert_to_jsoncollection(corpus, Path(tmp) / "docs.jsonl")
        cmd = [sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
               "--input", tmp, "--index", str(out), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(threads), "--storePositions", "--storeDocvectors", "--storeRaw"]
        proc = subprocess.run(cmd, env=env, capture_output=quiet, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise UserError(f"Lucene indexing failed (exit {proc.returncode}): {' '.join(tail)}")
        (out / SOURCE_NAME).write_text(json.dumps(source) + "\n")
    return index_dir


def ensure_lucene_index(corpus: PathLike, index_dir: PathLike, threads: int = 2, overwrite: bool = False) -> Path:
    """Reuse an index built from exactly this corpus (by its bytes) with this Lucene, else build it.

    An existing folder that this project did not build from that corpus is never reused silently: it is
    rebuilt when it is ours (or with ``overwrite``), refused otherwise.
    """
    index_dir = Path(index_dir)
    if index_dir.exists() and not index_dir.is_dir():
        raise UserError(f"{index_dir}: is a file; give the path of a folder to write")
    if index_dir.exists() and not overwrite:
        recorded = None
        if (index_dir / SOURCE_NAME).is_file():
            try:
                recorded = json.loads((index_dir / SOURCE_NAME).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                recorded = {}
        if recorded is None:
            raise UserError(f"{index_dir} already exists and was not built by this program; give another index "
                            f"folder, or pass --overwrite to rebuild it")
        if recorded == index_source(corpus) and is_lucene_index(index_dir):
            return index_dir
    return build_lucene_index(corpus, index_dir, threads=threads, overwrite=True)


def bm25_search(index_dir: PathLike, queries: Dict[str, str], k: int = 1000, k1: float = 0.9,
                b: float = 0.4, threads: int = 2) -> Run:
    """BM25 top-``k`` per query with Pyserini's LuceneSearcher (Python API, same scores as the CLI)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    searcher = open_searcher(index_dir)
    searcher.set_bm25(k1, b)
    qids = list(queries)
    hits = searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)
    return {qid: [(h.docid, float(h.score)) for h in hits.get(qid, [])] for qid in qids}
