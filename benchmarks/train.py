"""Training throughput and MFU of RepLLaMA LoRA: Llama-2-7B shape (random weights) and SmolLM2-135M.

Runs the trainer's own step (``Trainer.step`` on ``RepLlamaTrainModel``: LoRA r 32 on q/v/o/gate/up/down,
gradient checkpointing, bf16 autocast over a bf16 frozen base, InfoNCE with in-batch negatives) on synthetic
full-length batches: ``--batch-size`` queries of 32 tokens, each with a group of 16 passages of 196 tokens,
as in the paper. Speed does not depend on weight values, so the 7B shape uses random weights built on the GPU.

FLOP convention: MFU = 6 x P x T / time / 800e12, P = the parameters of the matmuls (frozen base + adapter,
without the input embedding table: a lookup, no FLOPs; the encoder has no LM head), T = real tokens (queries
+ passages), attention score FLOPs not counted. For LoRA with gradient checkpointing the 6 x P is
also what the GPU executes: 2P forward + 2P recomputed forward + 2P backward through activations (frozen
weights need no weight gradients); full fine-tuning would execute 8 x P.

Usage::

    python benchmarks/train.py --output benchmarks/train.json                        # 7B shape, one GPU
    python benchmarks/train.py --smollm2 ~/.cache/pyserini-llama/models/smollm2-135m --output ...
    python benchmarks/train.py --compile eager compiled --output ...                 # both, as the trainers' --compile
    python benchmarks/train.py --tiny --output /tmp/train.json                       # CPU smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PEAK_FLOPS = 800e12  # bf16 dense matmul, measured on the H100 this targets
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000)
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300)


def build_model(shape: Optional[dict], folder: Optional[str], device: str, dtype: torch.dtype,
                compile: bool = False):
    from transformers import AutoModel, LlamaConfig

    from pyserini_llama.models.load import enable_gradient_checkpointing
    from pyserini_llama.train.lora import apply_lora, compile_layers

    if folder:
        model = AutoModel.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa").to(device)
    else:
        config = LlamaConfig(**shape, max_position_embeddings=4096, attn_implementation="sdpa")
        with torch.device(device):
            model = AutoModel.from_config(config, dtype=dtype)
    model.config.use_cache = False
    enable_gradient_checkpointing(model)
    model = apply_lora(model, "embedding")
    if compile:
        compile_layers(model)  # what the trainers' --compile does
    return model


def synthetic_batch(vocab: int, batch: int, group: int, q_len: int, p_len: int, seed: int) -> dict:
    """Full-length random token ids ending in EOS (id 2), i.e. what truncated real passages look like."""
    g = torch.Generator().manual_seed(seed)

    def part(n, length):
        ids = torch.randint(3, vocab, (n, length), generator=g)
        ids[:, -1] = 2
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    return {"query": part(batch, q_len), "passage": part(batch * group, p_len)}


def bench(name: str, model, device: str, autocast: bool, batch: int, group: int, q_len: int, p_len: int,
          warmup: int, steps: int, compile: bool = False, profile: bool = False) -> dict:
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.train.arguments import TrainingArguments
    from pyserini_llama.train.distributed import DistInfo
    from pyserini_llama.train.loop import Trainer
    from pyserini_llama.train.losses.contrastive import RepLlamaTrainModel

    module = RepLlamaTrainModel(model, None, CheckpointConfig(), temperature=0.01, device=device)
    args = TrainingArguments(output="unused", warmup_steps=0, progress=False)
    trainer = Trainer(module, args, total_steps=warmup + steps, dist_info=DistInfo(), device=device,
                      dtype="bfloat16" if autocast else "float32")
    vocab = model.config.vocab_size
    batches = [synthetic_batch(vocab, batch, group, q_len, p_len, seed=i) for i in range(warmup + steps)]
    cuda = device.startswith("cuda")
    for b in batches[:warmup]:
        trainer.step([b])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, tokens, losses = time.perf_counter(), 0, []
    for b in batches[warmup:]:
        loss, n = trainer.step([b])  # returns a Python float: the step has finished on the device
        tokens += n
        losses.append(loss)
    seconds = time.perf_counter() - start
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with torch_profile(activities=activities) as prof:
            trainer.step([batches[-1]])
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(f"== {name} ({'compiled' if compile else 'eager'}): one step, top operators by self time",
              file=sys.stderr)
        print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60), file=sys.stderr)
    params = sum(p.numel() for p in model.parameters())
    matmul_params = params - model.get_input_embeddings().weight.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tps = tokens / seconds
    return {"model": name, "compile": compile, "params": params, "matmul_params": matmul_params, "trainable_params": trainable,
            "batch_queries": batch, "group_size": group, "query_length": q_len, "passage_length": p_len,
            "tokens_per_step": tokens // steps, "steps": steps, "step_seconds": round(seconds / steps, 4),
            "tokens_per_second": round(tps, 1), "mfu": round(6 * matmul_params * tps / PEAK_FLOPS, 4),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "final_loss": round(losses[-1], 4)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="JSON results file")
    parser.add_argument("--smollm2", help="also benchmark this SmolLM2-135M folder (real weights)")
    parser.add_argument("--skip-7b", action="store_true", help="only the --smollm2 model")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy model on the CPU (smoke test)")
    parser.add_argument("--batch-size", type=int, default=16, help="queries per step at 7B shape")
    parser.add_argument("--smollm2-batch-size", type=int, default=64, help="queries per step at 135M")
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--passage-length", type=int, default=196)
    parser.add_argument("--compile", nargs="+", choices=["eager", "compiled"], default=["eager"],
                        help="run each model eager, compiled (the trainers' --compile), or both")
    parser.add_argument("--random-smollm2", action="store_true",
                        help="benchmark the SmolLM2-135M shape with random weights (no checkpoint needed)")
    parser.add_argument("--profile", action="store_true", help="print a profile of one extra step per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)

    if args.tiny:
        device, dtype, autocast = "cpu", torch.float32, False
        plans = [("tiny-llama", TINY, None, 2)]
        args.group_size, args.query_length, args.passage_length = 4, 8, 16
    else:
        if not torch.cuda.is_available():
            print("error: no GPU; use --tiny for a CPU smoke run", file=sys.stderr)
            return 2
        device, dtype, autocast = "cuda", torch.bfloat16, True
        plans = [] if args.skip_7b else [("llama-2-7b-shape", LLAMA2_7B, None, args.batch_size)]
        if args.smollm2:
            plans.append(("smollm2-135m", None, args.smollm2, args.smollm2_batch_size))
        if args.random_smollm2:
            plans.append(("smollm2-135m-shape", SMOLLM2_135M, None, args.smollm2_batch_size))
    results = []
    for name, shape, folder, batch in plans:
        for mode in args.compile:
            torch.manual_seed(0)
            model = build_model(shape, folder, device, dtype, compile=mode == "compiled")
            results.append(bench(name, model, device, autocast, batch, args.group_size, args.query_length,
                                 args.passage_length, args.warmup, args.steps, compile=mode == "compiled",
                                 profile=args.profile))
            print(json.dumps(results[-1]), flush=True)
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    report = {"benchmark": "repllama-lora-training", "device": torch.cuda.get_device_name() if device == "cuda"
              else "cpu", "torch": torch.__version__, "peak_flops": PEAK_FLOPS,
              "flop_convention": "6 x matmul parameters (all but the input embedding) x real tokens (LoRA + "
                                 "gradient checkpointing executes 2P forward + 2P recompute + 2P input-gradient "
                                 "backward); attention scores not counted", "results": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':<18} {'mode':<8} {'params':>8} {'batch':>5} {'tok/step':>9} {'s/step':>7} {'tokens/s':>10} "
          f"{'MFU':>6} {'mem GiB':>7}")
    for r in results:
        print(f"{r['model']:<18} {'compiled' if r['compile'] else 'eager':<8} {r['params'] / 1e6:>7.0f}M {r['batch_queries']:>5} {r['tokens_per_step']:>9} "
              f"{r['step_seconds']:>7.3f} {r['tokens_per_second']:>10,.0f} {r['mfu']:>6.1%} "
              f"{r['peak_memory_gib'] if r['peak_memory_gib'] is not None else '-':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
