"""Tiny random LLaMA models and tokenizers, built offline in a folder: the fixtures of fast tests.

They have the exact folder format of real checkpoints (``config.json``, ``model.safetensors``, tokenizer files),
so every loading path that real 7B checkpoints take is exercised in seconds on a CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

WORDS = ("the of and a to in is was for on that with as by at from protein cell cells gene expression "
         "patients study risk increased associated treatment disease cancer mice human levels effect "
         "query passage document title text flow pressure wing boundary layer heat transfer shock "
         "supersonic velocity model results data analysis method high low rate show shows lack")


def build_tokenizer(folder: Union[str, Path], style: str = "llama", vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on a fixed word list.

    ``style="llama"`` mimics LLaMA-2: ``<unk>``=0, ``<s>``=1, ``</s>``=2, BOS prepended to every segment (also
    in pairs), no pad token. ``style="smollm2"`` mimics SmolLM2: no BOS added, pad = EOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = WORDS.split()
    tok.train_from_iterator([" ".join(text[i:] + text[:i]) for i in range(len(text))], trainer=trainer)
    if style == "llama":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", padding_side="right")
    elif style == "smollm2":
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", pad_token="</s>", padding_side="right")
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    fast.save_pretrained(str(folder))
    return fast


def build_tiny_llama(folder: Union[str, Path], task: str = "causal-lm", style: str = "llama",
                     hidden_size: int = 64, layers: int = 2, seed: int = 0,
                     vocab_size: Optional[int] = None) -> Path:
    """Save a random LLaMA (``causal-lm``, ``embedding`` or ``sequence-classification``) with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder, style=style)
    config = LlamaConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=hidden_size * 2, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=1,
                         eos_token_id=2, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                         num_labels=1)
    torch.manual_seed(seed)
    model_cls = {"causal-lm": LlamaForCausalLM, "embedding": LlamaModel,
                 "sequence-classification": LlamaForSequenceClassification}[task]
    model = model_cls(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder
