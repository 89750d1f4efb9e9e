"""Train RepLLaMA: InfoNCE over (1 positive + N hard negatives) groups plus in-batch negatives.

Every passage of every query in the (global) batch is a candidate for every query; under ``torchrun`` the
passages are gathered across ranks with gradients. Similarity is the dot product of L2-normalised EOS
embeddings divided by the temperature (0.01), computed in float32. Queries and passages are formatted and
tokenized by the RepLLaMA encoder's own functions, so inference sees the tokens training saw.

Example::

    python -m pyserini_llama.train.repllama --model smollm2-135m --collection beir-scifact \\
        --negatives runs/scifact-train-bm25.negatives.jsonl --output checkpoints/repllama-smollm2
    torchrun --nproc_per_node 2 -m pyserini_llama.train.repllama ... --batch-size 4   # same global batch as 8
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..cli import run_cli
from ..models.config import CheckpointConfig
from ..models.presets import repllama_config
from .arguments import TrainArguments, parse_args
from .collator import EmbeddingCollator
from .distributed import gather_with_grad
from .runner import TaskSpec, run_training


class RepLlamaTrainModel(torch.nn.Module):
    """The contrastive loss around a RepLLaMA encoder: ``module(batch) -> loss``.

    Example::

        module = RepLlamaTrainModel(model, tokenizer, config, temperature=0.01)
        loss = module(EmbeddingCollator(tokenizer, config)(groups))
    """

    def __init__(self, model, tokenizer, config: CheckpointConfig, temperature: float = 0.01,
                 device: str = "cpu"):
        from ..encoders.repllama import RepLlamaEncoder

        super().__init__()
        self.model = model
        self.encoder = RepLlamaEncoder(model, tokenizer, config, device=device)
        self.temperature = temperature

    def forward(self, batch: dict) -> torch.Tensor:
        queries = self.encoder.embed(batch["query"])
        passages = self.encoder.embed(batch["passage"])
        group_size = passages.shape[0] // queries.shape[0]
        all_passages, offset = gather_with_grad(passages)
        with torch.autocast(queries.device.type, enabled=False):  # logits / 0.01 need float32 precision
            scores = queries.float() @ all_passages.float().T / self.temperature
        targets = offset + torch.arange(queries.shape[0], device=queries.device) * group_size
        return F.cross_entropy(scores, targets)


def checkpoint_config(args: TrainArguments) -> CheckpointConfig:
    return repllama_config(
        base_model=args.model.model, query_max_length=args.data.query_max_length,
        passage_max_length=args.data.passage_max_length, dtype=args.model.dtype,
        extra={"trainer": "pyserini_llama.train.repllama", "temperature": args.training.temperature,
               "lora": None if args.model.full else {"r": args.model.lora_r, "alpha": args.model.lora_alpha}})


SPEC = TaskSpec(
    task="embedding",
    checkpoint_config=checkpoint_config,
    build_module=lambda model, tok, config, args, device: RepLlamaTrainModel(
        model, tok, config, args.training.temperature, device),
    build_collator=lambda tok, config, args: EmbeddingCollator(tok, config, args.training.pad_to_multiple_of),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv, prog="python -m pyserini_llama.train.repllama",
                      description="Train a RepLLaMA dense retriever (LoRA or full) on a BEIR folder.")
    run_training(args, SPEC)
    return 0


if __name__ == "__main__":
    run_cli(main)
