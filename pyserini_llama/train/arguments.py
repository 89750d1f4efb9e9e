"""Training options as dataclasses; the CLI parser is generated from their fields, so each option is
declared once (name, default, type, help) and the library receives typed objects, not an argparse namespace.

Values are checked by the :mod:`pyserini_llama.cli` argument types while parsing, so a bad value is one line
naming the argument (``error: ...: argument --batch-size: must be at least 1, got 0``) before anything loads.
Each trainer picks its data group (:class:`DataArguments` for RepLLaMA/RankLLaMA, :class:`CorpusArguments` for
LLaRA) and its own defaults.

Example::

    args = parse_args(["--model", "smollm2-135m", "--collection", "beir-scifact", "--output", "ckpt"],
                      prog="repllama", doc="Train RepLLaMA")
    args.model.lora_r, args.data.group_size, args.training.learning_rate   # 32, 16, 0.0001
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Sequence, Type, Union

from .. import cli
from ..errors import UserError

LORA_TARGET_MODULES = "q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"  # the papers': every projection but k


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A field with its CLI metadata: ``type`` (a cli validator), ``choices``, ``nargs``, and for options that are
    on by default ``off_flag`` (the flag that turns them off; default ``no-<name>``)."""
    return field(default=default, metadata=dict(help=help, **extra))


@dataclass
class DataArguments:
    """Judged queries of a BEIR folder (RepLLaMA, RankLLaMA)."""

    collection: str = field(metadata=dict(help="BEIR folder, or a collection name such as beir-scifact"))
    data_dir: Optional[str] = _opt(None, "where collection names are looked up", type=str)
    split: str = _opt("train", "qrels split whose judged queries are trained on (never test)")
    max_queries: int = _opt(0, "train on at most this many of the split's queries: those with the smallest "
                               "SHA-1 of their id, the same subsample on every machine and for every seed "
                               "(0: all)", type=cli.non_negative_int)
    negatives: Optional[str] = _opt(None, "hard negatives JSONL from python -m pyserini_llama.mine_negatives "
                                          "(several: comma-separated, pooled per query); without it every "
                                          "negative is a random corpus document", type=str)
    group_size: int = _opt(16, "passages per query: 1 positive + group_size-1 negatives", type=cli.int_at_least(2))
    query_max_length: int = _opt(32, "query tokens, special tokens included", type=cli.int_at_least(2))
    passage_max_length: int = _opt(196, "passage tokens, special tokens included", type=cli.int_at_least(2))
    other_positives: int = _opt(0, "per group, this many of the negatives are documents judged relevant to other "
                                   "training queries (stops a reranker from learning which documents are "
                                   "positives regardless of the query)", type=cli.non_negative_int)
    pseudo_queries: Optional[str] = _opt(None, "add weakly supervised pairs from the corpus: 'title' uses each "
                                               "document's title as the query and its text as the positive",
                                         type=str, choices=["title"])
    bucket_tokens: int = _opt(0, "run each micro-batch's passages (pairs for RankLLaMA) through the model in "
                                 "length-sorted chunks of at most this many padded tokens instead of one batch "
                                 "padded to its longest: the same loss, less padding (0: off)",
                              type=cli.non_negative_int)


@dataclass
class CorpusArguments:
    """Plain corpus text for LLaRA's unsupervised adaptation (no queries, no judgments)."""

    corpus: Sequence[str] = field(metadata=dict(help="corpus JSONL files or BEIR folders (text only: no queries, "
                                                     "no judgments are read)", nargs="+"))
    format: str = _opt("released", "prompt format: 'released' (8 added tokens per suffix) or 'paper'",
                       choices=["paper", "released"])
    max_length: int = _opt(128, "tokens per row, both suffixes included (the reference's cutoff_len)",
                           type=cli.positive_int)
    chunk_words: int = _opt(64, "sentences are packed into chunks of at most this many words",
                            type=cli.positive_int)
    keep_stop_words: bool = _opt(False, "keep stop words in the bag-of-words targets (the reference removes them)")
    lm_weight: float = _opt(1.0, "weight of the next-token loss on the input tokens (reference: 1; 0 for pure "
                                 "BoW)", type=cli.non_negative_float)
    bow_weight: float = _opt(0.1, "weight of the averaged EBAE/EBAR bag-of-words loss (reference: 0.1)",
                             type=cli.non_negative_float)
    query_max_length: int = _opt(64, "saved in the checkpoint config", type=cli.int_at_least(2))
    passage_max_length: int = _opt(512, "saved in the checkpoint config", type=cli.int_at_least(2))


@dataclass
class ModelArguments:
    model: str = field(metadata=dict(help="base model: a folder (a checkpoint with an adapter is merged first), "
                                          "smollm2-135m, or a hub id"))
    full: bool = _opt(False, "full fine-tuning instead of LoRA", off_flag="lora",
                      off_help="train a LoRA adapter (merged into the exported model) instead of all parameters")
    lora_r: int = _opt(32, "LoRA rank", type=cli.positive_int)
    lora_alpha: int = _opt(64, "LoRA alpha", type=cli.positive_int)
    lora_dropout: float = _opt(0.1, "LoRA dropout", type=cli.non_negative_float)
    lora_target_modules: str = _opt(LORA_TARGET_MODULES, "comma-separated module names LoRA adapts")
    dtype: str = _opt("bfloat16", "compute dtype (bf16 autocast; LoRA keeps the frozen base in it)",
                      choices=["bfloat16", "float32"])
    gradient_checkpointing: bool = _opt(True, "recompute activations in backward to save memory (turning it off "
                                              "is faster where the activations fit)")
    compile: bool = _opt(False, "torch.compile each decoder layer: faster steps on a GPU after about a minute "
                                "of compilation")
    trust_remote_code: bool = _opt(False, "allow model code shipped inside a checkpoint to run (only for "
                                          "checkpoints you trust)")
    eos_token: Optional[str] = _opt(None, "make this vocabulary entry the tokenizer's EOS: the token appended to "
                                          "every row and pooled (RepLLaMA, RankLLaMA) and ending LLaRA's prompts; "
                                          "it is saved with the checkpoint's tokenizer, so inference appends the "
                                          "same token (default: the tokenizer's own EOS)", type=str)


@dataclass
class TrainingArguments:
    output: str = field(metadata=dict(help="checkpoint folder to write (periodic checkpoints go inside it "
                                           "while training)"))
    learning_rate: float = _opt(1e-4, "peak learning rate (AdamW)", type=cli.positive_float)
    weight_decay: float = _opt(0.0, "AdamW weight decay", type=cli.non_negative_float)
    warmup_steps: int = _opt(100, "linear warm-up steps, capped at 10%% of all steps", type=cli.non_negative_int)
    epochs: int = _opt(1, "passes over the training queries", type=cli.positive_int)
    max_steps: int = _opt(0, "stop after this many optimizer steps (0: derived from --epochs)",
                          type=cli.non_negative_int)
    batch_size: int = _opt(8, "queries per device per micro-batch", type=cli.positive_int)
    gradient_accumulation_steps: int = _opt(1, "micro-batches per optimizer step", type=cli.positive_int)
    max_grad_norm: float = _opt(1.0, "gradient clipping (0: off)", type=cli.non_negative_float)
    temperature: float = _opt(0.01, "InfoNCE temperature (RepLLaMA)", type=cli.positive_float)
    save_steps: int = _opt(100, "write a resumable checkpoint every N steps (0: only the final model)",
                           type=cli.non_negative_int)
    save_total_limit: int = _opt(2, "periodic checkpoints kept", type=cli.positive_int)
    resume: bool = _opt(False, "continue from the latest checkpoint in --output")
    overwrite: bool = _opt(False, "replace an existing --output")
    seed: int = _opt(42, "seed for initialisation, dropout and sampling")
    device: str = _opt("auto", "auto (this rank's GPU when there is one, else cpu), cpu, cuda or cuda:N")
    pad_to_multiple_of: int = _opt(8, "pad batches to a multiple of this many tokens (tensor-core friendly)",
                                   type=cli.positive_int)
    progress: bool = _opt(True, "show a progress bar")


@dataclass
class TrainArguments:
    data: Union[DataArguments, CorpusArguments]
    model: ModelArguments
    training: TrainingArguments

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        return asdict(self)


def _groups(data: Type) -> tuple:
    return (("data", data), ("model", ModelArguments), ("training", TrainingArguments))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(parser: argparse._ActionsContainer, f, default: Any) -> None:
    meta = f.metadata
    help_text = meta.get("help", "")
    if default is MISSING:
        parser.add_argument(_flag(f.name), dest=f.name, required=True, help=help_text,
                            type=meta.get("type", str), nargs=meta.get("nargs"))
    elif isinstance(default, bool):
        if default:  # on by default: a flag turns it off
            off = meta.get("off_flag", "no-" + f.name.replace("_", "-"))
            parser.add_argument("--" + off, dest=f.name, action="store_false",
                                help=meta.get("off_help", f"turn off: {help_text}"))
        else:
            parser.add_argument(_flag(f.name), dest=f.name, action="store_true", help=help_text)
    else:
        kind = meta.get("type", type(default))
        # every number here is a count, a length, a rate or a weight: never negative, never nan or inf (a bad
        # value is argparse's one-line error naming the option); only the seed may be any integer
        kind = {int: cli.non_negative_int if f.name != "seed" else int, float: cli.non_negative_float}.get(kind, kind)
        parser.add_argument(_flag(f.name), dest=f.name, type=kind, default=default, choices=meta.get("choices"),
                            nargs=meta.get("nargs"), help=f"{help_text} (default: {default})")


def build_parser(prog: str, doc: str, data: Type = DataArguments, defaults: Optional[Dict[str, Any]] = None,
                 exclude: Sequence[str] = ()) -> cli.ArgumentParser:
    """The parser over the data group and the model and training groups; ``defaults`` overrides per trainer,
    ``exclude`` hides options that do not apply (they keep their defaults)."""
    defaults = defaults or {}
    parser = cli.parser(prog, doc)
    for title, cls in _groups(data):
        group = parser.add_argument_group(title)
        for f in fields(cls):
            if f.name not in exclude:
                _add_field(group, f, defaults.get(f.name, f.default))
    return parser


def parse_args(argv: Optional[Sequence[str]], prog: str, doc: str, data: Type = DataArguments,
               defaults: Optional[Dict[str, Any]] = None, exclude: Sequence[str] = ()) -> TrainArguments:
    defaults = defaults or {}
    ns = vars(build_parser(prog, doc, data, defaults, exclude).parse_args(argv))
    parts = {title: cls(**{f.name: ns.get(f.name, defaults.get(f.name, f.default)) for f in fields(cls)})
             for title, cls in _groups(data)}
    args = TrainArguments(**parts)
    validate(args)
    return args


def validate(args: TrainArguments) -> None:
    """What argparse's types cannot say: counts of at least one, rates in range, no training on test."""
    data, training, model = vars(args.data), args.training, args.model
    positive = dict(group_size=data.get("group_size", 2), query_max_length=data.get("query_max_length", 1),
                    passage_max_length=data.get("passage_max_length", 1), batch_size=training.batch_size,
                    gradient_accumulation_steps=training.gradient_accumulation_steps,
                    epochs=training.epochs, lora_r=model.lora_r)
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if data.get("group_size", 2) < 2:
        raise UserError("--group-size must be at least 2 (one positive and one negative)")
    if training.learning_rate <= 0 or training.temperature <= 0:
        raise UserError("--learning-rate and --temperature must be positive")
    if model.lora_dropout >= 1 or training.pad_to_multiple_of < 1 or model.lora_alpha < 1:
        raise UserError("--lora-dropout must be below 1, --pad-to-multiple-of and --lora-alpha at least 1")
    if "test" in str(data.get("split", "")).lower():
        raise UserError(f"refusing to train on split {args.data.split!r}: test judgments are for evaluation "
                        f"only; use --split train")
    return args
