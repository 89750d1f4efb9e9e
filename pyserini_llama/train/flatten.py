"""Flatten a chain of adapters into one adapter over the first base model, for shipping.

A checkpoint trained with ``--model <another adapter checkpoint>`` names that checkpoint as its base, which names
its own (e.g. SciFact fine-tune -> Debian weak model -> smollm2-135m), and loading merges the chain in order. One
adapter says the same thing: every LoRA update of a module is ``scaling_i * B_i @ A_i``, so their sum is exactly
the LoRA whose ``A`` stacks the ``A_i`` and whose ``B`` stacks the ``scaling_i * B_i`` (rank = the sum of the ranks,
scaling 1). With ``--rank r`` each module's summed update is replaced by its best rank-``r`` approximation (SVD):
smaller, approximate; the relative error of every module is reported. A sequence-classification head (RankLLaMA's
``score``) comes from the outermost adapter, which trained it last.

Example::

    python -m pyserini_llama.train.flatten --checkpoint runs/reproduce/checkpoints/repllama-scifact \\
        --output pyserini_llama/checkpoints/repllama-smollm2 [--rank 32]
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .. import cli
from ..errors import UserError
from ..models.config import CheckpointConfig
from ..models.hub import resolve_model_path
from ..data.jsonl import read_json_object
from ..models.load import adapter_base_model, is_adapter

# where a task's peft wrapper puts the decoder's modules
PREFIX = {"FEATURE_EXTRACTION": "base_model.model.", "SEQ_CLS": "base_model.model.model.",
          "CAUSAL_LM": "base_model.model.model."}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja")


def adapter_chain(checkpoint: Path) -> Tuple[List[Path], str]:
    """The adapters from the outermost (``checkpoint``) inwards, and the name of the innermost one's base."""
    chain: List[Path] = []
    folder = Path(checkpoint)
    name = str(checkpoint)
    while is_adapter(folder):
        if len(chain) == 8:
            raise UserError(f"{checkpoint}: more than 8 stacked adapters (does one name itself as its base?)")
        chain.append(folder)
        name = adapter_base_model(folder, CheckpointConfig.load(folder))
        folder = resolve_model_path(name)
    if not chain:
        raise UserError(f"{checkpoint}: not an adapter checkpoint (no adapter_config.json)")
    return chain, name


def read_adapter(folder: Path) -> Tuple[dict, Dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    config = read_json_object(folder / "adapter_config.json", "adapter config")
    if config.get("use_dora") or config.get("use_rslora") or config.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{folder}: only plain LoRA adapters can be flattened")
    if config.get("task_type") not in PREFIX:
        raise UserError(f"{folder}: unknown adapter task_type {config.get('task_type')!r}")
    return config, load_file(str(folder / "adapter_model.safetensors"))


def lora_updates(config: dict, weights: Dict[str, torch.Tensor]) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """``{decoder module: (A, scaling * B)}`` in float32, module names relative to the decoder."""
    prefix, scaling = PREFIX[config["task_type"]], config["lora_alpha"] / config["r"]
    updates = {}
    for key, a in weights.items():
        if key.endswith(".lora_A.weight"):
            module = key[len(prefix):-len(".lora_A.weight")] if key.startswith(prefix) else None
            if module is None:
                raise UserError(f"unexpected adapter weight {key!r} for task {config['task_type']}")
            b = weights[key.replace(".lora_A.", ".lora_B.")]
            updates[module] = (a.float(), scaling * b.float())
    return updates


def truncate(b: torch.Tensor, a: torch.Tensor, rank: int) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """``(B', A', relative error)``: the best rank-``rank`` approximation ``B' @ A'`` of ``b @ a`` (SVD).

    ``b @ a`` has rank at most ``r`` (the stacked ranks), so its SVD comes from an ``r x r`` core: with thin QRs
    ``b = Qb Rb`` and ``a.T = Qa Ra``, ``b @ a = Qb (Rb Ra.T) Qa.T``, and the core's singular vectors mapped through
    ``Qb`` and ``Qa`` are the product's. Decomposing the whole ``out x in`` matrix instead costs ~100x more and
    crawls when several processes share the CPU's cores. The error is the Frobenius norm of the dropped
    singular values over all of them."""
    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    error = float(torch.linalg.norm(s[rank:]) / torch.linalg.norm(s).clamp(min=1e-12))
    return (qb @ u[:, :rank]) * s[:rank], vh[:rank] @ qa.T, error


def flatten(checkpoint: Path, output: Path, rank: Optional[int] = None, overwrite: bool = False) -> dict:
    """Write ``output``: one adapter equal to ``checkpoint``'s chain (``rank``: approximately); returns a report."""
    from safetensors.torch import save_file

    from ..data.atomic import atomic_dir

    chain, root = adapter_chain(Path(checkpoint))
    outer_config, outer_weights = read_adapter(chain[0])
    stacked: Dict[str, List[Tuple[torch.Tensor, torch.Tensor]]] = {}
    for folder in reversed(chain):  # innermost first: the order the updates were made in
        for module, update in lora_updates(*read_adapter(folder)).items():
            stacked.setdefault(module, []).append(update)
    dtype = next(iter(outer_weights.values())).dtype
    prefix = PREFIX[outer_config["task_type"]]
    weights: Dict[str, torch.Tensor] = {}
    errors: Dict[str, float] = {}
    ranks = set()
    for module, updates in stacked.items():
        a = torch.cat([u[0] for u in updates])
        b = torch.cat([u[1] for u in updates], dim=1)
        if rank is not None and rank < a.shape[0]:
            b, a, errors[module] = truncate(b, a, rank)
        ranks.add(a.shape[0])
        weights[f"{prefix}{module}.lora_A.weight"] = a.to(dtype).contiguous()
        weights[f"{prefix}{module}.lora_B.weight"] = b.to(dtype).contiguous()
    if len(ranks) != 1:  # a module adapted by only some of the adapters: pad it to the common rank with zeros
        width = max(ranks)
        for key in [k for k in weights if k.endswith(".lora_A.weight")]:
            a, bkey = weights[key], key.replace(".lora_A.", ".lora_B.")
            extra = width - a.shape[0]
            weights[key] = torch.cat([a, a.new_zeros(extra, a.shape[1])])
            weights[bkey] = torch.cat([weights[bkey], weights[bkey].new_zeros(weights[bkey].shape[0], extra)], 1)
    new_rank = max(ranks)
    heads = {k: v for k, v in outer_weights.items() if ".lora_" not in k}  # the score head (modules_to_save)
    weights.update(heads)
    config = dict(outer_config, r=new_rank, lora_alpha=new_rank, base_model_name_or_path=root,
                  target_modules=sorted({m.rsplit(".", 1)[-1] for m in stacked}))
    checkpoint_config = CheckpointConfig.load(chain[0]) or CheckpointConfig()
    with atomic_dir(output, overwrite=overwrite) as tmp:
        save_file(weights, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in TOKENIZER_FILES:
            if (chain[0] / name).exists():
                shutil.copy2(chain[0] / name, tmp / name)
        lora = dict(checkpoint_config.extra.get("lora") or {}, r=new_rank, alpha=new_rank, flattened=len(chain))
        replace(checkpoint_config, base_model=root, extra=dict(checkpoint_config.extra, lora=lora)).save(tmp)
        if (chain[0] / "trainer_state.json").exists():
            shutil.copy2(chain[0] / "trainer_state.json", tmp / "trainer_state.json")
    return {"checkpoint": str(checkpoint), "chain": [str(f) for f in chain], "base_model": root, "rank": new_rank,
            "exact": rank is None or not errors,
            "max_relative_error": max(errors.values()) if errors else 0.0,
            "mean_relative_error": sum(errors.values()) / len(errors) if errors else 0.0}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.train.flatten", __doc__)
    parser.add_argument("--checkpoint", required=True, help="an adapter checkpoint (its base may be another one)")
    cli.add_output(parser, help="checkpoint folder to write")
    parser.add_argument("--rank", type=cli.positive_int, help="approximate with this rank (default: exact, the sum "
                                                               "of the chain's ranks)")
    args = parser.parse_args(argv)
    report = flatten(Path(args.checkpoint), Path(args.output), args.rank, args.overwrite)
    print(json.dumps(report, indent=1))
    print(f"wrote {args.output}: {len(report['chain'])} adapter(s) over {report['base_model']} as one of rank "
          f"{report['rank']}" + ("" if report["exact"] else f" (max relative error {report['max_relative_error']:.2e})"),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
