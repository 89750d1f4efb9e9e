"""TREC topics, qrels and run files (TREC six-column and MS MARCO three-column formats)."""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Tuple, Union

from ..errors import DataError
from .atomic import atomic_write
from .beir import check_id, parse_grade
from .jsonl import iter_lines

PathLike = Union[str, os.PathLike]
Run = Dict[str, List[Tuple[str, float]]]  # qid -> [(docid, score)], best first


def load_topics(path: PathLike) -> Dict[str, str]:
    """Read ``qid<TAB>query`` topics (Anserini's ``.tsv``/``.txt``, optionally gzipped).

    As Anserini's TSV topic reader does, the query is the second column; further columns are ignored.
    """
    topics: Dict[str, str] = {}
    for lineno, line in iter_lines(path):
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(path, "expected 'qid<TAB>query text'", lineno)
        qid, text = parts[0].strip(), parts[1].strip()
        if not qid or not text:
            raise DataError(path, "empty query id or text", lineno)
        check_id(qid, path, lineno, "query id")
        if qid in topics:
            raise DataError(path, f"duplicate query id {qid!r}", lineno)
        topics[qid] = text
    if not topics:
        raise DataError(path, "no topics")
    return topics


def load_trec_qrels(path: PathLike) -> Dict[str, Dict[str, int]]:
    qrels: Dict[str, Dict[str, int]] = {}
    for lineno, line in iter_lines(path):
        parts = line.split()
        if len(parts) != 4:
            raise DataError(path, f"expected 4 columns 'qid iter docid rel', got {len(parts)}", lineno)
        rel = parse_grade(parts[3], path, lineno)
        qrels.setdefault(parts[0], {})[parts[2]] = rel
    if not qrels:
        raise DataError(path, "qrels file has no judgments")
    return qrels


def load_run(path: PathLike, allow_empty: bool = False) -> Run:
    """Read a TREC (``qid Q0 docid rank score tag``) or MS MARCO (``qid docid rank``) run.

    Hits are returned best first (by score, or by rank for MS MARCO runs).
    """
    rows: Dict[str, List[Tuple[str, float]]] = {}
    seen: Dict[Tuple[str, str], int] = {}
    for lineno, line in iter_lines(path):
        parts = line.split()
        if len(parts) == 6:
            qid, _, docid, _, score_s, _ = parts
            try:
                score = float(score_s)
            except ValueError:
                raise DataError(path, f"score {score_s!r} is not a number", lineno) from None
        elif len(parts) == 3:
            qid, docid, rank_s = parts
            try:
                score = -float(rank_s)
            except ValueError:
                raise DataError(path, f"rank {rank_s!r} is not a number", lineno) from None
        else:
            raise DataError(path, f"expected 6 columns (TREC) or 3 columns (MS MARCO), got {len(parts)}",
                            lineno)
        if score != score:
            raise DataError(path, "score is NaN", lineno)
        if (qid, docid) in seen:
            raise DataError(path, f"document {docid!r} listed twice for query {qid!r} "
                                  f"(first on line {seen[qid, docid]})", lineno)
        seen[qid, docid] = lineno
        rows.setdefault(qid, []).append((docid, score))
    if not rows and not allow_empty:
        raise DataError(path, "run is empty")
    return {qid: sorted(hits, key=lambda h: -h[1]) for qid, hits in rows.items()}


def format_run(run: Run, tag: str = "pyserini-llama", fmt: str = "trec",
               qids: Optional[Iterable[str]] = None) -> Iterable[str]:
    for qid in (qids if qids is not None else run):
        for rank, (docid, score) in enumerate(run.get(qid, []), start=1):
            if fmt == "msmarco":
                yield f"{qid}\t{docid}\t{rank}\n"
            else:
                yield f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n"


def write_run(run: Run, path: PathLike, tag: str = "pyserini-llama", fmt: str = "trec",
              overwrite: bool = True) -> None:
    """Write a run atomically (the file appears only once complete)."""
    if fmt not in ("trec", "msmarco"):
        raise ValueError(f"unknown run format {fmt!r}")
    with atomic_write(path, overwrite=overwrite) as f:
        f.writelines(format_run(run, tag, fmt))


def truncate_run(run: Run, depth: int) -> Run:
    return {qid: hits[:depth] for qid, hits in run.items()}
