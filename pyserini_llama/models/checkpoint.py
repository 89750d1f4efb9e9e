"""Checkpoint folders: base model + optional peft LoRA adapter + ``pyserini_llama.json`` (how it encodes).

A checkpoint is what users pass around. It is one of
  * a folder holding a full model (``config.json`` + safetensors) and optionally ``pyserini_llama.json``;
  * a folder holding a peft adapter (``adapter_config.json``), whose ``base_model_name_or_path`` names the base
    model: exactly the published format of ``castorini/repllama-v1-7b-lora-passage``;
  * a built-in name (``repllama``, ``rankllama``, ``llara``, ...) or a hub id of either of the above.
Adapters are merged into the base weights at load time. Weights are read from safetensors, or from ``.bin``
files with torch's weights-only unpickler; checkpoint code is never executed (``trust_remote_code`` is off
unless the caller passes it explicitly).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import UserError
from .loader import resolve_model_path

CONFIG_NAME = "pyserini_llama.json"


@dataclass
class CheckpointConfig:
    """How a checkpoint turns text into model inputs and outputs; saved as JSON next to the weights."""

    kind: str = "repllama"  # repllama | rankllama | llara
    base_model: Optional[str] = None  # for adapters: the base model name or path
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    query_max_length: int = 32
    passage_max_length: int = 196
    pooling: str = "eos"  # eos: hidden state at the appended EOS | mean_last_k: llara's last-k mean
    pooling_k: int = 8
    normalize: bool = True
    append_eos: bool = True
    dtype: str = "bfloat16"
    padding_side: str = "right"
    query_suffix: str = ""
    passage_suffix: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        Path(folder, CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Optional["CheckpointConfig"]:
        path = Path(folder, CONFIG_NAME)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{path}: unknown keys {unknown}")
        return cls(**data)


# Published checkpoints, loaded unchanged when present (HF cache, or downloaded when online).
BUILTIN: Dict[str, Dict[str, Any]] = {
    "repllama": dict(path="castorini/repllama-v1-7b-lora-passage", config=CheckpointConfig(
        kind="repllama", base_model="meta-llama/Llama-2-7b-hf", query_max_length=32,
        passage_max_length=196, dtype="float16")),
    "repllama-doc": dict(path="castorini/repllama-v1-7b-lora-doc", config=CheckpointConfig(
        kind="repllama", base_model="meta-llama/Llama-2-7b-hf", query_max_length=32,
        passage_max_length=2048, dtype="float16")),
    "rankllama": dict(path="castorini/rankllama-v1-7b-lora-passage", config=CheckpointConfig(
        kind="rankllama", base_model="meta-llama/Llama-2-7b-hf", passage_prefix="document: ",
        query_max_length=32, passage_max_length=164, append_eos=False, dtype="float16")),
    "rankllama-doc": dict(path="castorini/rankllama-v1-7b-lora-doc", config=CheckpointConfig(
        kind="rankllama", base_model="meta-llama/Llama-2-7b-hf", passage_prefix="document: ",
        query_max_length=32, passage_max_length=4064, append_eos=False, dtype="float16")),
    "rankllama-13b": dict(path="castorini/rankllama-v1-13b-lora-passage", config=CheckpointConfig(
        kind="rankllama", base_model="meta-llama/Llama-2-13b-hf", passage_prefix="document: ",
        query_max_length=32, passage_max_length=164, append_eos=False, dtype="float16")),
    # BAAI's released LLaRA format: quoted text, an instruction and 8 added tokens whose last-layer states are
    # averaged (left padding); see pyserini_llama.encoders.llara.PROMPT_FORMATS["released"].
    "llara": dict(path="BAAI/LLARA-passage", config=CheckpointConfig(
        kind="llara", query_prefix='"', passage_prefix='"', query_max_length=64, passage_max_length=512,
        pooling="mean_last_k", pooling_k=8, append_eos=False, dtype="bfloat16", padding_side="left",
        query_suffix='", predict the following passage within eight words: '
                     + "".join(f"<s{i}>" for i in range(9, 17)),
        passage_suffix='", summarize the above passage within eight words: '
                       + "".join(f"<s{i}>" for i in range(1, 9)),
        extra={"prompt_format": "released"})),
}

# Our own small checkpoints ship inside the package, under pyserini_llama/checkpoints/<name>/.
PACKAGED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def register_builtin(name: str, path: str, config: CheckpointConfig) -> None:
    BUILTIN[name] = dict(path=path, config=config)


def resolve_checkpoint(name_or_path: str) -> tuple[Path, Optional[CheckpointConfig]]:
    """Return the checkpoint's local folder and its config (from the folder, else the built-in table)."""
    key = name_or_path.lower()
    packaged = PACKAGED_DIR / key
    by_path = {entry["path"].lower(): name for name, entry in BUILTIN.items()}
    if key in by_path and not Path(name_or_path).exists():  # a published hub id gets its known config
        key = by_path[key]
    if key in BUILTIN:
        folder = resolve_model_path(BUILTIN[key]["path"])
        return folder, CheckpointConfig.load(folder) or BUILTIN[key]["config"]
    if packaged.is_dir() and not Path(name_or_path).exists():
        return packaged, CheckpointConfig.load(packaged)
    folder = resolve_model_path(name_or_path)
    return folder, CheckpointConfig.load(folder)


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def adapter_base_model(folder: Path, config: Optional[CheckpointConfig]) -> str:
    data = json.loads((folder / "adapter_config.json").read_text())
    base = (config.base_model if config and config.base_model else None) or data.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{folder}/adapter_config.json: no base_model_name_or_path; "
                        f"set base_model in {CONFIG_NAME}")
    if not Path(base).is_absolute() and (folder / base).is_dir():
        base = str((folder / base).resolve())  # a base shipped relative to the adapter
    return base
