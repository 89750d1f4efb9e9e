"""The one way a model is loaded: resolve a name to a checkpoint folder, read its config, load it for inference
or for training, never executing checkpoint code.

A checkpoint is one of
  * a folder holding a full model (``config.json`` + safetensors) and optionally ``pyserini_llama.json``;
  * a folder holding a peft adapter (``adapter_config.json``), whose ``base_model_name_or_path`` names the base
    model: exactly the published format of ``castorini/repllama-v1-7b-lora-passage``;
  * a built-in name (``repllama``, ``rankllama``, ``llara``, ... see :mod:`.presets`), a packaged name
    (``repllama-smollm2``), or a hub id of either of the above.
Adapters are merged into the base weights at load time (inference runs at plain-model speed; training puts a
new adapter on top). Weights are read from safetensors, or from pickles that torch's weights-only unpickler
accepts; ``trust_remote_code`` is off unless the caller turns it on.

Example::

    loaded = load_checkpoint("repllama-smollm2", task="embedding", device="cuda")
    loaded.model, loaded.tokenizer, loaded.config
    base = load_checkpoint("smollm2-135m", task="sequence-classification", device="cuda", training=True,
                           dtype="bfloat16")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

from ..data.jsonl import read_json_object
from ..errors import DataError, UserError
from ..fingerprint import fingerprint, folder_fingerprint
from ..runtime import FP8, dtype_name, resolve_dtype, torch_dtype
from .config import CheckpointConfig
from .hub import resolve_model_path
from .presets import BUILTIN, PACKAGED_DIR, find_builtin

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
TASKS = ("embedding", "sequence-classification", "causal-lm")


@dataclass
class LoadedCheckpoint:
    model: Any
    tokenizer: Any
    config: CheckpointConfig
    folder: Path
    identity: str  # what makes this model this model (see checkpoint_identity): keys caches of its outputs


# --- names -> folders ----------------------------------------------------------------------------------------

def resolve_checkpoint(name_or_path: str) -> Tuple[Path, Optional[CheckpointConfig]]:
    """The checkpoint's local folder and its config (from the folder, else the built-in table)."""
    key = str(name_or_path).lower()
    exists = Path(name_or_path).expanduser().exists()
    builtin = None if exists else find_builtin(key)  # a published hub id gets its known config
    if builtin is not None:
        folder = resolve_model_path(BUILTIN[builtin].path)
        return folder, CheckpointConfig.load(folder) or BUILTIN[builtin].config
    packaged = PACKAGED_DIR / key
    if not exists and key and "/" not in key and packaged.is_dir():
        return packaged, CheckpointConfig.load(packaged)
    folder = resolve_model_path(name_or_path)
    return folder, CheckpointConfig.load(folder)


def checkpoint_identity(folder: Path, config: CheckpointConfig) -> str:
    """A fingerprint of the weights (adapter and base) and the settings a checkpoint encodes with."""
    parts = {"checkpoint": folder_fingerprint(folder), "config": config.to_dict()}
    if is_adapter(folder):
        base = resolve_model_path(adapter_base_model(folder, config))
        # an adapter trained on top of another adapter checkpoint: that one's identity, its own base included
        parts["base"] = checkpoint_identity(base, CheckpointConfig.load(base) or CheckpointConfig()) \
            if is_adapter(base) else folder_fingerprint(base)
    return fingerprint(parts)


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def adapter_base_model(folder: Path, config: Optional[CheckpointConfig]) -> str:
    path = folder / "adapter_config.json"
    base = (config.base_model if config and config.base_model else None) or \
        read_json_object(path, "adapter config").get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise DataError(path, "no base_model_name_or_path (a string); set base_model in pyserini_llama.json")
    if not Path(base).is_absolute() and (folder / base).is_dir():
        base = str((folder / base).resolve())  # a base shipped relative to the adapter
    return base


# --- safety --------------------------------------------------------------------------------------------------

def check_weights_safe(folder: Path) -> None:
    """Refuse pickled weights that torch's weights-only unpickler rejects (they could run code), and say so
    apart from a pickle that cannot be read at all (cut short, damaged)."""
    import pickle

    import torch

    if any(folder.glob("*.safetensors")):
        return
    for path in sorted(folder.iterdir()):
        if path.suffix in PICKLE_SUFFIXES and path.is_file():
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:  # the weights-only unpickler met something not a tensor
                raise UserError(f"{path}: refused to load pickled weights that are not plain tensors "
                                f"({type(e).__name__}); convert the checkpoint to safetensors") from None
            except Exception as e:  # noqa: BLE001 - a torn zip, a truncated legacy pickle
                raise UserError(f"{path}: cannot be read ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0][:120] if str(e).strip() else 'no detail'}); "
                                f"is it damaged or incomplete? download or copy it again") from None


def check_remote_code(folder: Path, trust_remote_code: bool) -> None:
    """A model whose architecture exists only as code inside the checkpoint runs only with explicit consent."""
    from transformers import CONFIG_MAPPING

    path = folder / "config.json"
    if trust_remote_code or not path.exists():
        return
    data = read_json_object(path, "model config")
    model_type = data.get("model_type")
    if data.get("auto_map") and model_type not in CONFIG_MAPPING:
        raise UserError(f"{folder}: architecture {model_type!r} is custom code shipped in the checkpoint; it runs "
                        f"only with trust_remote_code (--trust-remote-code), for checkpoints you trust")


# --- loading -------------------------------------------------------------------------------------------------

def load_tokenizer(folder: Path, padding_side: str = "right", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        # LLaMA ships no pad token; the published recipes pad with unk (else eos): padded positions are
        # masked out, so the choice changes no score.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def enable_gradient_checkpointing(model) -> None:
    """Recompute each layer in backward; non-reentrant, so a frozen embedding table needs no input grads."""
    enable = getattr(model, "activation_checkpointing_enable", None)  # the newer transformers name
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_checkpoint(name_or_path: str, task: str = "embedding", device: str = "cpu",
                    dtype: Optional[str] = None, trust_remote_code: bool = False,
                    config: Optional[CheckpointConfig] = None, training: bool = False,
                    gradient_checkpointing: bool = False) -> LoadedCheckpoint:
    """Load ``name_or_path`` for ``task`` (``embedding``, ``sequence-classification`` or ``causal-lm``).

    For inference the model is in eval mode in ``dtype`` (default: the checkpoint's on a GPU, float32 on a
    CPU), with PyTorch's fused attention; ``fp8`` loads bfloat16 and quantises the decoder layers' matmuls
    (:mod:`.fp8`), and the identity says so (cached bf16 and fp8 outputs are kept apart). With ``training`` the
    weights are in ``dtype`` as given (float32 master weights for full fine-tuning, the compute dtype for a
    frozen LoRA base), the KV cache is off and gradient checkpointing is on when asked for.
    """
    import torch

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (use {', '.join(TASKS)})")
    folder, found = resolve_checkpoint(name_or_path)
    config = config or found or CheckpointConfig()
    weights_dtype = torch_dtype(dtype or config.dtype) if training else resolve_dtype(dtype, device, config.dtype)
    kwargs: dict = dict(dtype=weights_dtype, trust_remote_code=trust_remote_code)
    if task == "sequence-classification":
        kwargs["num_labels"] = 1
    if is_adapter(folder):
        base = resolve_model_path(adapter_base_model(folder, config))
        model = _merge_adapter(_load_base(task, base, kwargs, trust_remote_code), base, folder, task)
        tok_folder = folder if (folder / "tokenizer_config.json").exists() else base
    else:
        if not (folder / "config.json").exists():
            raise UserError(f"{folder}: not a checkpoint (no config.json, no adapter_config.json)")
        model = _from_pretrained(task, folder, kwargs, trust_remote_code, quiet=False)
        tok_folder = folder
    tokenizer = load_tokenizer(tok_folder, config.padding_side, trust_remote_code)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    _prefer_sdpa(model)
    if training:
        model.config.use_cache = False
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
        model.to(torch.device(device)).train()
    else:
        model.to(device).eval()
    identity = checkpoint_identity(folder, config)
    if not training and dtype_name(dtype, device, config.dtype) == FP8:
        from .fp8 import RECIPE, quantize_model

        quantize_model(model)
        identity = fingerprint({"model": identity, "fp8": RECIPE})
    return LoadedCheckpoint(model, tokenizer, config, folder, identity)


def _from_pretrained(task: str, folder: Path, kwargs: dict, trust_remote_code: bool, quiet: bool):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    check_remote_code(folder, trust_remote_code)
    check_weights_safe(folder)
    model_cls = {"embedding": AutoModel, "sequence-classification": AutoModelForSequenceClassification,
                 "causal-lm": AutoModelForCausalLM}[task]
    verbosity = hf_logging.get_verbosity()
    if quiet:
        # the base lacks the task head (e.g. RankLLaMA's score layer): the adapter supplies it, so
        # transformers' "newly initialized" report would only mislead
        hf_logging.set_verbosity_error()
    from safetensors import SafetensorError

    try:
        return model_cls.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, SafetensorError) as e:  # unreadable or cut weights, a config it cannot parse
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{folder}: cannot load the model ({first})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _load_base(task: str, folder: Path, kwargs: dict, trust_remote_code: bool, depth: int = 0):
    """An adapter's base model; a base that is itself an adapter checkpoint (training continued from one, e.g.
    a fine-tune on top of a weakly supervised model) is merged into its own base first."""
    if not is_adapter(folder):
        return _from_pretrained(task, folder, kwargs, trust_remote_code, quiet=True)
    if depth >= 8:
        raise UserError(f"{folder}: more than 8 adapters stacked on each other (does an adapter name itself as "
                        f"its base?)")
    base = resolve_model_path(adapter_base_model(folder, CheckpointConfig.load(folder)))
    return _merge_adapter(_load_base(task, base, kwargs, trust_remote_code, depth + 1), base, folder, task)


def _merge_adapter(model, base: Path, adapter: Path, task: str):
    import warnings

    from peft import PeftModel

    check_weights_safe(adapter)
    # a malformed config: one line naming the file, not peft's traceback
    config = read_json_object(adapter / "adapter_config.json", "adapter config")
    adapter_task = config.get("task_type")
    for key in ("r", "lora_alpha"):
        if key in config and (not isinstance(config[key], int) or isinstance(config[key], bool)):
            raise DataError(adapter / "adapter_config.json", f"{key!r} must be an integer, got {config[key]!r}")
    if task == "sequence-classification" and model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    # An adapter trained on the bare decoder (RepLLaMA, LLaRA) loaded under a head (a reranker initialised from
    # dense-trained weights) belongs on the decoder inside it: its module names are relative to the decoder.
    target = model.base_model if adapter_task == "FEATURE_EXTRACTION" and task != "embedding" else model
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped = PeftModel.from_pretrained(target, str(adapter))
    except RuntimeError as e:  # size mismatches: an adapter trained for another base model
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UserError(f"{adapter}: adapter does not fit base model {base} ({first}); "
                        f"check base_model_name_or_path in adapter_config.json") from None
    except (TypeError, ValueError, KeyError) as e:  # an adapter_config.json of the wrong shape
        raise DataError(adapter / "adapter_config.json", f"not a peft adapter config ({e})") from None
    for w in caught:
        if "missing adapter keys" in str(w.message):  # peft would merge nothing and only warn
            raise UserError(f"{adapter}: the adapter's weights name modules this {task} model does not have "
                            f"(an adapter for another architecture or head?)")
        if "is_gradient_checkpointing" in str(w.message):  # peft reading a renamed transformers property
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    merged = wrapped.merge_and_unload()
    return model if target is not model else merged


def _prefer_sdpa(model) -> None:
    """Use PyTorch's fused attention where the checkpoint asked for eager attention."""
    if getattr(model.config, "_attn_implementation", None) == "eager":
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, AttributeError, ImportError):  # a model without SDPA support keeps eager
            pass
