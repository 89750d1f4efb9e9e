"""Adapt a causal LM for dense retrieval without labels (LLaRA / Llama2Vec: EBAE + EBAR in one pass).

Reads corpus text only (BEIR ``corpus.jsonl[.gz]``, BEIR folders, Pyserini JsonCollection JSONL, or the
reference's own ``{"input", "output_summarize", "output_predict"}`` JSONL): documents are split into sentence
chunks (:mod:`pyserini_llama.train.llara_data`), each chunk predicts its own tokens (EBAE) and the next chunk's
(EBAR) through the LM head (:mod:`pyserini_llama.train.losses.bag_of_words`). Full-parameter by default (the
reference: lr 1e-5), or ``--lora`` (r 64, alpha 16, all seven projections; merged before export). The output is
a full model folder whose ``pyserini_llama.json`` has kind ``llara``; the RepLLaMA trainer can fine-tune it.

Example::

    python -m pyserini_llama.train.llara --model smollm2-135m --corpus ../data/beir-scifact ../data/cranfield \\
        --output checkpoints/llara-smollm2 --max-steps 2500 --batch-size 32
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..cli import run_cli
from ..encoders.llara import add_prompt_tokens, prompt_format
from ..models.config import CheckpointConfig
from .arguments import CorpusArguments, TrainArguments, parse_args
from .collator import LlaraCollator
from .llara_data import ExampleData, load_examples
from .losses.bag_of_words import LlaraTrainModel
from .runner import TaskSpec, run_training

# The reference's adaptation recipe: full-parameter, lr 1e-5; its LoRA option: r 64, alpha 16, all 7 projections.
DEFAULTS = dict(full=True, learning_rate=1e-5, lora_r=64, lora_alpha=16, save_steps=500,
                lora_target_modules="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")


def checkpoint_config(args: TrainArguments, tokenizer) -> CheckpointConfig:
    d, m = args.data, args.model
    config = prompt_format(d.format).checkpoint_config(
        tokenizer.eos_token, base_model=m.model, dtype=m.dtype, query_max_length=d.query_max_length,
        passage_max_length=d.passage_max_length)
    config.extra.update(trainer="pyserini_llama.train.llara", lora=not m.full, max_length=d.max_length,
                        chunk_words=d.chunk_words, lm_weight=d.lm_weight, bow_weight=d.bow_weight)
    return config


SPEC = TaskSpec(
    name="LLaRA", task="causal-lm", unit="text chunks",
    # the causal LM: its head scores the bag of words; SDPA attention takes LLaRA's custom 4-D mask
    load_data=lambda args, log: ExampleData(load_examples(args.data.corpus, args.data.chunk_words),
                                            args.training.seed),
    prepare_model=lambda model, tok, args: add_prompt_tokens(tok, model, prompt_format(args.data.format)),
    checkpoint_config=checkpoint_config,
    build_module=lambda model, tok, config, args, device: LlaraTrainModel(model, args.data.lm_weight,
                                                                          args.data.bow_weight),
    build_collator=lambda tok, config, args: LlaraCollator(
        tok, prompt_format(args.data.format), args.data.max_length, not args.data.keep_stop_words,
        config.padding_side, args.training.pad_to_multiple_of),
    export_model=lambda model, args: model if args.model.full else model.merge_and_unload(),
    lora_task="embedding",  # the peft wrapper only; the adapter is merged before export
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv, "python -m pyserini_llama.train.llara", __doc__, data=CorpusArguments,
                      defaults=DEFAULTS, exclude=("temperature",))
    run_training(args, SPEC)
    return 0


if __name__ == "__main__":
    run_cli(main)
