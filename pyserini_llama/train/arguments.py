"""Training options as dataclasses; the CLI parser is generated from their fields, so each option is
declared once (name, default, help) and the library receives typed objects, not an argparse namespace.

Example::

    args = parse_args(["--model", "smollm2-135m", "--collection", "beir-scifact", "--output", "ckpt"],
                      prog="repllama", description="Train RepLLaMA")
    args.model.lora_r, args.data.group_size, args.training.learning_rate   # 32, 16, 0.0001
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, Optional, Sequence

from ..cli import ArgumentParser, non_negative_float, non_negative_int

LORA_TARGET_MODULES = "q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"  # the papers': every projection but k


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata=dict(help=help, **extra))


@dataclass
class DataArguments:
    collection: str = field(metadata=dict(help="BEIR folder, or a collection name such as beir-scifact"))
    data_dir: Optional[str] = _opt(None, "where collection names are looked up", type=str)
    split: str = _opt("train", "qrels split whose judged queries are trained on (never test)")
    negatives: Optional[str] = _opt(None, "hard negatives JSONL from python -m pyserini_llama.mine_negatives "
                                          "(several: comma-separated, pooled per query); without it every "
                                          "negative is a random corpus document", type=str)
    group_size: int = _opt(16, "passages per query: 1 positive + group_size-1 negatives")
    query_max_length: int = _opt(32, "query tokens, special tokens included")
    passage_max_length: int = _opt(196, "passage tokens, special tokens included")
    other_positives: int = _opt(0, "per group, this many of the negatives are documents judged relevant to other "
                                   "training queries (stops a reranker from learning which documents are "
                                   "positives regardless of the query)")
    pseudo_queries: Optional[str] = _opt(None, "add weakly supervised pairs from the corpus: 'title' uses each "
                                               "document's title as the query and its text as the positive",
                                         type=str, choices=["title"])


@dataclass
class ModelArguments:
    model: str = field(metadata=dict(help="base model: a folder, smollm2-135m, or a hub id"))
    full: bool = _opt(False, "full fine-tuning instead of LoRA")
    lora_r: int = _opt(32, "LoRA rank")
    lora_alpha: int = _opt(64, "LoRA alpha")
    lora_dropout: float = _opt(0.1, "LoRA dropout")
    lora_target_modules: str = _opt(LORA_TARGET_MODULES, "comma-separated module names LoRA adapts")
    dtype: str = _opt("bfloat16", "compute dtype (bf16 autocast; LoRA keeps the frozen base in it)",
                      choices=["bfloat16", "float32"])
    gradient_checkpointing: bool = _opt(True, "recompute activations in backward to save memory")
    compile: bool = _opt(False, "torch.compile each decoder layer: faster steps on a GPU after about a minute "
                                "of compilation")


@dataclass
class TrainingArguments:
    output: str = field(metadata=dict(help="checkpoint folder to write (periodic checkpoints go inside it "
                                           "while training)"))
    learning_rate: float = _opt(1e-4, "peak learning rate (AdamW)")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    warmup_steps: int = _opt(100, "linear warm-up steps, capped at 10%% of all steps")
    epochs: int = _opt(1, "passes over the training queries")
    max_steps: int = _opt(0, "stop after this many optimizer steps (0: derived from --epochs)")
    batch_size: int = _opt(8, "queries per device per micro-batch")
    gradient_accumulation_steps: int = _opt(1, "micro-batches per optimizer step")
    max_grad_norm: float = _opt(1.0, "gradient clipping (0: off)")
    temperature: float = _opt(0.01, "InfoNCE temperature (RepLLaMA)")
    save_steps: int = _opt(100, "write a resumable checkpoint every N steps (0: only the final model)")
    save_total_limit: int = _opt(2, "periodic checkpoints kept")
    resume: bool = _opt(False, "continue from the latest checkpoint in --output")
    overwrite: bool = _opt(False, "replace an existing --output")
    seed: int = _opt(42, "seed for initialisation, dropout and sampling")
    device: Optional[str] = _opt(None, "cpu, cuda, cuda:N (default: this rank's GPU if any)", type=str)
    pad_to_multiple_of: int = _opt(8, "pad batches to a multiple of this many tokens (tensor-core friendly)")
    progress: bool = _opt(True, "show a progress bar")


@dataclass
class TrainArguments:
    data: DataArguments
    model: ModelArguments
    training: TrainingArguments

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        from dataclasses import asdict
        return asdict(self)


GROUPS = (("data", DataArguments), ("model", ModelArguments), ("training", TrainingArguments))


def _add_field(parser: argparse._ActionsContainer, f, default: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "")
    if default is MISSING:
        parser.add_argument(flag, dest=f.name, required=True, help=help_text,
                            type=f.metadata.get("type", str))
    elif isinstance(default, bool):
        if default:  # on by default: the flag turns it off
            parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                help=f"turn off: {help_text}")
        else:
            parser.add_argument(flag, dest=f.name, action="store_true", help=help_text)
    else:
        kind = f.metadata.get("type", type(default))
        # every number here is a count, a length, a rate or a weight: never negative, never nan or inf (a bad
        # value is argparse's one-line error naming the option); only the seed may be any integer
        kind = {int: non_negative_int if f.name != "seed" else int, float: non_negative_float}.get(kind, kind)
        parser.add_argument(flag, dest=f.name, type=kind, default=default, choices=f.metadata.get("choices"),
                            help=f"{help_text} (default: {default})")


def build_parser(prog: str, description: str, defaults: Optional[Dict[str, Any]] = None,
                 exclude: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A parser over all three dataclasses; ``defaults`` overrides per trainer, ``exclude`` hides options."""
    defaults = defaults or {}
    parser = ArgumentParser(prog=prog, description=description)
    for title, cls in GROUPS:
        group = parser.add_argument_group(title)
        for f in fields(cls):
            if f.name in exclude:
                continue
            _add_field(group, f, defaults.get(f.name, f.default))
    return parser


def parse_args(argv: Optional[Sequence[str]], prog: str, description: str,
               defaults: Optional[Dict[str, Any]] = None, exclude: Sequence[str] = ()) -> TrainArguments:
    ns = vars(build_parser(prog, description, defaults, exclude).parse_args(argv))
    parts = {}
    for title, cls in GROUPS:
        values = {f.name: ns.get(f.name, (defaults or {}).get(f.name, f.default)) for f in fields(cls)}
        parts[title] = cls(**values)
    args = TrainArguments(**parts)
    validate(args)
    return args


def validate(args: TrainArguments) -> None:
    from ..errors import UserError

    positive = dict(group_size=args.data.group_size, query_max_length=args.data.query_max_length,
                    passage_max_length=args.data.passage_max_length, batch_size=args.training.batch_size,
                    gradient_accumulation_steps=args.training.gradient_accumulation_steps,
                    epochs=args.training.epochs, lora_r=args.model.lora_r)
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.data.group_size < 2:
        raise UserError("--group-size must be at least 2 (one positive and one negative)")
    if args.training.learning_rate <= 0 or args.training.temperature <= 0:
        raise UserError("--learning-rate and --temperature must be positive")
    if args.model.lora_dropout >= 1 or args.training.pad_to_multiple_of < 1 or args.model.lora_alpha < 1:
        raise UserError("--lora-dropout must be below 1, --pad-to-multiple-of and --lora-alpha at least 1")
    if "test" in args.data.split.lower():
        raise UserError(f"refusing to train on split {args.data.split!r}: test judgments are for evaluation "
                        f"only; use --split train")
