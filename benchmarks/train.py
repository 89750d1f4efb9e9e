"""Training throughput and MFU of RepLLaMA LoRA: Llama-2-7B shape (random weights) and SmolLM2-135M.

Runs the trainer's own step (``Trainer.step`` on ``RepLlamaTrainModel``: LoRA r 32 on q/v/o/gate/up/down, bf16
autocast over a bf16 frozen base, InfoNCE with in-batch negatives) on synthetic batches padded by the trainer's
own collation (:func:`pyserini_llama.train.collator.pad_rows`): ``--batch-size`` queries, each with a group of
16 passages, of full length (32 + 196 tokens, as in the paper) or with the token lengths of a real corpus
(``--lengths``, truncated at 196). Speed does not depend on weight values, so shapes use random weights built on
the device.

Variants (``--variants``), each eager and/or compiled (``--compile``), measured on the same batches in one run:
  * ``baseline``: gradient checkpointing, each micro-batch's passages padded to its longest (the recipe of the
    packaged checkpoints);
  * ``no-checkpointing``: activations kept (``--no-gradient-checkpointing``);
  * ``bucketed``: passages in length-sorted chunks of ``--bucket-tokens`` padded tokens (``--bucket-tokens``);
  * ``fast``: both.
The table's speed-up compares each variant with the first one in real (non-pad) tokens per second.

FLOP convention: MFU = 6 x P x T / time / 800e12, P = the parameters of the matmuls (frozen base + adapter,
without the input embedding table: a lookup, no FLOPs; the encoder has no LM head), T = real tokens (queries
+ passages), attention score FLOPs not counted. For LoRA with gradient checkpointing the 6 x P is also what the
GPU executes (2P forward + 2P recomputed forward + 2P backward through activations; frozen weights need no
weight gradients); without checkpointing it executes 4 x P, so the same convention shows the saving as MFU.

Usage::

    python benchmarks/train.py --output benchmarks/train.json                        # 7B shape, one GPU
    python benchmarks/train.py --skip-7b --random-smollm2 --lengths benchmarks/debian-lengths.json \\
        --variants baseline fast --compile compiled --output ...                   # before/after at 135M
    python benchmarks/train.py --skip-7b --random-smollm2 --device cpu --batch-size 2 --group-size 4 \\
        --profile --output /tmp/train.json                                          # a step's structure, on a CPU
    python benchmarks/train.py --make-lengths ../shared/ir/debian-descriptions --tokenizer FOLDER \\
        --output benchmarks/debian-lengths.json
    python benchmarks/train.py --tiny --output /tmp/train.json                       # CPU smoke run
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

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
VARIANTS = {"baseline": dict(checkpointing=True, bucketed=False, masked=True),
            "no-checkpointing": dict(checkpointing=False, bucketed=False, masked=True),
            "bucketed": dict(checkpointing=True, bucketed=True, masked=True),
            "fast": dict(checkpointing=False, bucketed=True, masked=True),
            # measured against "fast": 4x larger chunks; no LoRA dropout (a recipe change); the trainers' causal
            # kernel without the padding mask (exact for right padding; encoders.inputs.last_hidden_states)
            "fast-big": dict(checkpointing=False, bucketed=True, masked=True, bucket_scale=4),
            "fast-nodropout": dict(checkpointing=False, bucketed=True, masked=True, lora_dropout=0.0),
            "fast-unmasked": dict(checkpointing=False, bucketed=True, masked=False),
            "fast-unmasked-big": dict(checkpointing=False, bucketed=True, masked=False, bucket_scale=4)}


def build_model(shape: Optional[dict], folder: Optional[str], device: str, dtype: torch.dtype,
                compile: bool = False, checkpointing: bool = True, lora_dropout: float = 0.1):
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
    if checkpointing:
        enable_gradient_checkpointing(model)
    model = apply_lora(model, "embedding", dropout=lora_dropout)
    if compile:
        compile_layers(model)  # what the trainers' --compile does
    return model


def synthetic_rows(vocab: int, n: int, lengths: Optional[List[int]], full: int, rng: random.Random) -> List[list]:
    """Token id rows ending in EOS (id 2): of length ``full``, or of lengths drawn from ``lengths`` (capped)."""
    rows = []
    for _ in range(n):
        length = min(rng.choice(lengths), full) if lengths else full
        rows.append([rng.randrange(3, vocab) for _ in range(length - 1)] + [2])
    return rows


def synthetic_batch(vocab: int, batch: int, group: int, q_len: int, p_len: int, seed: int,
                    lengths: Optional[dict] = None, bucket_tokens: int = 0) -> dict:
    """A collated RepLLaMA micro-batch, padded by the trainer's own collation."""
    from pyserini_llama.batching import pad_batch
    from pyserini_llama.train.collator import pad_rows

    rng = random.Random(seed)
    queries = synthetic_rows(vocab, batch, (lengths or {}).get("query"), q_len, rng)
    passages = synthetic_rows(vocab, batch * group, (lengths or {}).get("passage"), p_len, rng)
    return {"query": pad_batch(queries, 0, "right", 8), "passage": pad_rows(passages, 0, "right", 8, bucket_tokens)}


def real_batches(data, tokenizer_folder: str, batch: int, n: int, bucket_tokens: int) -> tuple:
    """``n`` micro-batches of real training groups (``data``: the trainers' TrainingData), collated by the
    trainer's own collator, and the mean seconds the collation took per step on this CPU."""
    from pyserini_llama.models.load import load_tokenizer
    from pyserini_llama.models.presets import repllama_config
    from pyserini_llama.train.collator import EmbeddingCollator
    from pyserini_llama.train.data import StepBatches

    collate = EmbeddingCollator(load_tokenizer(Path(tokenizer_folder)), repllama_config(), 8, bucket_tokens)
    steps = StepBatches(data, batch)
    start = time.perf_counter()
    batches = [collate(steps(i)[0]) for i in range(n)]
    return batches, (time.perf_counter() - start) / n


def masked(encoder) -> None:
    """Give the model the padding mask in training too (what the trainers did before they left it out)."""
    model = encoder.model

    def hidden_states(batch):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     use_cache=False).last_hidden_state

    encoder.hidden_states = hidden_states


def bench(name: str, variant: str, model, device: str, autocast: bool, batch: int, group: int, q_len: int,
          p_len: int, warmup: int, steps: int, lengths: Optional[dict], bucket_tokens: int, compile: bool = False,
          profile: bool = False, data=None, tokenizer: Optional[str] = None) -> dict:
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.train.arguments import TrainingArguments
    from pyserini_llama.train.distributed import DistInfo
    from pyserini_llama.train.loop import Trainer
    from pyserini_llama.train.losses.contrastive import RepLlamaTrainModel

    module = RepLlamaTrainModel(model, None, CheckpointConfig(), temperature=0.01, device=device)
    if VARIANTS[variant]["masked"]:
        masked(module.encoder)
    args = TrainingArguments(output="unused", warmup_steps=0, progress=False)
    trainer = Trainer(module, args, total_steps=warmup + steps + 1, dist_info=DistInfo(), device=device,
                      dtype="bfloat16" if autocast else "float32")
    vocab = model.config.vocab_size
    chunk = bucket_tokens * VARIANTS[variant].get("bucket_scale", 1) if VARIANTS[variant]["bucketed"] else 0
    collate_seconds = None
    if data is not None:
        batches, collate_seconds = real_batches(data, tokenizer, batch, warmup + steps, chunk)
    else:
        batches = [synthetic_batch(vocab, batch, group, q_len, p_len, seed=i, lengths=lengths, bucket_tokens=chunk)
                   for i in range(warmup + steps)]  # the same rows for every variant (seeded by step)
    if compile:
        torch._dynamo.utils.counters.clear()
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
    profiled = None
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with torch_profile(activities=activities) as prof:
            trainer.step([batches[-1]])
        from torch.autograd import DeviceType

        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        events = prof.events()
        # the GPU's kernel time against the step's wall time: the rest is the host launching kernels or waiting
        kernel_seconds = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 1e6
        profiled = {"gpu_kernel_seconds": round(kernel_seconds, 4) if cuda else None,
                    "matmul_calls": sum(1 for e in events if e.name == "aten::mm")}
        if cuda:
            print(f"== GPU kernels {kernel_seconds:.3f} s of a {seconds / steps:.3f} s step", file=sys.stderr)
        print(f"== {name} {variant} ({'compiled' if compile else 'eager'}): one step, top operators by self time",
              file=sys.stderr)
        print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60), file=sys.stderr)
    params = sum(p.numel() for p in model.parameters())
    matmul_params = params - model.get_input_embeddings().weight.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    padded = sum(sum(c["input_ids"].numel() for c in part.get("chunks", [part]))
                 for b in batches[warmup:] for part in (b["query"], b["passage"])) // steps
    tps = tokens / seconds
    return {"model": name, "variant": variant, **VARIANTS[variant], "compile": compile, "params": params,
            "matmul_params": matmul_params, "trainable_params": trainable, "batch_queries": batch,
            "group_size": group, "query_length": q_len, "passage_length": p_len,
            "bucket_tokens": chunk, "tokens_per_step": tokens // steps, "padded_tokens_per_step": padded,
            "steps": steps, "step_seconds": round(seconds / steps, 4), "tokens_per_second": round(tps, 1),
            "mfu": round(6 * matmul_params * tps / PEAK_FLOPS, 4),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "final_loss": round(losses[-1], 4), "collate_seconds": collate_seconds,
            "recompiles": dict(torch._dynamo.utils.counters["recompiles"]) if compile else None,
            "unique_graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"] if compile else None,
            "profile": profiled}


def make_lengths(collection: str, tokenizer_folder: str, output: str, every: int = 6) -> None:
    """Token lengths of a BEIR folder's passages and queries as RepLLaMA formats them (every ``every``-th)."""
    from pyserini_llama.data.beir import BeirFolder
    from pyserini_llama.encoders.inputs import format_passage, format_query
    from pyserini_llama.models.load import load_tokenizer
    from pyserini_llama.models.presets import repllama_config

    folder, tok, cfg = BeirFolder(Path(collection)), load_tokenizer(Path(tokenizer_folder)), repllama_config()
    docs = list(folder.corpus().values())[::every]
    queries = list(folder.queries().values())[::every]
    count = lambda texts: [len(r) + 1 for r in tok(texts, add_special_tokens=True)["input_ids"]]  # noqa: E731 (+EOS)
    data = {"source": f"{folder.root.name}: every {every}th passage and query, not truncated",
            "tokenizer": Path(tokenizer_folder).name,
            "command": f"python benchmarks/train.py --make-lengths {Path(collection).name} --tokenizer "
                       f"{Path(tokenizer_folder).name} --output {Path(output).name}",
            "passage": count([format_passage(d.title, d.text, cfg) for d in docs]),
            "query": count([format_query(q, cfg) for q in queries])}
    Path(output).write_text(json.dumps(data) + "\n")
    print(f"wrote {output}: {len(data['passage'])} passages (mean {sum(data['passage']) / len(docs):.1f} tokens), "
          f"{len(data['query'])} queries")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="JSON results file")
    parser.add_argument("--smollm2", help="also benchmark this SmolLM2-135M folder (real weights)")
    parser.add_argument("--skip-7b", action="store_true", help="only the --smollm2 model")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy model on the CPU (smoke test)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (structure and profile only)")
    parser.add_argument("--batch-size", type=int, default=16, help="queries per step at 7B shape")
    parser.add_argument("--smollm2-batch-size", type=int, default=64, help="queries per step at 135M")
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--passage-length", type=int, default=196)
    parser.add_argument("--lengths", help="JSON with 'passage' (and 'query') token lengths to draw from "
                                          "(default: every row at full length)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["baseline"])
    parser.add_argument("--bucket-tokens", type=int, default=16384, help="chunk size of the bucketed variants")
    parser.add_argument("--compile", nargs="+", choices=["eager", "compiled"], default=["eager"],
                        help="run each model eager, compiled (the trainers' --compile), or both")
    parser.add_argument("--random-smollm2", action="store_true",
                        help="benchmark the SmolLM2-135M shape with random weights (no checkpoint needed)")
    parser.add_argument("--profile", action="store_true", help="print a profile of one extra step per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--make-lengths", metavar="BEIR_FOLDER", help="write --output as a lengths file of this "
                                                                      "collection (with --tokenizer) and exit")
    parser.add_argument("--tokenizer", help="tokenizer folder for --make-lengths and --data")
    parser.add_argument("--data", metavar="BEIR_FOLDER", help="real training groups from this collection's "
                                                              "--split (with --negatives, --tokenizer)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--negatives", help="mined negatives (JSONL) for --data")
    parser.add_argument("--max-queries", type=int, default=0, help="subsample of --data's queries")
    args = parser.parse_args(argv)
    if args.make_lengths:
        make_lengths(args.make_lengths, args.tokenizer, args.output)
        return 0

    lengths = json.loads(Path(args.lengths).read_text()) if args.lengths else None
    data = None
    if args.data:
        from pyserini_llama.errors import UserError
        from pyserini_llama.train.data import load_training_data

        if not args.tokenizer:
            parser.error("--data needs --tokenizer (the folder whose tokenizer the trainers would use)")
        try:
            data = load_training_data(args.data, args.split, args.negatives, args.group_size, 42, None, None,
                                      log=sys.stderr, max_queries=args.max_queries)
        except UserError as e:  # a missing collection or split, malformed negatives: one line, as the trainers say
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.tiny:
        device, dtype, autocast = "cpu", torch.float32, False
        plans = [("tiny-llama", TINY, None, 2)]
        args.group_size, args.query_length, args.passage_length = 4, 8, 16
        args.bucket_tokens = min(args.bucket_tokens, 64)
    else:
        device = args.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            print("error: no GPU; use --device cpu (or --tiny for a smoke run)", file=sys.stderr)
            return 2
        cuda = device.startswith("cuda")
        dtype, autocast = (torch.bfloat16, True) if cuda else (torch.float32, False)
        plans = [] if args.skip_7b else [("llama-2-7b-shape", LLAMA2_7B, None, args.batch_size)]
        if args.smollm2:
            plans.append(("smollm2-135m", None, args.smollm2, args.smollm2_batch_size))
        if args.random_smollm2:
            plans.append(("smollm2-135m-shape", SMOLLM2_135M, None, args.smollm2_batch_size))
    results = []
    for name, shape, folder, batch in plans:
        for mode in args.compile:
            for variant in args.variants:
                torch.manual_seed(0)
                model = build_model(shape, folder, device, dtype, compile=mode == "compiled",
                                    checkpointing=VARIANTS[variant]["checkpointing"],
                                    lora_dropout=VARIANTS[variant].get("lora_dropout", 0.1))
                results.append(bench(name, variant, model, device, autocast, batch, args.group_size,
                                     args.query_length, args.passage_length, args.warmup, args.steps, lengths,
                                     args.bucket_tokens, compile=mode == "compiled", profile=args.profile,
                                     data=data, tokenizer=args.tokenizer))
                first = next(r for r in results if r["model"] == name and r["compile"] == (mode == "compiled"))
                results[-1]["speedup"] = round(results[-1]["tokens_per_second"] / first["tokens_per_second"], 3)
                print(json.dumps(results[-1]), flush=True)
                del model
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
    report = {"benchmark": "repllama-lora-training", "command": " ".join(["python benchmarks/train.py"] +
                                                                         list(argv if argv is not None
                                                                              else sys.argv[1:])),
              "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "peak_flops": PEAK_FLOPS,
              "lengths": (f"{Path(args.data).name} {args.split}: real training groups" if data is not None
                          else (lengths or {}).get("source", "full length")),
              "flop_convention": "6 x matmul parameters (all but the input embedding) x real tokens (LoRA + "
                                 "gradient checkpointing executes 2P forward + 2P recompute + 2P input-gradient "
                                 "backward; without checkpointing 4P); attention scores not counted",
              "results": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':<18} {'variant':<16} {'mode':<8} {'batch':>5} {'tok/step':>9} {'padded':>9} {'s/step':>7} "
          f"{'tokens/s':>10} {'speed-up':>8} {'MFU':>6} {'mem GiB':>7}")
    for r in results:
        print(f"{r['model']:<18} {r['variant']:<16} {'compiled' if r['compile'] else 'eager':<8} "
              f"{r['batch_queries']:>5} {r['tokens_per_step']:>9} {r['padded_tokens_per_step']:>9} "
              f"{r['step_seconds']:>7.3f} {r['tokens_per_second']:>10,.0f} {r['speedup']:>7.2f}x {r['mfu']:>6.1%} "
              f"{r['peak_memory_gib'] if r['peak_memory_gib'] is not None else '-':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
