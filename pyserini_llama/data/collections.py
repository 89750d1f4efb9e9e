"""Collections by name (``beir-scifact``, ``cranfield``, any BEIR name) or by path.

A name is looked up in ``--data-dir`` (default: ``$PYSERINI_LLAMA_DATA``, else ``../shared/ir`` next to the
current directory or the source checkout, when it exists), then in the download cache.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from ..errors import UserError
from .beir import BeirFolder

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dirs() -> List[Path]:
    dirs = []
    if os.environ.get("PYSERINI_LLAMA_DATA"):
        dirs.append(Path(os.environ["PYSERINI_LLAMA_DATA"]))
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base.parent / "shared" / "ir"
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs


def resolve_collection(name_or_path: str, data_dir: Optional[str] = None) -> BeirFolder:
    """A BEIR folder for ``name_or_path``: an existing folder, or a collection name under the data dirs."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return BeirFolder(path)
    dirs = [Path(data_dir)] if data_dir else default_data_dirs()
    for base in dirs:
        for candidate in (base / name_or_path, base / f"beir-{name_or_path}"):
            if (candidate / "corpus.jsonl").exists() or (candidate / "corpus.jsonl.gz").exists():
                return BeirFolder(candidate)
    from ..models.loader import cache_dir
    cached = cache_dir() / "collections" / name_or_path
    if (cached / "corpus.jsonl").exists():
        return BeirFolder(cached)
    where = ", ".join(str(d) for d in dirs) or "no data dir"
    raise UserError(f"collection {name_or_path!r} not found (looked in {where}); "
                    f"pass --data-dir or a BEIR folder path")
