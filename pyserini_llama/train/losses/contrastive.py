"""RepLLaMA's loss: InfoNCE over (1 positive + N hard negatives) groups plus in-batch negatives.

Every passage of every query in the (global) micro-batch is a candidate for every query; under ``torchrun`` the
passages are gathered across ranks with gradients. Similarity is the dot product of the encoder's embeddings
(L2-normalised EOS states) divided by the temperature (0.01), computed in float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.config import CheckpointConfig
from ..collator import map_chunks
from ..distributed import gather_with_grad


class RepLlamaTrainModel(torch.nn.Module):
    """The contrastive loss around a RepLLaMA encoder: ``module(batch) -> loss``.

    Example::

        module = RepLlamaTrainModel(model, tokenizer, config, temperature=0.01)
        loss = module(EmbeddingCollator(tokenizer, config)(groups))
    """

    def __init__(self, model, tokenizer, config: CheckpointConfig, temperature: float = 0.01,
                 device: str = "cpu"):
        from ...encoders.repllama import RepLlamaEncoder

        super().__init__()
        self.model = model
        self.encoder = RepLlamaEncoder(model, tokenizer, config, device=device)
        self.temperature = temperature

    def forward(self, batch: dict) -> torch.Tensor:
        queries = self.encoder.embed(batch["query"])
        passages = map_chunks(self.encoder.embed, batch["passage"])
        group_size = passages.shape[0] // queries.shape[0]
        all_passages, offset = gather_with_grad(passages)
        with torch.autocast(queries.device.type, enabled=False):  # logits / 0.01 need float32 precision
            scores = queries.float() @ all_passages.float().T / self.temperature
        targets = offset + torch.arange(queries.shape[0], device=queries.device) * group_size
        return F.cross_entropy(scores, targets)
