"""From parsed arguments to a trained checkpoint folder: what both trainer CLIs do, in order.

A trainer supplies a :class:`TaskSpec` (which model head, which loss module, which collator, which checkpoint
config); :func:`run_training` does the rest: process group, data, base model + LoRA, the loop, the export.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..models.config import CheckpointConfig
from .arguments import TrainArguments
from .data import StepBatches, load_training_data
from .distributed import DistInfo, barrier, init_distributed
from .lora import apply_lora, compile_layers, load_base_model, save_model
from .loop import Trainer, prepare_output


@dataclass(frozen=True)
class TaskSpec:
    task: str  # "embedding" | "sequence-classification" (the head load_checkpoint uses)
    checkpoint_config: Callable[[TrainArguments], CheckpointConfig]
    build_module: Callable[..., torch.nn.Module]  # (model, tokenizer, config, args, device) -> loss module
    build_collator: Callable[..., Callable]  # (tokenizer, config, args) -> collate(groups) -> batch


def pick_device(requested, dist_info: DistInfo) -> str:
    from ..runtime import resolve_device

    device = resolve_device(requested or "auto")  # --device cuda without a GPU: the same error as every CLI
    if device.startswith("cuda") and dist_info.world_size > 1:
        return f"cuda:{dist_info.local_rank}"
    return device


def export_checkpoint(model, tokenizer, config: CheckpointConfig, folder: Path, base_model: str) -> None:
    """The folder ``load_checkpoint`` reads: weights (adapter or full), tokenizer, ``pyserini_llama.json``."""
    save_model(model, folder, base_model=base_model, dtype=config.dtype)
    tokenizer.save_pretrained(str(folder))
    config.save(folder)


def run_training(args: TrainArguments, spec: TaskSpec) -> dict:
    """Train as ``args`` say and write the checkpoint to ``args.training.output``; returns the trainer state."""
    t = args.training
    joined = not torch.distributed.is_initialized()
    dist_info = init_distributed(t.device)
    try:
        return _train(args, spec, dist_info)
    finally:
        if joined and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(args: TrainArguments, spec: TaskSpec, dist_info: DistInfo) -> dict:
    t = args.training
    device = pick_device(t.device, dist_info)
    output = Path(t.output)
    if dist_info.is_main:
        prepare_output(output, t.resume, t.overwrite)
    barrier()

    d = args.data
    data = load_training_data(d.collection, d.split, d.negatives, d.group_size, t.seed, d.data_dir,
                              d.pseudo_queries, log=sys.stderr if dist_info.is_main else None,
                              other_positives=d.other_positives)
    batches = StepBatches(data, t.batch_size, t.gradient_accumulation_steps, dist_info.world_size, dist_info.rank)
    total_steps = t.max_steps or t.epochs * batches.steps_per_epoch

    config = spec.checkpoint_config(args)
    torch.manual_seed(t.seed)  # identical initial weights (LoRA, score head) on every rank
    m = args.model
    model, tokenizer = load_base_model(m.model, spec.task, m.dtype, device, m.full, m.gradient_checkpointing)
    tokenizer.padding_side = config.padding_side
    if not m.full:
        model = apply_lora(model, spec.task, m.lora_r, m.lora_alpha, m.lora_dropout,
                           [s.strip() for s in m.lora_target_modules.split(",") if s.strip()])
    if m.compile:
        compile_layers(model)
    module = spec.build_module(model, tokenizer, config, args, device)
    collate = spec.build_collator(tokenizer, config, args)
    torch.manual_seed(t.seed + dist_info.rank)  # per-rank dropout streams

    trainer = Trainer(module, t, total_steps, dist_info, device, m.dtype)
    if dist_info.is_main:
        n_train = sum(p.numel() for p in trainer.params)
        n_all = sum(p.numel() for p in module.parameters())
        print(f"{'full fine-tuning' if m.full else 'LoRA'}: {n_train:,} trainable of {n_all:,} parameters; "
              f"{total_steps} steps of {batches.global_batch} queries x {d.group_size} passages "
              f"({dist_info.world_size} process{'es' if dist_info.world_size > 1 else ''}); "
              f"warm-up {trainer.warmup} steps", file=sys.stderr, flush=True)
    state = trainer.fit(batches, collate, output,
                        export=lambda folder: export_checkpoint(model, tokenizer, config, folder, m.model),
                        resume=t.resume)
    if dist_info.is_main:
        losses = [loss for _, loss in state["loss_history"]]
        head, tail = losses[:max(1, len(losses) // 10)], losses[-max(1, len(losses) // 10):]
        print(f"wrote {output}: loss {sum(head) / len(head):.4f} -> {sum(tail) / len(tail):.4f}, "
              f"{state['tokens_per_second'] or 0:,.0f} tokens/s", file=sys.stderr)
    return state
