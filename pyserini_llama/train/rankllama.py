"""Train a RankLLaMA pointwise reranker (LoRA or full) on a BEIR folder's judged queries.

Listwise cross-entropy over groups of (1 positive + N negatives), the positive first
(:mod:`pyserini_llama.train.losses.listwise`). The score is the logit of a one-output sequence-classification head
on the last real token; with LoRA the head trains in full and ships inside the adapter. Inputs are the reranker's
own pair encoding (``query: {q}`` / ``document: {title} {text}``, no EOS). Negatives should come from a
first-stage retriever's top results (the paper used RepLLaMA's top 200): mine them with
``python -m pyserini_llama.mine_negatives``. ``--model`` may be any checkpoint, e.g. a trained RepLLaMA: its
adapter is merged and the score head starts fresh on top of its weights.

Example::

    python -m pyserini_llama.train.rankllama --model smollm2-135m --collection beir-scifact \\
        --negatives runs/scifact-train-repllama.negatives.jsonl --output checkpoints/rankllama-smollm2
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..cli import run_cli
from ..models.config import CheckpointConfig
from ..models.presets import rankllama_v1_config
from .arguments import TrainArguments, parse_args
from .collator import PairCollator
from .losses.listwise import RankLlamaTrainModel
from .runner import TaskSpec, run_training

DEFAULTS = {"passage_max_length": 164}  # RankLLaMA v1: query 32 + document 164 tokens


def checkpoint_config(args: TrainArguments, tokenizer=None) -> CheckpointConfig:
    return rankllama_v1_config(
        base_model=args.model.model, query_max_length=args.data.query_max_length,
        passage_max_length=args.data.passage_max_length, dtype=args.model.dtype,
        extra={"trainer": "pyserini_llama.train.rankllama",
               "lora": None if args.model.full else {"r": args.model.lora_r, "alpha": args.model.lora_alpha}})


SPEC = TaskSpec(
    name="RankLLaMA", task="sequence-classification",
    checkpoint_config=checkpoint_config,
    build_module=lambda model, tok, config, args, device: RankLlamaTrainModel(model, tok, config, device),
    build_collator=lambda tok, config, args: PairCollator(tok, config, tok.pad_token_id,
                                                          args.training.pad_to_multiple_of, args.data.bucket_tokens),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv, "python -m pyserini_llama.train.rankllama", __doc__, defaults=DEFAULTS,
                      exclude=("temperature",))
    run_training(args, SPEC)
    return 0


if __name__ == "__main__":
    run_cli(main)
