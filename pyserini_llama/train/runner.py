"""From parsed arguments to a trained checkpoint folder: what every trainer CLI does, in order.

A trainer supplies a :class:`TaskSpec`, its hooks: which data (``load_data``), which model head (``task``), what
to do to the base model before LoRA (``prepare_model``: LLaRA adds its prompt tokens), which checkpoint config
the export carries, which loss module and collator, and what is exported (``export_model``: LLaRA merges its
adapter). :func:`run_training` does the rest, the same way for all of them: process group, output folder,
step batches, base model (through :func:`pyserini_llama.models.load.load_checkpoint`), LoRA, compilation, the
loop, the export.

Example::

    SPEC = TaskSpec(name="RepLLaMA", task="embedding", load_data=load_groups, checkpoint_config=config_for,
                    build_module=..., build_collator=...)
    state = run_training(parse_args(argv, prog, __doc__), SPEC)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..models.config import CheckpointConfig
from ..runtime import resolve_device
from .arguments import TrainArguments
from .data import StepBatches, load_training_data
from .distributed import DistInfo, barrier, init_distributed
from .lora import apply_lora, compile_layers, load_base_model, save_model
from .loop import Trainer, prepare_output


@dataclass(frozen=True)
class TaskSpec:
    name: str  # shown in the summary lines
    task: str  # "embedding" | "sequence-classification" | "causal-lm": the head load_checkpoint builds
    # (args, tokenizer) -> the config written to pyserini_llama.json (encoders and rerankers read it back)
    checkpoint_config: Callable[[TrainArguments, object], CheckpointConfig]
    build_module: Callable[..., torch.nn.Module]  # (model, tokenizer, config, args, device) -> loss module
    build_collator: Callable[..., Callable]  # (tokenizer, config, args) -> collate(examples) -> batch
    # (args, log) -> what StepBatches samples from (len, epoch_order, group); default: judged query groups
    load_data: Optional[Callable[[TrainArguments, object], object]] = None
    prepare_model: Optional[Callable[[object, object, TrainArguments], None]] = None  # (model, tokenizer, args)
    export_model: Optional[Callable[[object, TrainArguments], object]] = None  # (model, args) -> model to save
    lora_task: Optional[str] = None  # the peft wrapper (default: task)
    unit: str = "queries"  # what a batch counts


def load_groups(args: TrainArguments, log) -> object:
    """The default data: groups of judged queries with their positives and hard negatives."""
    d, t = args.data, args.training
    return load_training_data(d.collection, d.split, d.negatives, d.group_size, t.seed, d.data_dir,
                              d.pseudo_queries, log=log, other_positives=d.other_positives,
                              max_queries=d.max_queries)


def pick_device(requested: str, dist_info: DistInfo) -> str:
    device = resolve_device(requested or "auto")  # --device cuda without a GPU: the same error as every CLI
    return f"cuda:{dist_info.local_rank}" if device.startswith("cuda") and dist_info.world_size > 1 else device


def export_checkpoint(model, tokenizer, config: CheckpointConfig, folder: Path, base_model: str) -> None:
    """The folder ``load_checkpoint`` reads: weights (adapter or full), tokenizer, ``pyserini_llama.json``."""
    save_model(model, folder, base_model=base_model, dtype=config.dtype)
    tokenizer.save_pretrained(str(folder))
    config.save(folder)


def run_training(args: TrainArguments, spec: TaskSpec) -> dict:
    """Train as ``args`` say and write the checkpoint to ``args.training.output``; returns the trainer state."""
    joined = not torch.distributed.is_initialized()
    dist_info = init_distributed(args.training.device)
    try:
        return _train(args, spec, dist_info)
    finally:
        if joined and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(args: TrainArguments, spec: TaskSpec, dist_info: DistInfo) -> dict:
    t, m = args.training, args.model
    device = pick_device(t.device, dist_info)
    output = Path(t.output)
    if dist_info.is_main:
        prepare_output(output, t.resume, t.overwrite)
    barrier()

    log = sys.stderr if dist_info.is_main else None
    data = (spec.load_data or load_groups)(args, log)
    batches = StepBatches(data, t.batch_size, t.gradient_accumulation_steps, dist_info.world_size, dist_info.rank)
    total_steps = t.max_steps or t.epochs * batches.steps_per_epoch

    torch.manual_seed(t.seed)  # identical initial weights (LoRA, score head, new tokens) on every rank
    model, tokenizer = load_base_model(m.model, spec.task, m.dtype, device, m.full, m.gradient_checkpointing,
                                       m.trust_remote_code, m.eos_token)
    if spec.prepare_model is not None:
        spec.prepare_model(model, tokenizer, args)
    config = spec.checkpoint_config(args, tokenizer)
    tokenizer.padding_side = config.padding_side
    if not m.full:
        model = apply_lora(model, spec.lora_task or spec.task, m.lora_r, m.lora_alpha, m.lora_dropout,
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
        print(f"{spec.name}, {'full fine-tuning' if m.full else 'LoRA'}: {n_train:,} trainable of {n_all:,} "
              f"parameters; {len(data):,} {spec.unit}, {total_steps} steps of {batches.global_batch} "
              f"({dist_info.world_size} process{'es' if dist_info.world_size > 1 else ''}); "
              f"warm-up {trainer.warmup} steps", file=sys.stderr, flush=True)

    def export(folder: Path) -> None:
        exported = spec.export_model(model, args) if spec.export_model is not None else model
        export_checkpoint(exported, tokenizer, config, folder, m.model)

    state = trainer.fit(batches, collate, output, export, resume=t.resume)
    if dist_info.is_main:
        losses = [loss for _, loss in state["loss_history"]]
        n = max(1, len(losses) // 10)
        print(f"wrote {output}: loss {sum(losses[:n]) / n:.4f} -> {sum(losses[-n:]) / n:.4f}, "
              f"{state['tokens_per_second'] or 0:,.0f} tokens/s", file=sys.stderr)
    return state
