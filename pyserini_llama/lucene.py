"""Pyserini and Java, in one place: Lucene indexing, BM25 search, and stored-document lookup.

Everything else in the package runs without Pyserini or Java (the GPU machine has neither); this module starts
the JVM (a Java >= 21, see :mod:`.java`) only when one of its functions is called.

Example::

    build_lucene_index("../shared/ir/beir-scifact/corpus.jsonl", "indexes/scifact-lucene")
    run = bm25_search("indexes/scifact-lucene", queries, k=1000)   # k1=0.9, b=0.4 (Anserini defaults)
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from .data.atomic import atomic_dir, atomic_write
from .data.beir import iter_corpus
from .data.trec import Run
from .errors import UserError
from .fingerprint import file_sha256

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)


def is_lucene_index(path: PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (any(path.glob("segments_*")) or (path / "segments.gen").exists())


# --- Lucene versions: a 2.x index (Lucene 10) cannot be read by Pyserini 1.x (Lucene 9), and caches are shared --

def installed_lucene_version() -> Optional[Tuple[int, int, int]]:
    """The Lucene version inside the installed Pyserini's Anserini jar (9.9.1 for pyserini 1.6, 10.4.0 for 2.3),
    read from the jar's ``org/apache/lucene/util/Version`` class without starting Java; None without Pyserini."""
    global _installed
    if _installed is None:
        _installed = (_read_installed_lucene_version(),)
    return _installed[0]


_installed: Optional[tuple] = None


def _read_installed_lucene_version() -> Optional[Tuple[int, int, int]]:
    import importlib.util
    import re
    import zipfile

    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        return None
    jars = sorted(Path(list(spec.submodule_search_locations)[0], "resources", "jars").glob("anserini-*.jar"))
    try:
        with zipfile.ZipFile(jars[-1]) as jar:
            data = jar.read("org/apache/lucene/util/Version.class")
    except (IndexError, KeyError, OSError, zipfile.BadZipFile):
        return None
    versions = [tuple(map(int, v)) for v in re.findall(rb"LUCENE_(\d+)_(\d+)_(\d+)", data)]
    return max(versions) if versions else None  # type: ignore[return-value]


def index_lucene_versions(index_dir: PathLike) -> Optional[Tuple[int, int]]:
    """``(written, created)``: the Lucene major version that wrote an index's latest commit and the one that
    created the index, read from its newest ``segments_N`` file; None when there is none or it is unreadable.

    The file starts with a codec header (magic, the name "segments", a format number), the index id (16 bytes)
    and the commit suffix, then the writer's version (three vInts) and the creator's major version (a vInt).
    """
    segments = [p for p in Path(index_dir).glob("segments_*") if p.name != "segments.gen"]
    if not segments:
        return None
    newest = max(segments, key=_generation)
    try:
        data = newest.read_bytes()[:256]
        if data[:4] != b"\x3f\xd7\x6c\x17":
            return None
        pos = 4
        length, pos = _vint(data, pos)
        pos += length + 4 + 16  # codec name, format, index id
        pos += 1 + data[pos]  # commit suffix (one length byte)
        written, pos = _vint(data, pos)
        for _ in range(2):  # minor, bugfix
            _, pos = _vint(data, pos)
        created, pos = _vint(data, pos)
    except IndexError:
        return None
    return written, created


def _generation(path: Path) -> int:
    try:
        return int(path.name[len("segments_"):], 36)
    except ValueError:
        return -1


def _vint(data: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def unreadable_reason(index_dir: PathLike) -> Optional[str]:
    """Why the installed Pyserini cannot read this Lucene index (a Lucene reads its own and the previous major
    version), or None when it can (or when either version is unknown: Lucene itself then decides)."""
    installed, versions = installed_lucene_version(), index_lucene_versions(index_dir)
    if installed is None or versions is None:
        return None
    written, created = versions
    major = installed[0]
    if written <= major and created >= major - 1:
        return None
    what = f"written by Lucene {written}" if written > major else f"created by Lucene {created}"
    return (f"it was {what}, and the installed Pyserini {_pyserini_version()} has Lucene "
            f"{'.'.join(map(str, installed))}, which reads only Lucene {major - 1} and {major} indexes")


def _pyserini_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("pyserini")
    except md.PackageNotFoundError:
        return "?"


def java_environment() -> dict:
    """This process's environment with JAVA_HOME and PATH pointing at a Java >= 21 (set here too)."""
    from .java import ensure_java

    ensure_java()
    return dict(os.environ)


def open_searcher(index_dir: PathLike):
    """Pyserini's ``LuceneSearcher`` over ``index_dir`` (a UserError when it is not a Lucene index, or one of a
    Lucene version the installed Pyserini cannot read)."""
    if not is_lucene_index(index_dir):
        raise UserError(f"{index_dir}: not a Lucene index")
    reason = unreadable_reason(index_dir)
    if reason:
        raise UserError(f"{index_dir}: cannot be read: {reason}; rebuild it with this Pyserini (or use the "
                        f"Pyserini that built it)")
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
    """What an index we build records about itself: the corpus bytes and the Lucene major version writing it."""
    installed = installed_lucene_version()
    return {"corpus_sha256": file_sha256(corpus), "lucene_major": installed[0] if installed else None}


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
    """Reuse an index built from exactly this corpus (by its bytes) that the installed Lucene can read, else
    build it.

    An existing folder that this project did not build from that corpus is never reused silently: it is
    rebuilt when it is ours (or with ``overwrite``), refused otherwise. An index of ours that the installed
    Pyserini cannot read (written by a newer Lucene, e.g. by Pyserini 2.x into a shared folder) is rebuilt with a
    warning saying so; one written by the previous Lucene major version is read as it is.
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
            raise UserError(f"{index_dir} already exists and was not built from this corpus by this program; pass "
                            f"--overwrite to rebuild it, or another index folder")
        reason = unreadable_reason(index_dir) if is_lucene_index(index_dir) else "it is incomplete"
        if reason:
            log.warning("rebuilding %s: %s", index_dir, reason)
        elif isinstance(recorded, dict) and recorded.get("corpus_sha256") == file_sha256(corpus):
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
