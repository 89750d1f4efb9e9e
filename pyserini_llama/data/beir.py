"""Readers for BEIR-format folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Pyserini's JsonCollection layout (``{"id", "contents"}``) is accepted as a corpus too, so the same reader
serves a BEIR corpus, a converted corpus, or the ``raw`` field of a Lucene index.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

from ..errors import DataError, UserError
from .jsonl import iter_jsonl, iter_lines

PathLike = Union[str, os.PathLike]
Qrels = Dict[str, Dict[str, int]]


@dataclass(frozen=True)
class Document:
    docid: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Title and text in one field, as Pyserini's BEIR "flat" indexes store them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


def check_id(value: str, path: PathLike, lineno: int, what: str = "id") -> str:
    """An id that TREC runs, qrels and Pyserini's docid files can hold: no whitespace inside it."""
    if not value:
        raise DataError(path, f"empty {what}", lineno)
    if any(c.isspace() for c in value):
        raise DataError(path, f"{what} {value!r} contains whitespace, which TREC runs, qrels and Pyserini's docid "
                              f"files cannot hold", lineno)
    return value


def _id_field(obj: dict, path: PathLike, lineno: int, keys=("_id", "id", "docid")) -> str:
    for key in keys:
        if key in obj:
            value = obj[key]
            if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).strip():
                return check_id(str(value).strip(), path, lineno, f"field {key!r}")
            raise DataError(path, f"field {key!r} is empty or not a string", lineno)
    raise DataError(path, f"missing id field (expected one of {', '.join(map(repr, keys))})", lineno)


def _str_field(obj: dict, key: str, path: PathLike, lineno: int) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(path, f"field {key!r} must be a string, got {type(value).__name__}", lineno)
    return value


def parse_document(obj: dict, path: PathLike, lineno: int) -> Document:
    docid = _id_field(obj, path, lineno)
    if "text" in obj:
        title, text = _str_field(obj, "title", path, lineno), _str_field(obj, "text", path, lineno)
    elif "contents" in obj:
        title, text = "", _str_field(obj, "contents", path, lineno)
    else:
        raise DataError(path, "missing field 'text' (BEIR) or 'contents' (Pyserini JsonCollection)",
                        lineno)
    return Document(docid, title, text)


def iter_corpus(path: PathLike) -> Iterator[Document]:
    """Stream documents, rejecting malformed lines, missing fields and duplicate ids.

    Documents with neither title nor text are kept (real collections have them: Cranfield has two, which
    Anserini indexes as empty) with one warning naming how many and the first line.
    """
    seen: Dict[str, int] = {}
    empty = []
    for lineno, obj in iter_jsonl(path):
        doc = parse_document(obj, path, lineno)
        if doc.docid in seen:
            raise DataError(path, f"duplicate document id {doc.docid!r} (first seen on line "
                                  f"{seen[doc.docid]})", lineno)
        seen[doc.docid] = lineno
        if not doc.contents:
            empty.append(lineno)
        yield doc
    if not seen:
        raise DataError(path, "corpus is empty")
    if empty:
        warnings.warn(f"{path}:{empty[0]}: {len(empty)} document(s) have no text (kept, as empty documents)",
                      stacklevel=2)


def validate_corpus(path: PathLike) -> int:
    """Read the whole corpus once (malformed lines, duplicate ids): a second for 100,000 documents, run before
    any work that would otherwise find a bad last line hours later. Returns the number of documents."""
    return sum(1 for _ in iter_corpus(path))


def load_corpus(path: PathLike) -> Dict[str, Document]:
    return {doc.docid: doc for doc in iter_corpus(path)}


def load_queries(path: PathLike) -> Dict[str, str]:
    """Read queries from BEIR ``queries.jsonl`` or a TREC topics TSV (``qid<TAB>text``), by extension."""
    name = Path(path).name
    if name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        from .trec import load_topics
        return load_topics(path)
    queries: Dict[str, str] = {}
    for lineno, obj in iter_jsonl(path):
        qid = _id_field(obj, path, lineno, keys=("_id", "id", "qid"))
        text = _str_field(obj, "text", path, lineno) if "text" in obj else \
            _str_field(obj, "title", path, lineno)
        if not text.strip():
            raise DataError(path, f"query {qid!r} has no text", lineno)
        if qid in queries:
            raise DataError(path, f"duplicate query id {qid!r}", lineno)
        queries[qid] = text.strip()
    if not queries:
        raise DataError(path, "no queries")
    return queries


def parse_grade(text: str, path: PathLike, lineno: int) -> int:
    """A relevance grade as trec_eval reads it: an integer (negative ones count as not relevant). A fraction
    is refused rather than cut: 0.5 would silently become 0."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"relevance {text!r} is not a number", lineno) from None
    if value != value or value in (float("inf"), float("-inf")) or value != int(value):
        raise DataError(path, f"relevance {text!r} is not an integer grade", lineno)
    return int(value)


def load_beir_qrels(path: PathLike) -> Qrels:
    """Read BEIR qrels TSV (header ``query-id corpus-id score``)."""
    qrels: Qrels = {}
    for lineno, line in iter_lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if lineno == 1 and parts[0].lower() in ("query-id", "qid", "query_id"):
            continue
        if len(parts) != 3:
            raise DataError(path, f"expected 3 columns (query-id, corpus-id, score), got {len(parts)}",
                            lineno)
        qid, docid, score = (p.strip() for p in parts)
        check_id(qid, path, lineno, "query id")
        check_id(docid, path, lineno, "document id")
        rel = parse_grade(score, path, lineno)
        qrels.setdefault(qid, {})[docid] = rel
    if not qrels:
        raise DataError(path, "qrels file has no judgments")
    return qrels


def load_qrels(path: PathLike) -> Qrels:
    """Read qrels in either BEIR TSV or TREC (``qid Q0 docid rel``) format."""
    for _, line in iter_lines(path):
        if len(line.split()) == 4:
            from .trec import load_trec_qrels
            return load_trec_qrels(path)
        break
    return load_beir_qrels(path)


def check_qrels_queries(qrels: Qrels, queries: Dict[str, str], qrels_path: PathLike) -> None:
    """Qrels that name queries absent from the topics mean the wrong pair of files was given."""
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        sample = ", ".join(map(repr, unknown[:5]))
        raise DataError(qrels_path, f"{len(unknown)} judged queries are not in the topics "
                                    f"(e.g. {sample}); are the topics and qrels from the same collection?")


@dataclass
class BeirFolder:
    """A BEIR-format collection folder."""

    root: Path

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: not a directory (expected a BEIR folder with corpus.jsonl)")

    def _file(self, *names: str) -> Path:
        for name in names:
            path = self.root / name
            if path.is_dir():
                raise UserError(f"{path}: is a folder, expected the {names[0]} file of a BEIR folder")
            if path.exists():
                return path
        raise UserError(f"{self.root}: no {names[0]}")

    @property
    def corpus_path(self) -> Path:
        return self._file("corpus.jsonl", "corpus.jsonl.gz")

    @property
    def queries_path(self) -> Path:
        return self._file("queries.jsonl", "queries.jsonl.gz")

    def qrels_path(self, split: str) -> Path:
        path = self.root / "qrels" / f"{split}.tsv"
        if not path.exists():
            have = sorted(p.stem for p in (self.root / "qrels").glob("*.tsv"))
            raise UserError(f"{self.root}: no qrels for split {split!r} (have: {', '.join(have) or 'none'})")
        if path.is_dir():
            raise UserError(f"{path}: is a folder, expected the qrels file of split {split!r}")
        return path

    def splits(self):
        return sorted(p.stem for p in (self.root / "qrels").glob("*.tsv"))

    def corpus(self) -> Dict[str, Document]:
        return load_corpus(self.corpus_path)

    def qrels(self, split: str) -> Qrels:
        return load_beir_qrels(self.qrels_path(split))

    def queries(self, split: Optional[str] = None) -> Dict[str, str]:
        """All queries, or only those judged in ``split`` (BEIR keeps every split in one file)."""
        queries = load_queries(self.queries_path)
        if split is None:
            return queries
        qrels = self.qrels(split)
        check_qrels_queries(qrels, queries, self.qrels_path(split))
        return {qid: queries[qid] for qid in queries if qid in qrels}
