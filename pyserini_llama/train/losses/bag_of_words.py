"""LLaRA's adaptation objective (FlagEmbedding research/LLARA): EBAE + EBAR in one forward pass.

Each row is ``prefix + text + EBAE suffix + EBAR suffix``; the EBAR suffix is masked from the EBAE suffix and
reuses its position ids (:func:`~pyserini_llama.train.collator.attention_and_positions`), so one pass
computes both pretext tasks. The objective, as the reference computes it:

* for each suffix, the LM head's logits at its last ``k`` states (the 8 added tokens of the released
  format; the final ``</s>`` of the paper format) are max-pooled over those positions and log-softmaxed;
* the bag-of-words loss of a row is the mean of ``-log p`` over the *unique* token ids of its target (EBAE: the
  input text; EBAR: the next chunk), special tokens excluded, after removing stop words; rows without target
  tokens are skipped, the rest averaged, and the result scaled by ``bow_weight`` (0.1 in the reference);
* the two terms are averaged (or the one present is used), and the reference's next-token loss over the input
  tokens is added with ``lm_weight`` (1.0 in the reference).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ...errors import UserError


def model_attention_mask(allowed: torch.Tensor, model) -> torch.Tensor:
    """The 4-D mask in the form the model's attention takes: bool for SDPA, additive for eager attention.

    transformers 5.x passes a 4-D mask through unchanged (``masking_utils``); eager attention adds it to the
    scores, SDPA takes a boolean "may attend" mask. Flash attention cannot take a custom mask at all.
    """
    impl = getattr(model.config, "_attn_implementation", "sdpa") or "sdpa"
    if impl == "sdpa":
        return allowed
    if impl == "eager":
        return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(torch.float32).min)
    raise UserError(f"attention implementation {impl!r} cannot take LLaRA's custom mask; use sdpa or eager")


def bag_of_words_loss(logits: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
    """``logits (B, k, V)``, ``targets (B, V)`` bool -> mean over rows with targets of mean ``-log p``."""
    log_probs = F.log_softmax(logits.float().max(dim=1).values, dim=-1)
    counts = targets.sum(1)
    rows = counts > 0
    if not bool(rows.any()):
        return None
    per_row = -(log_probs * targets).sum(1) / counts.clamp(min=1)
    return per_row[rows].mean()


def llara_loss(model, batch: Dict[str, torch.Tensor], lm_weight: float = 1.0,
               bow_weight: float = 0.1) -> tuple[torch.Tensor, Dict[str, float]]:
    """The adaptation loss of a collated batch (see the module docstring) and its parts for logging.

    ``model`` is a causal LM (optionally wrapped by peft); the caller handles device and autocast.
    """
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    mask = model_attention_mask(batch["attention_4d"], model)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"],
                     use_cache=False).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
    parts: Dict[str, float] = {}
    terms = []
    for name in ("summarize", "predict"):
        logits = head(hidden[rows, batch[f"{name}_positions"]])
        term = bag_of_words_loss(logits, batch[f"{name}_targets"])
        if term is not None:
            terms.append(term)
            parts[f"bow_{name}"] = float(term.detach())
    if not terms:
        raise UserError("a batch without any target tokens: the corpus text is empty after stop-word removal")
    loss = bow_weight * torch.stack(terms).mean()
    if lm_weight:
        labels = batch["lm_labels"][:, 1:]
        keep = labels != -100
        if not bool(keep.any()):
            raise UserError("a batch without input tokens for the next-token term")
        lm_logits = head(hidden[:, :-1][keep]).float()
        lm = F.cross_entropy(lm_logits, labels[keep])
        parts["lm"] = float(lm.detach())
        loss = loss + lm_weight * lm
    parts["loss"] = float(loss.detach())
    return loss, parts


class LlaraTrainModel(torch.nn.Module):
    """``module(batch) -> loss`` for the shared :class:`~pyserini_llama.train.loop.Trainer`."""

    def __init__(self, model, lm_weight: float = 1.0, bow_weight: float = 0.1):
        super().__init__()
        self.model, self.lm_weight, self.bow_weight = model, lm_weight, bow_weight

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return llara_loss(self.model, batch, self.lm_weight, self.bow_weight)[0]
