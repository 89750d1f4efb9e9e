"""Train RankLLaMA: cross-entropy over groups of (1 positive + N negatives), the positive at index 0.

The score is the logit of a one-output sequence-classification head on the last real token; with LoRA the
head trains in full and ships inside the adapter (``modules_to_save=["score"]``). Inputs are the RankLLaMA
reranker's own pair encoding (``query: {q}`` / ``document: {title} {text}``, no EOS), so inference scores
exactly the inputs training saw. Negatives should come from a first-stage retriever's top results (the paper
used RepLLaMA's top 200): mine them with ``python -m pyserini_llama.mine_negatives``.

Example::

    python -m pyserini_llama.train.rankllama --model smollm2-135m --collection beir-scifact \\
        --negatives runs/scifact-train-repllama.negatives.jsonl --output checkpoints/rankllama-smollm2
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..cli import run_cli
from ..models.config import CheckpointConfig
from ..models.presets import rankllama_v1_config
from .arguments import TrainArguments, parse_args
from .collator import PairCollator
from .runner import TaskSpec, run_training

DEFAULTS = {"passage_max_length": 164}  # RankLLaMA v1: query 32 + document 164 tokens


class RankLlamaTrainModel(torch.nn.Module):
    """Listwise softmax cross-entropy over each group's pointwise scores: ``module(batch) -> loss``.

    Example::

        module = RankLlamaTrainModel(model, tokenizer, config)
        loss = module(PairCollator(tokenizer, config, tokenizer.pad_token_id)(groups))
    """

    def __init__(self, model, tokenizer, config: CheckpointConfig, device: str = "cpu"):
        from ..rerankers.rankllama import RankLlamaReranker

        super().__init__()
        self.model = model
        self.reranker = RankLlamaReranker(model, tokenizer, config, device)

    def forward(self, batch: dict) -> torch.Tensor:
        logits = self.reranker.score_batch(batch["pairs"]).view(-1, batch["group_size"])
        targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.float(), targets)


def checkpoint_config(args: TrainArguments) -> CheckpointConfig:
    return rankllama_v1_config(
        base_model=args.model.model, query_max_length=args.data.query_max_length,
        passage_max_length=args.data.passage_max_length, dtype=args.model.dtype,
        extra={"trainer": "pyserini_llama.train.rankllama",
               "lora": None if args.model.full else {"r": args.model.lora_r, "alpha": args.model.lora_alpha}})


SPEC = TaskSpec(
    task="sequence-classification",
    checkpoint_config=checkpoint_config,
    build_module=lambda model, tok, config, args, device: RankLlamaTrainModel(model, tok, config, device),
    build_collator=lambda tok, config, args: PairCollator(tok, config, tok.pad_token_id,
                                                          args.training.pad_to_multiple_of),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv, prog="python -m pyserini_llama.train.rankllama",
                      description="Train a RankLLaMA pointwise reranker (LoRA or full) on a BEIR folder.",
                      defaults=DEFAULTS, exclude=("temperature",))
    run_training(args, SPEC)
    return 0


if __name__ == "__main__":
    run_cli(main)
