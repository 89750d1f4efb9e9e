"""Fingerprints of what determines a result, so resumed or cached work is reused only when it still matches.

A corpus or topics file is identified by the SHA-256 of its bytes (an edit of the same size changes it); a
model folder by the bytes of its small files (configs, tokenizer, adapters) and the name, size and
modification time of its large weight files (hashing 13 GB of base weights at every start would cost more than
it protects: those files are written once and never edited in place); settings by their canonical JSON.

Example::

    key = fingerprint({"corpus": file_sha256(corpus), "model": folder_fingerprint(ckpt), "max_length": 512})
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

PathLike = Union[str, os.PathLike]
CHUNK = 1 << 20
SMALL_FILE = 64 << 20  # files up to this size are hashed whole
_FILE_CACHE: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes (remembered per path, size and mtime within this process)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        _FILE_CACHE[key] = digest.hexdigest()
    return _FILE_CACHE[key]


def folder_fingerprint(folder: PathLike) -> str:
    """One digest for a model folder: small files by content, large ones by name, size and mtime."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(folder).as_posix()
        stat = path.stat()
        content = file_sha256(path) if stat.st_size <= SMALL_FILE else f"{stat.st_size}:{stat.st_mtime_ns}"
        digest.update(f"{rel}\t{content}\n".encode())
    return digest.hexdigest()


def fingerprint(value: Any) -> str:
    """SHA-256 of ``value``'s canonical JSON (sorted keys), for settings and composite keys."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tensors_sha256(tensors: Dict[str, Any]) -> str:
    """SHA-256 over named tensors' bytes (a model's ``state_dict``), in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
