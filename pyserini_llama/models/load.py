"""Load a checkpoint (see :mod:`.checkpoint`) as a ready-to-run model + tokenizer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError
from .checkpoint import CheckpointConfig, adapter_base_model, is_adapter, resolve_checkpoint
from .loader import resolve_model_path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass
class LoadedCheckpoint:
    model: Any
    tokenizer: Any
    config: CheckpointConfig
    folder: Path


def torch_dtype(name: str, device: str):
    import torch

    if name in ("auto", None):
        name = "bfloat16" if str(device).startswith("cuda") else "float32"
    if not str(device).startswith("cuda") and name in ("float16", "fp16"):
        name = "float32"  # fp16 matmuls are slow or missing on CPU
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[name]
    except KeyError:
        raise UserError(f"unknown dtype {name!r} (use bfloat16, float16 or float32)") from None


def check_weights_safe(folder: Path) -> None:
    """Refuse pickled weights that torch's weights-only unpickler rejects (they could run code)."""
    import torch

    if any(folder.glob("*.safetensors")):
        return
    for path in sorted(folder.iterdir()):
        if path.suffix in PICKLE_SUFFIXES and path.is_file():
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001
                raise UserError(f"{path}: refused to load pickled weights that are not plain tensors "
                                f"({type(e).__name__}); convert the checkpoint to safetensors") from None


def check_remote_code(folder: Path, trust_remote_code: bool) -> None:
    """A model whose architecture exists only as code inside the checkpoint runs only with explicit consent."""
    import json

    from transformers import CONFIG_MAPPING

    path = folder / "config.json"
    if trust_remote_code or not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    model_type = data.get("model_type")
    if data.get("auto_map") and model_type not in CONFIG_MAPPING:
        raise UserError(f"{folder}: architecture {model_type!r} is custom code shipped in the checkpoint; it runs "
                        f"only with trust_remote_code (--trust-remote-code), for checkpoints you trust")


def load_tokenizer(folder: Path, padding_side: str = "right", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        # LLaMA ships no pad token; the published recipes pad with unk (else eos): padded positions are
        # masked out, so the choice changes no score.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_checkpoint(name_or_path: str, task: str = "embedding", device: str = "cpu",
                    dtype: Optional[str] = None, trust_remote_code: bool = False,
                    config: Optional[CheckpointConfig] = None) -> LoadedCheckpoint:
    """Load ``name_or_path`` for ``task`` (``embedding``, ``sequence-classification`` or ``causal-lm``).

    Adapters are merged into their base model, so inference runs at plain-model speed.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    folder, found = resolve_checkpoint(name_or_path)
    config = config or found or CheckpointConfig()
    model_cls = {"embedding": AutoModel, "sequence-classification": AutoModelForSequenceClassification,
                 "causal-lm": AutoModelForCausalLM}[task]
    # a checkpoint's preferred dtype is for GPUs; on a CPU, float32 unless the caller asks otherwise
    dt = torch_dtype(dtype or (config.dtype if str(device).startswith("cuda") else "float32"), device)
    kwargs: dict = dict(dtype=dt, trust_remote_code=trust_remote_code)
    if task == "sequence-classification":
        kwargs["num_labels"] = 1
    if is_adapter(folder):
        base = resolve_model_path(adapter_base_model(folder, config))
        check_remote_code(base, trust_remote_code)
        check_weights_safe(base)
        check_weights_safe(folder)
        model = _load_with_adapter(model_cls, base, folder, kwargs, task)
        tok_folder = folder if (folder / "tokenizer_config.json").exists() else base
    else:
        if not (folder / "config.json").exists():
            raise UserError(f"{folder}: not a checkpoint (no config.json, no adapter_config.json)")
        check_remote_code(folder, trust_remote_code)
        check_weights_safe(folder)
        AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        model = model_cls.from_pretrained(str(folder), **kwargs)
        tok_folder = folder
    tokenizer = load_tokenizer(tok_folder, config.padding_side, trust_remote_code)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device).eval()
    return LoadedCheckpoint(model, tokenizer, config, folder)


def _load_with_adapter(model_cls, base: Path, adapter: Path, kwargs: dict, task: str):
    from peft import PeftModel

    from transformers.utils import logging as hf_logging

    # the base lacks the task head (e.g. RankLLaMA's score layer): the adapter supplies it, so transformers'
    # "newly initialized" report would only mislead
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = model_cls.from_pretrained(str(base), **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if task == "sequence-classification" and model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    try:
        model = PeftModel.from_pretrained(model, str(adapter))
    except RuntimeError as e:  # size mismatches: an adapter trained for another base model
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"{adapter}: adapter does not fit base model {base} ({first}); "
                        f"check base_model_name_or_path in adapter_config.json") from None
    return model.merge_and_unload()


_COMPILED: "weakref.WeakKeyDictionary" = None  # type: ignore[assignment]


def compiled(model):
    """``torch.compile(model, dynamic=True)``, built once per model and shared by its users.

    Eager LLaMA runs its norms, rotary embeddings and activations as separate memory-bound kernels between
    the matmuls; compiling fuses them (on an H100 at 7B shape: 55% -> 75% MFU for encoding). Dynamic shapes
    keep one graph for every batch shape of length-sorted batching.
    """
    import weakref

    import torch

    global _COMPILED
    if _COMPILED is None:
        _COMPILED = weakref.WeakKeyDictionary()
    if model not in _COMPILED:
        _COMPILED[model] = torch.compile(model, dynamic=True)
    return _COMPILED[model]
