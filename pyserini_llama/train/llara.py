"""LLaRA / Llama2Vec unsupervised adaptation: EBAE + EBAR in one forward pass (FlagEmbedding research/LLARA).

Each row is ``prefix + text + EBAE suffix + EBAR suffix``; the EBAR suffix is masked from the EBAE suffix and
reuses its position ids (:func:`~pyserini_llama.train.llara_data.attention_and_positions`), so one pass
computes both pretext tasks. The objective, as the reference computes it:

* for each suffix, the LM head's logits at its last ``k`` states (the 8 added tokens of the released
  format; the final ``</s>`` of the paper format) are max-pooled over those positions and log-softmaxed;
* the bag-of-words loss of a row is the mean of ``-log p`` over the *unique* token ids of its target (EBAE: the
  input text; EBAR: the next chunk), special tokens excluded, after removing stop words; rows without target
  tokens are skipped, the rest averaged, and the result scaled by ``bow_weight`` (0.1 in the reference);
* the two terms are averaged (or the one present is used), and the reference's next-token loss over the input
  tokens is added with ``lm_weight`` (1.0 in the reference).

Usage::

    python -m pyserini_llama.train.llara --model smollm2-135m --corpus corpus.jsonl --output llara-ckpt
"""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..cli import run_cli
from ..encoders.llara import add_prompt_tokens, prompt_format
from ..errors import UserError
from ..models.presets import PROMPT_FORMATS
from .llara_data import LlaraCollator, PretrainExample, load_examples


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


class ExampleData:
    """Adaptation examples in the shape :class:`~pyserini_llama.train.data.StepBatches` samples from.

    The order of an epoch is a pure function of (seed, epoch), so ``--resume`` continues with the same batches.
    """

    def __init__(self, examples: Sequence[PretrainExample], seed: int = 42):
        self.examples, self.seed = list(examples), seed

    def __len__(self) -> int:
        return len(self.examples)

    def epoch_order(self, epoch: int) -> List[int]:
        order = list(range(len(self.examples)))
        random.Random(f"{self.seed}:llara:{epoch}").shuffle(order)
        return order

    def group(self, index: int, epoch: int) -> PretrainExample:
        return self.examples[index]


def build_parser():
    from ..cli import non_negative_float, positive_int
    from .arguments import build_parser as build_training_parser

    data_fields = ("collection", "data_dir", "split", "negatives", "group_size", "query_max_length",
                   "passage_max_length", "pseudo_queries")
    parser = build_training_parser(
        "python -m pyserini_llama.train.llara",
        "Adapt a causal LM for dense retrieval without labels (LLaRA: EBAE + EBAR in one pass).",
        # the reference's adaptation recipe: full-parameter, lr 1e-5; its LoRA option: r 64, alpha 16, all 7
        defaults=dict(learning_rate=1e-5, lora_r=64, lora_alpha=16, save_steps=500,
                      lora_target_modules="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"),
        exclude=data_fields + ("temperature", "full"))
    g = parser.add_argument_group("llara")
    g.add_argument("--corpus", nargs="+", required=True,
                   help="corpus JSONL files or BEIR folders (text only: no queries, no judgments are read)")
    g.add_argument("--format", default="released", choices=sorted(PROMPT_FORMATS),
                   help="prompt format: 'released' (8 added tokens per suffix) or 'paper' (default: released)")
    g.add_argument("--max-length", type=positive_int, default=128,
                   help="tokens per row, both suffixes included (the reference's cutoff_len; default: 128)")
    g.add_argument("--chunk-words", type=positive_int, default=64,
                   help="sentences are packed into chunks of at most this many words (default: 64)")
    g.add_argument("--keep-stop-words", action="store_true",
                   help="keep stop words in the bag-of-words targets (the reference removes them)")
    g.add_argument("--lm-weight", type=non_negative_float, default=1.0,
                   help="weight of the next-token loss on the input tokens (reference: 1; 0 for pure BoW)")
    g.add_argument("--bow-weight", type=non_negative_float, default=0.1,
                   help="weight of the averaged EBAE/EBAR bag-of-words loss (reference: 0.1)")
    g.add_argument("--lora", action="store_true",
                   help="train a LoRA adapter (merged into the exported model) instead of all parameters")
    g.add_argument("--query-max-length", type=positive_int, default=64, help="saved in the checkpoint config")
    g.add_argument("--passage-max-length", type=positive_int, default=512, help="saved in the checkpoint config")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from dataclasses import fields

    from .arguments import ModelArguments, TrainingArguments

    ns = vars(build_parser().parse_args(argv))
    t = TrainingArguments(**{f.name: ns[f.name] for f in fields(TrainingArguments) if f.name in ns})
    m = ModelArguments(**{f.name: ns[f.name] for f in fields(ModelArguments) if f.name in ns},
                       full=not ns["lora"])
    positive = dict(max_length=ns["max_length"], chunk_words=ns["chunk_words"], batch_size=t.batch_size,
                    gradient_accumulation_steps=t.gradient_accumulation_steps, epochs=t.epochs)
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if t.learning_rate <= 0:
        raise UserError("--learning-rate must be positive")
    adapt(t, m, ns)
    return 0


def adapt(t, m, ns: dict) -> dict:
    """Run the adaptation and export the checkpoint folder; returns the trainer state."""
    from .data import StepBatches
    from .distributed import barrier, init_distributed
    from .lora import apply_lora, compile_layers, load_base_model
    from .loop import Trainer, prepare_output
    from .runner import export_checkpoint, pick_device

    dist_info = init_distributed(t.device)
    device = pick_device(t.device, dist_info)
    output = Path(t.output)
    if dist_info.is_main:
        prepare_output(output, t.resume, t.overwrite)
    barrier()
    fmt = prompt_format(ns["format"])
    examples = load_examples([Path(p) for p in ns["corpus"]], ns["chunk_words"])
    batches = StepBatches(ExampleData(examples, t.seed), t.batch_size, t.gradient_accumulation_steps,
                          dist_info.world_size, dist_info.rank)
    total_steps = t.max_steps or t.epochs * batches.steps_per_epoch

    torch.manual_seed(t.seed)
    # the causal LM: its head scores the bag of words; SDPA attention takes LLaRA's custom 4-D mask
    model, tokenizer = load_base_model(m.model, "causal-lm", m.dtype, device, m.full, m.gradient_checkpointing)
    tokenizer.padding_side = "left"
    add_prompt_tokens(tokenizer, model, fmt)
    if not m.full:
        # the peft task type only names the wrapper; the adapter is merged before export
        model = apply_lora(model, "embedding", m.lora_r, m.lora_alpha, m.lora_dropout,
                           [s.strip() for s in m.lora_target_modules.split(",") if s.strip()])
    if m.compile:
        compile_layers(model)
    config = fmt.checkpoint_config(tokenizer.eos_token, base_model=m.model, dtype=m.dtype,
                                   query_max_length=ns["query_max_length"],
                                   passage_max_length=ns["passage_max_length"])
    config.extra.update(trainer="pyserini_llama.train.llara", lora=not m.full, max_length=ns["max_length"],
                        chunk_words=ns["chunk_words"], lm_weight=ns["lm_weight"], bow_weight=ns["bow_weight"])
    collate = LlaraCollator(tokenizer, fmt, ns["max_length"], not ns["keep_stop_words"], "left",
                            t.pad_to_multiple_of)
    module = LlaraTrainModel(model, ns["lm_weight"], ns["bow_weight"])
    torch.manual_seed(t.seed + dist_info.rank)
    trainer = Trainer(module, t, total_steps, dist_info, device, m.dtype)
    if dist_info.is_main:
        print(f"LLaRA ({fmt.name} prompts, {'LoRA' if not m.full else 'full'}): {len(examples)} examples, "
              f"{total_steps} steps of {batches.global_batch}, warm-up {trainer.warmup}",
              file=sys.stderr, flush=True)

    def export(folder: Path) -> None:
        merged = model.merge_and_unload() if not m.full else model
        export_checkpoint(merged, tokenizer, config, folder, m.model)

    state = trainer.fit(batches, collate, output, export, resume=t.resume)
    if dist_info.is_main:
        losses = [loss for _, loss in state["loss_history"]]
        n = max(1, len(losses) // 10)
        print(f"wrote {output}: loss {sum(losses[:n]) / n:.4f} -> {sum(losses[-n:]) / n:.4f}", file=sys.stderr)
    return state


if __name__ == "__main__":
    run_cli(main)
