"""Collections by name (``beir-scifact``, ``cranfield``, any BEIR name) or by path.

A name is looked up in ``--data-dir`` (default: ``$PYSERINI_LLAMA_DATA``, else ``../shared/ir`` next to the
current directory or the source checkout, when it exists), then in the download cache
(``<cache_dir>/collections``). A BEIR dataset that is in neither place is downloaded from BEIR's public
archive and verified against the md5 BEIR publishes, unless ``download=False`` or
``PYSERINI_LLAMA_OFFLINE=1``.

Example::

    from pyserini_llama.data.collections import resolve_collection
    scifact = resolve_collection("beir-scifact")          # local copy, cached copy, or a verified download
    queries, qrels = scifact.queries("test"), scifact.qrels("test")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import UserError
from .beir import BeirFolder

REPO_ROOT = Path(__file__).resolve().parents[2]

# BEIR's public archives: https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/<name>.zip
# ($PYSERINI_LLAMA_BEIR_URL points at a mirror). md5 values as published in the beir-cellar/beir README.
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
BEIR_MD5: Dict[str, str] = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}
# BEIR sets whose licences keep them off the public server: BEIR's README explains how to rebuild them.
BEIR_NOT_PUBLIC = ("bioasq", "signal1m", "trec-news", "robust04")
CQADUPSTACK_FORUMS = ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers",
                      "stats", "tex", "unix", "webmasters", "wordpress")


def default_data_dirs() -> List[Path]:
    dirs = []
    if os.environ.get("PYSERINI_LLAMA_DATA"):
        dirs.append(Path(os.environ["PYSERINI_LLAMA_DATA"]))
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base.parent / "shared" / "ir"
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs


def collections_cache() -> Path:
    from ..paths import cache_dir
    return cache_dir() / "collections"


def beir_name(name: str) -> str:
    """``beir-scifact``, ``beir-v1.0.0-scifact`` and ``scifact`` all name BEIR's ``scifact``."""
    for prefix in ("beir-v1.0.0-", "beir-"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def beir_source(name: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """(archive name, folder inside it) for a downloadable BEIR dataset, else None.

    CQADupStack ships as one archive of twelve forums: ``cqadupstack-android`` is ``cqadupstack/android``.
    """
    name = beir_name(name)
    if name in BEIR_MD5 and name != "cqadupstack":
        return name, ()
    forum = name[len("cqadupstack-"):] if name.startswith("cqadupstack-") else None
    if forum in CQADUPSTACK_FORUMS:
        return "cqadupstack", (forum,)
    return None


def beir_url(archive: str) -> str:
    return f"{os.environ.get('PYSERINI_LLAMA_BEIR_URL', BEIR_URL).rstrip('/')}/{archive}.zip"


def _is_beir_folder(path: Path) -> bool:
    return (path / "corpus.jsonl").exists() or (path / "corpus.jsonl.gz").exists()


def offline() -> bool:
    return os.environ.get("PYSERINI_LLAMA_OFFLINE", "0").lower() in ("1", "true", "yes")


def download_collection(name: str, cache: Optional[Path] = None, progress: bool = True) -> Path:
    """Download and extract a BEIR dataset into the collections cache (verified by md5); return its folder."""
    from ..download import fetch_archive

    source = beir_source(name)
    if source is None:
        raise UserError(_no_source_message(name))
    archive, inner = source
    root = (cache or collections_cache()) / archive
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        fetch_archive([beir_url(archive)], root, md5=BEIR_MD5[archive], progress=progress)
    folder = root.joinpath(*inner)
    if not _is_beir_folder(folder):
        raise UserError(f"{folder}: downloaded archive has no corpus.jsonl; delete {root} and retry")
    return folder


def _no_source_message(name: str) -> str:
    base = beir_name(name)
    if base in BEIR_NOT_PUBLIC:
        return (f"BEIR does not distribute {base!r} (licence); rebuild it as BEIR's README explains "
                f"(https://github.com/beir-cellar/beir) and pass its folder or --data-dir")
    return f"{name!r} is not a BEIR dataset with a public download; pass its folder or --data-dir"


def resolve_collection(name_or_path: str, data_dir: Optional[str] = None, download: bool = True) -> BeirFolder:
    """A BEIR folder for ``name_or_path``: an existing folder, a name under the data dirs or the download
    cache, or (for BEIR datasets, when ``download`` and not offline) a freshly downloaded copy."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return BeirFolder(path)
    dirs = [Path(data_dir)] if data_dir else default_data_dirs()
    for base in dirs:
        for candidate in (base / name_or_path, base / f"beir-{name_or_path}"):
            if _is_beir_folder(candidate):
                return BeirFolder(candidate)
    cache = collections_cache()
    source = beir_source(name_or_path)
    cached = [cache / name_or_path] + ([cache.joinpath(source[0], *source[1])] if source else [])
    for candidate in cached:
        if _is_beir_folder(candidate):
            return BeirFolder(candidate)
    where = ", ".join(str(d) for d in dirs + [cache]) or "no data dir"
    if source is None:
        raise UserError(f"collection {name_or_path!r} not found (looked in {where}); "
                        f"{_no_source_message(name_or_path)}")
    if not download or offline():
        raise UserError(f"collection {name_or_path!r} not found (looked in {where}); pass --data-dir, "
                        f"or allow its download from {beir_url(source[0])}")
    return BeirFolder(download_collection(name_or_path, cache))


def resolve_corpus(source: str, data_dir: Optional[str] = None) -> Path:
    """A corpus JSONL file, a BEIR folder's corpus, or a collection name's corpus."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return BeirFolder(path).corpus_path
    if path.suffix in (".jsonl", ".gz", ".json") or os.sep in source:
        raise UserError(f"{path}: corpus file not found")
    return resolve_collection(source, data_dir).corpus_path


def open_topics(source: str, data_dir: Optional[str] = None, split: Optional[str] = None) -> Dict[str, str]:
    """Queries from a topics TSV, a BEIR ``queries.jsonl``, a BEIR folder or a collection name (with
    ``split``: only the queries judged in that split)."""
    from .beir import load_queries

    path = Path(source).expanduser()
    if not path.exists() and (path.suffix in (".tsv", ".txt", ".jsonl", ".gz", ".json") or os.sep in source):
        raise UserError(f"{path}: topics file not found")
    if path.is_file():
        if split is not None:
            raise UserError(f"{path}: a split selects queries of a BEIR folder or collection, not of a file")
        return load_queries(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: not a file or folder")
    folder = BeirFolder(path) if path.is_dir() else resolve_collection(source, data_dir)
    return folder.queries(split)
