"""Document stores: text by docid, from a corpus file, a BEIR folder, a collection name or a Lucene index with
stored raw documents (Pyserini's ``--storeRaw``), whatever produced the run being reranked.

Example::

    docs = open_documents("beir-scifact", docids=["4983", "5836"])      # only what a run names is loaded
    docs["4983"].title, docs["4983"].text
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Protocol, Tuple

from ..errors import UserError
from .beir import BeirFolder, Document, iter_corpus, parse_document


class DocLookup(Protocol):
    """Anything that maps a docid to a :class:`Document` and raises ``KeyError`` for unknown ids."""

    def __getitem__(self, docid: str) -> Document: ...


def document_from_raw(docid: str, raw: str) -> Document:
    """A document from a Lucene ``raw`` field: JsonCollection/BEIR JSON, or plain text."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        obj = None
    if isinstance(obj, dict) and ("text" in obj or "contents" in obj):
        return parse_document({**obj, "id": docid, "_id": docid}, f"document {docid}", 1)
    return Document(docid, "", raw or "")


class LuceneDocuments:
    """Stored documents of a Lucene index as a docid lookup (``raw`` field, via Pyserini's LuceneSearcher)."""

    def __init__(self, index_dir: Path):
        from ..lucene import open_searcher

        self.searcher = open_searcher(index_dir)

    def __getitem__(self, docid: str) -> Document:
        doc = self.searcher.doc(docid)
        raw = doc.raw() if doc is not None else None
        if raw is None:
            raise KeyError(docid)
        return document_from_raw(docid, raw)


def load_corpus_subset(corpus_path: Path, docids: Iterable[str]) -> Dict[str, Document]:
    """Only the documents a run names: a large corpus is streamed, not held in memory."""
    wanted = set(docids)
    return {doc.docid: doc for doc in iter_corpus(corpus_path) if doc.docid in wanted}


def fetch_documents(corpus: DocLookup, docids: Iterable[str]) -> Tuple[Dict[str, Document], List[str]]:
    """The documents of ``docids`` that ``corpus`` has, and the ids it lacks (sorted)."""
    docs: Dict[str, Document] = {}
    missing: List[str] = []
    for docid in sorted(docids):
        try:
            docs[docid] = corpus[docid]
        except KeyError:
            missing.append(docid)
    return docs, missing


def resolve_documents(source: str) -> Path:
    """The file or folder behind ``source``: itself when it exists, else a prebuilt Lucene index of that name
    (from the cache, or downloaded), else a collection of that name."""
    from ..prebuilt_indexes.registry import load_registry, resolve_index, unknown_index_message
    from .collections import beir_source, resolve_collection

    path = Path(source).expanduser()
    if path.exists():
        return path
    registry = load_registry()
    if source in registry:
        if registry[source].type != "lucene":
            raise UserError(f"index {source!r} is a {registry[source].type} index: it holds no document text; "
                            f"give a Lucene index with stored documents, a corpus or a collection name")
        return resolve_index(source)
    try:
        return resolve_collection(source).root
    except UserError:
        if beir_source(source):
            raise  # a BEIR name: its own message says how to get it
        raise UserError(f"{unknown_index_message(source, registry)}; nor is it a collection name") from None


def open_documents(source: str, docids: Iterable[str]) -> Mapping[str, Document] | DocLookup:
    """A docid lookup for ``source``: a Lucene index, a BEIR folder, a corpus JSONL, a prebuilt Lucene index
    name, or a collection name."""
    from ..lucene import is_lucene_index

    path = resolve_documents(source)
    if is_lucene_index(path):
        return LuceneDocuments(path)
    if path.is_dir():
        return load_corpus_subset(BeirFolder(path).corpus_path, docids)
    return load_corpus_subset(path, docids)
