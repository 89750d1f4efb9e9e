"""Exports are made once per checkpoint and kept in the project's cache, keyed by what they depend on.

A packaged checkpoint lives inside site-packages and a hub snapshot in the Hugging Face cache, so an export is
not written next to its checkpoint but under ``<cache_dir>/onnx/<name>-<task>-<precision>-<key>``, where the
key fingerprints the checkpoint's content (:func:`~pyserini_llama.models.load.checkpoint_identity`), the export
settings (task, precision, opset), the torch/transformers/onnx/onnxruntime versions and the source of the code
that builds the graph. An edited checkpoint, another precision or a new library version gets a new folder; a
stale export is never reused.

An export folder holds ``model.onnx``, the tokenizer, ``pyserini_llama.json`` and, written last,
``export.json`` (the key, the settings and each file's size and SHA-256). It is built under a temporary name
and renamed into place when complete (:func:`~pyserini_llama.data.atomic.atomic_dir`); a folder whose record
is missing, from another key or contradicted by its files (a partial copy, a truncated or edited file) is
rebuilt, never used.

Example::

    folder = ensure_export("repllama-smollm2", task="embedding", precision="int8")
    session = open_session(folder / MODEL_NAME)
"""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from ..fingerprint import file_sha256, fingerprint
from ..paths import cache_dir, owned_path, remove_tree

MODEL_NAME = "model.onnx"
INFO_NAME = "export.json"
# what an export folder holds: a folder with anything else is someone's and is never replaced
EXPORT_FILES = (MODEL_NAME, "*.onnx", "*.onnx.data", INFO_NAME, "tokenizer*", "special_tokens_map.json",
                "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "pyserini_llama.json")
TASKS = ("embedding", "score")
EXPORT_FORMAT = 1  # bump when an export's layout changes in a way the source fingerprint cannot see


def onnx_cache() -> Path:
    return cache_dir() / "onnx"


def library_versions() -> Dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def source_fingerprint(task: str) -> str:
    """The code the graph is made from: the exporter, the quantizer, and the task's own torch function."""
    from . import export, quantize
    from ..encoders import inputs, llara, repllama
    from ..models import load
    from ..rerankers import inputs as pair_inputs, rankllama

    modules = [export, quantize, load] + ([inputs, llara, repllama] if task == "embedding"
                                          else [pair_inputs, rankllama])
    return fingerprint({m.__name__: file_sha256(inspect.getsourcefile(m)) for m in modules})


def checkpoint_key(checkpoint: str, task: str) -> Tuple[Path, str]:
    """The checkpoint's folder and identity, without loading it."""
    from ..models.config import CheckpointConfig
    from ..models.load import checkpoint_identity, resolve_checkpoint
    from ..models.presets import rankllama_v1_config

    folder, config = resolve_checkpoint(checkpoint)
    default = rankllama_v1_config() if task == "score" else CheckpointConfig()
    return folder, checkpoint_identity(folder, config or default)


def export_key(identity: str, task: str, precision: str, opset: int) -> Dict:
    return {"format": EXPORT_FORMAT, "checkpoint": identity, "task": task, "precision": precision, "opset": opset,
            "versions": library_versions(), "source": source_fingerprint(task)}


def folder_label(checkpoint_folder: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._+=@-]+", "-", checkpoint_folder.name).strip("-.")[:48] or "checkpoint"


def read_info(folder: Path) -> Optional[Dict]:
    try:
        info = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def file_records(folder: Path) -> Dict[str, Dict]:
    return {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != INFO_NAME}


def check_export(folder: Path, key: Optional[Dict] = None) -> Optional[str]:
    """Why ``folder`` is not a complete export (for ``key``, when given), or None when it is one."""
    info = read_info(folder)
    if info is None:
        return f"no readable {INFO_NAME}"
    if key is not None and info.get("key") != json.loads(json.dumps(key)):
        return "made from another checkpoint, settings or library version"
    files = info.get("files")
    if not isinstance(files, dict) or MODEL_NAME not in files:
        return f"{INFO_NAME} lists no {MODEL_NAME}"
    for name, record in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != record.get("size"):
            return f"{name} is missing or has another size than recorded"
        if file_sha256(path) != record.get("sha256"):
            return f"{name} differs from the file that was exported"
    return None


def ensure_export(checkpoint: str, task: str, precision: str, build: Callable[[Path], Dict],
                  opset: int, announce: Callable[[str], object] = print) -> Path:
    """The cached export of ``checkpoint`` for ``task`` and ``precision``, made by ``build(folder)`` if needed.

    ``build`` writes the files into an empty folder and returns what to record in ``export.json``.
    """
    from ..data.atomic import atomic_dir

    if task not in TASKS:
        raise ValueError(f"unknown export task {task!r} (use {', '.join(TASKS)})")
    folder, identity = checkpoint_key(checkpoint, task)
    key = export_key(identity, task, precision, opset)
    root = onnx_cache()
    target = owned_path(root, f"{folder_label(folder)}-{task}-{precision}-{fingerprint(key)[:16]}")
    if target.exists():
        problem = check_export(target, key)
        if problem is None:
            return target
        announce(f"discarding the ONNX export {target} ({problem})")
        remove_tree(target, root)
    announce(f"exporting {checkpoint} ({task}, {precision}) to ONNX once; cached in {target}")
    with atomic_dir(target, overwrite=True) as tmp:
        record = build(tmp)
        write_info(tmp, dict(record, key=key, checkpoint=str(folder)))
    return target


def write_info(folder: Path, record: Dict) -> None:
    """``export.json``, written last: the files it lists are complete when it exists."""
    record = dict(record, files=file_records(folder))
    (folder / INFO_NAME).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
