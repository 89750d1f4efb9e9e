"""Train a RepLLaMA dense retriever (LoRA or full) on a BEIR folder's judged queries.

InfoNCE over (1 positive + N hard negatives) groups plus in-batch negatives (gathered across GPUs under
torchrun), temperature 0.01 (:mod:`pyserini_llama.train.losses.contrastive`). Queries and passages are formatted
and tokenized by the RepLLaMA encoder's own functions, so inference sees the tokens training saw.

Example::

    python -m pyserini_llama.train.repllama --model smollm2-135m --collection beir-scifact \\
        --negatives runs/scifact-train-bm25.negatives.jsonl --output checkpoints/repllama-smollm2
    torchrun --nproc_per_node 2 -m pyserini_llama.train.repllama ... --batch-size 4   # same global batch as 8
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..cli import run_cli
from ..models.config import CheckpointConfig
from ..models.presets import repllama_config
from .arguments import TrainArguments, parse_args
from .collator import EmbeddingCollator
from .losses.contrastive import RepLlamaTrainModel
from .runner import TaskSpec, run_training


def checkpoint_config(args: TrainArguments, tokenizer=None) -> CheckpointConfig:
    return repllama_config(
        base_model=args.model.model, query_max_length=args.data.query_max_length,
        passage_max_length=args.data.passage_max_length, dtype=args.model.dtype,
        extra={"trainer": "pyserini_llama.train.repllama", "temperature": args.training.temperature,
               "lora": None if args.model.full else {"r": args.model.lora_r, "alpha": args.model.lora_alpha}})


SPEC = TaskSpec(
    name="RepLLaMA", task="embedding",
    checkpoint_config=checkpoint_config,
    build_module=lambda model, tok, config, args, device: RepLlamaTrainModel(
        model, tok, config, args.training.temperature, device),
    build_collator=lambda tok, config, args: EmbeddingCollator(tok, config, args.training.pad_to_multiple_of,
                                                               args.data.bucket_tokens),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    run_training(parse_args(argv, "python -m pyserini_llama.train.repllama", __doc__), SPEC)
    return 0


if __name__ == "__main__":
    run_cli(main)
