"""RankLLaMA's loss: softmax cross-entropy over each group's pointwise scores, the positive at index 0.

The score is the logit of a one-output sequence-classification head on the last real token, computed by the
reranker's own :meth:`~pyserini_llama.rerankers.rankllama.RankLlamaReranker.score_batch`, so inference scores
exactly what training optimised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.config import CheckpointConfig
from ..collator import map_chunks


class RankLlamaTrainModel(torch.nn.Module):
    """Listwise softmax cross-entropy over each group's pointwise scores: ``module(batch) -> loss``.

    Example::

        module = RankLlamaTrainModel(model, tokenizer, config)
        loss = module(PairCollator(tokenizer, config, tokenizer.pad_token_id)(groups))
    """

    def __init__(self, model, tokenizer, config: CheckpointConfig, device: str = "cpu"):
        from ...rerankers.rankllama import RankLlamaReranker

        super().__init__()
        self.model = model
        self.reranker = RankLlamaReranker(model, tokenizer, config, device)

    def forward(self, batch: dict) -> torch.Tensor:
        logits = map_chunks(self.reranker.score_batch, batch["pairs"]).view(-1, batch["group_size"])
        targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.float(), targets)
