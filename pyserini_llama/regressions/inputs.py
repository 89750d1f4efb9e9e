"""The files a regression's commands read, written into its work folder: topics, qrels, a BEIR folder of exactly
what is evaluated, and with ``limit`` a cut-down corpus.

Topics and qrels are read (and so validated) by :func:`load_inputs` before the work folder is made; a bad
line stops the regression before anything is written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Tuple

from ..data.atomic import atomic_write
from .definitions import Regression
from .options import Options
from .requirements import find_data_file

LIMIT_EXTRA_DOCS = 20
Qrels = Dict[str, Dict[str, int]]


def _load_topics(regression: Regression, options: Options) -> Dict[str, str]:
    from ..data.beir import load_queries
    from ..data.collections import resolve_collection

    source = regression.topics
    if isinstance(source, str):
        return load_queries(find_data_file(source, options))
    folder = resolve_collection(source["collection"], options.data_dir, download=options.download)
    return folder.queries(source["split"])


def _load_qrels(regression: Regression, options: Options) -> Tuple[Dict[str, Dict[str, int]], Path]:
    from ..data.beir import load_qrels
    from ..data.collections import resolve_collection

    source = regression.qrels
    if isinstance(source, str):
        path = find_data_file(source, options)
    else:
        path = resolve_collection(source["collection"], options.data_dir,
                                  download=options.download).qrels_path(source["split"])
    return load_qrels(path), path


def _write_topics(topics: Dict[str, str], path: Path) -> None:
    with atomic_write(path) as f:
        for qid, text in topics.items():
            f.write(f"{qid}\t{' '.join(text.split())}\n")  # tabs or newlines inside a query would split it


def _write_qrels(qrels: Dict[str, Dict[str, int]], path: Path) -> None:
    with atomic_write(path) as f:
        for qid, docs in qrels.items():
            f.writelines(f"{qid} 0 {docid} {rel}\n" for docid, rel in docs.items())


def _write_beir_folder(folder: Path, corpus: Path, topics: Dict[str, str],
                       qrels: Dict[str, Dict[str, int]]) -> None:
    _link_corpus(corpus, folder)
    with atomic_write(folder / "queries.jsonl") as f:
        f.writelines(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n"
                     for qid, text in topics.items())
    with atomic_write(folder / "qrels" / "test.tsv") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            f.writelines(f"{qid}\t{docid}\t{rel}\n" for docid, rel in docs.items())


def _link_corpus(corpus: Path, folder: Path) -> None:
    """Make ``folder``'s only corpus file a link to ``corpus`` (re-pointed when a group changes collection)."""
    name = "corpus.jsonl.gz" if corpus.name.endswith(".gz") else "corpus.jsonl"
    link = folder / name
    if link.is_symlink() and Path(os.readlink(link)) == corpus.resolve():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / old).is_symlink() or (folder / old).exists():
            (folder / old).unlink()
    link.symlink_to(corpus.resolve())


def _subset_corpus(corpus: Path, keep: set, extra: int, output: Path) -> None:
    """The judged documents of the kept topics plus the first ``extra`` others, in corpus order."""
    from ..data.beir import iter_corpus

    with atomic_write(output) as f:
        for doc in iter_corpus(corpus):
            if doc.docid not in keep:
                if extra <= 0:
                    continue
                extra -= 1
            f.write(json.dumps({"_id": doc.docid, "title": doc.title, "text": doc.text}, ensure_ascii=False)
                    + "\n")


def load_inputs(regression: Regression, options: Options) -> Tuple[Dict[str, str], Qrels, Path]:
    """The topics (the first ``limit`` with a limit) and their qrels, read and validated; nothing is written."""
    topics = _load_topics(regression, options)
    qrels, qrels_path = _load_qrels(regression, options)
    if options.limit:
        topics = dict(list(topics.items())[:options.limit])
    return topics, {qid: docs for qid, docs in qrels.items() if qid in topics}, qrels_path


def write_inputs(regression: Regression, options: Options, work: Path, topics: Dict[str, str], qrels: Qrels,
                 qrels_path: Path) -> Dict[str, str]:
    """Write topics (and with a limit the reduced corpus and qrels) into ``work``; return the placeholder
    values."""
    from ..data.collections import resolve_collection
    from .steps import _fill

    data_dirs = options.data_dirs()
    values = {"work": str(work), "topics": str(work / "topics.tsv"), "qrels": str(qrels_path),
              "run": _fill(regression.run, {"work": str(work)}), "threads": str(options.threads),
              "device": options.device or _default_device(), "data_dir": str(data_dirs[0] if data_dirs else work)}
    _write_topics(topics, work / "topics.tsv")
    if regression.collection:
        folder = resolve_collection(regression.collection, options.data_dir, download=options.download)
        corpus = folder.corpus_path
        if options.limit:
            judged = {docid for docs in qrels.values() for docid in docs}
            reduced = work / "corpus-subset" / folder.root.name / "corpus.jsonl"
            _subset_corpus_once(corpus, judged, LIMIT_EXTRA_DOCS * options.limit, reduced)
            corpus = reduced
        _link_corpus(corpus, work / "corpus-input")  # Lucene reads every file of the folder: show it only this one
        _write_beir_folder(work / "beir-input", corpus, topics, qrels)
        values.update(corpus=str(corpus), corpus_dir=str(work / "corpus-input"), beir_dir=str(work / "beir-input"))
    if options.limit:
        values["qrels"] = str(work / "qrels.limited.txt")
        _write_qrels(qrels, work / "qrels.limited.txt")
    return values


def _subset_corpus_once(corpus: Path, keep: set, extra: int, output: Path) -> None:
    """The cut-down corpus, rewritten only when what determines it changed (the source corpus's bytes, the
    judged documents kept, the number of others): its bytes then stay the same, so the indexes and runs made
    from it by the other definitions of the group are reused, and never when they would be stale."""
    from ..fingerprint import file_sha256, fingerprint

    key = {"corpus": file_sha256(corpus), "keep": fingerprint(sorted(keep)), "extra": extra}
    record = output.with_name(".subset.json")
    try:
        if output.is_file() and json.loads(record.read_text(encoding="utf-8")) == key:
            return
    except (OSError, ValueError):
        pass
    _subset_corpus(corpus, keep, extra, output)
    with atomic_write(record) as f:
        f.write(json.dumps(key) + "\n")


def _default_device() -> str:
    from ..runtime import resolve_device

    return resolve_device("auto")


def dry_run_values(regression: Regression, options: Options) -> Dict[str, str]:
    """Placeholder values for printing commands: nothing is written or downloaded."""
    from ..data.collections import resolve_collection
    from ..errors import UserError
    from .steps import _fill

    work = options.work_dir(regression)
    data_dirs = options.data_dirs()
    values = {"work": str(work), "topics": str(work / "topics.tsv"), "threads": str(options.threads),
              "device": options.device or "<device>", "data_dir": str(data_dirs[0]) if data_dirs else "<data dir>"}
    values["run"] = _fill(regression.run, values, dry_run=True)
    if isinstance(regression.qrels, str):
        found = find_data_file(regression.qrels, options)
        values["qrels"] = str(found) if found else f"<data dir>/{regression.qrels}"
    if regression.collection:
        try:
            corpus = resolve_collection(regression.collection, options.data_dir, download=False).corpus_path
            values["corpus"] = str(work / "corpus-subset" / corpus.parent.name / "corpus.jsonl") \
                if options.limit else str(corpus)
        except UserError:
            values["corpus"] = f"<corpus of {regression.collection}>"
        values.update(corpus_dir=str(work / "corpus-input"), beir_dir=str(work / "beir-input"))
    return values
