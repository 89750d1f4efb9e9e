"""Rerank any TREC run (Pyserini lucene, faiss, hybrid, fusion, ...) with RankLLaMA.

Example::

    python -m pyserini_llama.rerank --run runs/bm25.trec --topics ../shared/ir/beir-scifact/queries.jsonl \\
        --index indexes/scifact-lucene --reranker rankllama --hits 100 --output runs/bm25.rankllama.trec

Document text comes from a Lucene index built with stored raw documents (``--storeRaw``; JsonCollection
``contents`` or BEIR ``title``/``text``), a prebuilt one by name (``--index beir-v1.0.0-scifact.flat``), or
from a BEIR folder / JSONL corpus / collection name. The output is a TREC run
(written atomically) that ``pyserini.eval.trec_eval`` and ir_measures read.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

from .data.beir import BeirFolder, Document, iter_corpus, load_queries
from .data.trec import load_run, write_run
from .errors import UserError, run_cli

log = logging.getLogger(__name__)


class LuceneDocuments:
    """Stored documents of a Lucene index as a docid lookup (``raw`` field, via Pyserini's LuceneSearcher)."""

    def __init__(self, index_dir: str):
        from .java import ensure_java

        ensure_java()
        from pyserini.search.lucene import LuceneSearcher

        self.searcher = LuceneSearcher(str(index_dir))

    def __getitem__(self, docid: str) -> Document:
        from .rerankers.rankllama import document_from_raw

        doc = self.searcher.doc(docid)
        raw = doc.raw() if doc is not None else None
        if raw is None:
            raise KeyError(docid)
        return document_from_raw(docid, raw)


def is_lucene_index(path: Path) -> bool:
    return path.is_dir() and (any(path.glob("segments_*")) or (path / "segments.gen").exists())


def load_corpus_subset(corpus_path: Path, docids: Iterable[str]) -> Dict[str, Document]:
    """Only the documents a run names: a large corpus is streamed, not held in memory."""
    wanted = set(docids)
    return {doc.docid: doc for doc in iter_corpus(corpus_path) if doc.docid in wanted}


def resolve_documents(source: str) -> Path:
    """The file or folder behind ``source``: itself when it exists, else a prebuilt Lucene index of that name
    (from the cache, or downloaded), else a collection of that name."""
    from .data.collections import beir_source, resolve_collection
    from .prebuilt_indexes.registry import load_registry, resolve_index, unknown_index_message

    path = Path(source).expanduser()
    if path.exists():
        return path
    registry = load_registry()
    if source in registry:
        if registry[source].type != "lucene":
            raise UserError(f"index {source!r} is a {registry[source].type} index: it holds no document text; "
                            f"pass a Lucene index with stored documents, a corpus or a collection name")
        return resolve_index(source)
    try:
        return resolve_collection(source).root
    except UserError:
        if beir_source(source):
            raise  # a BEIR name: its own message says how to get it
        raise UserError(f"{unknown_index_message(source, registry)}; nor is it a collection name") from None


def open_documents(source: str, docids: Iterable[str]):
    """A docid lookup for ``source``: a Lucene index, a BEIR folder, a corpus JSONL, a prebuilt Lucene index
    name, or a collection name."""
    path = resolve_documents(source)
    if is_lucene_index(path):
        return LuceneDocuments(str(path))
    if path.is_dir():
        return load_corpus_subset(BeirFolder(path).corpus_path, docids)
    return load_corpus_subset(path, docids)


def open_topics(source: str) -> Dict[str, str]:
    path = Path(source).expanduser()
    if path.is_dir():
        return BeirFolder(path).queries()
    if not path.exists():
        raise UserError(f"{path}: topics file not found")
    return load_queries(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pyserini_llama.rerank", description=__doc__.splitlines()[0],
        epilog="Documents ranked below --hits are kept, in their first-stage order, below the reranked ones.")
    parser.add_argument("--run", required=True, help="first-stage run (TREC or MS MARCO format)")
    parser.add_argument("--topics", required=True, help="queries: BEIR queries.jsonl, a qid<TAB>text TSV, "
                                                        "or a BEIR folder")
    parser.add_argument("--index", required=True, help="document text: a Lucene index with stored raw docs, "
                                                       "a BEIR folder, a corpus JSONL, a prebuilt Lucene index "
                                                       "name (python -m pyserini_llama.prebuilt_indexes --list) "
                                                       "or a collection name")
    parser.add_argument("--reranker", default="rankllama",
                        help="checkpoint name or folder (default: rankllama = castorini/rankllama-v1-7b-lora-"
                             "passage)")
    parser.add_argument("--hits", type=int, default=100, help="rerank the top N of each query (default 100)")
    parser.add_argument("--output", required=True, help="output TREC run")
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per batch (default: 32768 on GPU, "
                                                         "4096 on CPU)")
    parser.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, "
                                                        "float32")
    parser.add_argument("--max-length-query", type=int, help="query tokens (default: the checkpoint's, 32)")
    parser.add_argument("--max-length-passage", type=int,
                        help="passage tokens incl. 3 reserved as in RankLLaMA v1 (default: the checkpoint's, 164)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="keep documents the corpus lacks, unscored below the reranked ones (warns), "
                             "instead of failing")
    parser.add_argument("--tag", default="rankllama", help="run tag (6th column)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import check_output_path
    from .rerankers.rankllama import (PASSAGE_SPECIAL_RESERVE, RankLlamaReranker, auto_device,
                                      check_rerank_inputs)

    if args.hits <= 0:
        raise UserError(f"--hits must be positive, got {args.hits}")
    if args.batch_tokens is not None and args.batch_tokens <= 0:
        raise UserError(f"--batch-tokens must be positive, got {args.batch_tokens}")
    if args.max_length_query is not None and args.max_length_query <= 0:
        raise UserError(f"--max-length-query must be positive, got {args.max_length_query}")
    if args.max_length_passage is not None and args.max_length_passage <= PASSAGE_SPECIAL_RESERVE:
        raise UserError(f"--max-length-passage must exceed {PASSAGE_SPECIAL_RESERVE}, "
                        f"got {args.max_length_passage}")
    check_output_path(args.output, args.overwrite)
    run = load_run(args.run)
    topics = open_topics(args.topics)
    check_rerank_inputs(topics, run, args.hits)
    docs = open_documents(args.index, {d for hits in run.values() for d, _ in hits[:args.hits]})

    device = auto_device() if args.device == "auto" else args.device
    reranker = RankLlamaReranker.from_checkpoint(args.reranker, device=device, dtype=args.dtype,
                                                 batch_tokens=args.batch_tokens)
    reranker.query_max_length = args.max_length_query or reranker.query_max_length
    reranker.passage_max_length = args.max_length_passage or reranker.passage_max_length
    n_pairs = sum(min(len(h), args.hits) for h in run.values())
    print(f"reranking top-{args.hits} of {len(run)} queries ({n_pairs} pairs) with {args.reranker} on {device} "
          f"({reranker.model.dtype}, q {reranker.query_max_length} + p {reranker.passage_max_length} tokens)")
    start = time.perf_counter()
    reranked = reranker.rerank(topics, run, docs, hits=args.hits, skip_missing=args.skip_missing)
    seconds = time.perf_counter() - start
    write_run(reranked, args.output, tag=args.tag, overwrite=args.overwrite)
    print(f"wrote {args.output}: {len(reranked)} queries in {seconds:.1f}s "
          f"({n_pairs / max(seconds, 1e-9):.1f} pairs/s)")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    run_cli(main)
