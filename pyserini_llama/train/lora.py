"""The trainable model: a base model from a name or folder, wrapped in LoRA (the papers' default) or left
whole for full fine-tuning, and saved in the published checkpoint format.

LoRA defaults are RepLLaMA/RankLLaMA's: r 32, alpha 64, dropout 0.1 on q, v, o, gate, up and down projections
(not k). Adapters are written as ``adapter_config.json`` + ``adapter_model.safetensors`` whose
``base_model_name_or_path`` is the base model's *name* as given (``smollm2-135m``, a hub id), not the local
folder it resolved to, so a checkpoint works on any machine that can resolve that name.

Example::

    model, tokenizer = load_base_model("smollm2-135m", task="embedding", dtype="bfloat16", device="cuda",
                                       full=False)
    model = apply_lora(model, task="embedding", r=32, alpha=64, dropout=0.1)
    save_model(model, "out/", base_model="smollm2-135m", dtype="bfloat16")
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional, Sequence

from ..errors import UserError
from .arguments import LORA_TARGET_MODULES

PEFT_TASK = {"embedding": "FEATURE_EXTRACTION", "sequence-classification": "SEQ_CLS",
             "causal-lm": "CAUSAL_LM"}


def load_base_model(name_or_path: str, task: str, dtype: str, device: str, full: bool,
                    gradient_checkpointing: bool = True, trust_remote_code: bool = False,
                    eos_token: Optional[str] = None):
    """The base model and tokenizer for ``task``; LoRA keeps frozen weights in ``dtype``, full fine-tuning in
    float32 (AdamW updates are too small for bf16; autocast runs the matmuls in bf16 either way). A checkpoint
    with an adapter is merged first, so training can continue from any checkpoint (a new adapter then goes on
    top of the merged weights)."""
    from ..models.load import load_checkpoint

    loaded = load_checkpoint(name_or_path, task=task, device=device, dtype="float32" if full else dtype,
                             trust_remote_code=trust_remote_code, training=True,
                             gradient_checkpointing=gradient_checkpointing)
    if eos_token is not None:
        use_eos_token(loaded.tokenizer, eos_token)
    if task == "sequence-classification":
        loaded.model.config.pad_token_id = loaded.tokenizer.pad_token_id  # the score head finds the last token
    return loaded.model, loaded.tokenizer


def use_eos_token(tokenizer, token: str) -> None:
    """Make ``token`` (one vocabulary entry) the EOS that rows end with and that RepLLaMA pools.

    Which entry a tokenizer calls EOS can depend on the transformers release that read it (SmolLM2's GGUF:
    ``<|im_start|>`` under 5.17, ``<|im_end|>`` under 5.24), so a recipe names the token it trains with."""
    if token not in tokenizer.get_vocab():
        raise UserError(f"argument --eos-token: {token!r} is not one entry of the tokenizer's vocabulary "
                        f"(its EOS is {tokenizer.eos_token!r})")
    tokenizer.eos_token = token


def compile_layers(model) -> int:
    """``torch.compile`` each decoder layer in place (regional compilation); returns how many were compiled.

    Eager LLaMA runs norms, rotary embeddings, activations and LoRA dropout as separate memory-bound kernels
    between the matmuls; compiling the layer fuses them. Compiling layers rather than the whole model keeps
    gradient checkpointing (which wraps each layer's call) and peft's wrappers outside the graph; every layer
    shares one compiled graph, and dynamic shapes serve every padded batch length.
    """
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] == "layers":
            for layer in module:
                layer.compile(dynamic=True)
            return len(module)
    return 0


def lora_config(task: str, r: int = 32, alpha: int = 64, dropout: float = 0.1,
                target_modules: Sequence[str] = tuple(LORA_TARGET_MODULES.split(","))):
    from peft import LoraConfig

    return LoraConfig(task_type=PEFT_TASK[task], r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=list(target_modules), bias="none",
                      # the score head is new: it must train and ship with the adapter
                      modules_to_save=["score"] if task == "sequence-classification" else None)


def apply_lora(model, task: str, r: int = 32, alpha: int = 64, dropout: float = 0.1,
               target_modules: Sequence[str] = tuple(LORA_TARGET_MODULES.split(","))):
    from peft import get_peft_model

    # peft keeps adapter weights in float32 over a bf16 base (autocast_adapter_dtype), as mixed precision wants
    return get_peft_model(model, lora_config(task, r, alpha, dropout, target_modules))


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def trainable_parameters(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def save_model(model, folder: Path, base_model: str, dtype: str) -> None:
    """Write an adapter (LoRA) or a full safetensors model into ``folder``, weights cast to ``dtype``."""
    import torch

    from ..runtime import torch_dtype

    folder = Path(folder)
    target = torch_dtype(dtype)  # the dtype named, whatever device trained
    if is_peft(model):
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = {k: (v.to(target) if v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in get_peft_model_state_dict(model).items()}
        save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(model.peft_config["default"])
        config.base_model_name_or_path, config.inference_mode = base_model, True
        config.save_pretrained(str(folder))
    else:
        model.config.use_cache = True
        with torch.no_grad():
            weights = {k: v.detach().to(target) for k, v in model.state_dict().items()}
        model.save_pretrained(str(folder), state_dict=weights, safe_serialization=True)
        # Record the name, not a machine path: "_name_or_path" would otherwise say where it trained.
        config_path = folder / "config.json"
        data = json.loads(config_path.read_text())
        data["_name_or_path"] = base_model
        data["dtype"] = str(target).replace("torch.", "")
        config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
