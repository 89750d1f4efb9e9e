"""Corpus encoding speed: our RepLLaMA encoder vs a naive Hugging Face loop, on a real length distribution.

Models have random weights built straight on the device from their shapes (speed does not depend on weight
values, and no 7B download is needed): Llama-2-7B and SmolLM2-135M. Documents are random token ids whose
lengths follow a corpus's real token lengths (BEIR SciFact: ``passage: {title} {text}`` + special tokens + EOS,
cut at --max-length). Reported per model and method: real tokens/s, docs/s and MFU = 2 * params * real tokens
/ seconds / peak (default 800 TFLOP/s, H100 bf16 dense). The baseline is a fixed batch of 16 padded to
--max-length, plain ``model(...)``; ours sorts by length and batches under a token budget. Tokenization is
excluded from both.

``--dtypes bfloat16 fp8`` also times the FP8 encoder (``pyserini_llama.models.fp8``: e4m3 matmuls with rowwise
scales, the rest in bf16) on a model with the same weights. The run starts by measuring the bf16 and FP8
matmul ceilings of the device (``common.py``); every row reports MFU against both (``mfu_bf16_peak``,
``mfu_fp8_peak``).

Usage::

    # once, where the corpus and the SmolLM2 tokenizer are: precompute the lengths (a small JSON file)
    python benchmarks/encode.py --make-lengths ../data/beir-scifact/corpus.jsonl \\
        --output benchmarks/scifact-lengths.json
    # on a GPU (< 4 minutes on one H100)
    python benchmarks/encode.py --lengths benchmarks/scifact-lengths.json --output benchmarks/results/encode-h100.json
    # bf16-compiled beside fp8-compiled at 7B shape, on one H200 (~3 minutes)
    python benchmarks/encode.py --lengths benchmarks/scifact-lengths.json --models llama2-7b --docs 2048 \
        --budgets 65536 --compile --no-eager --baseline-docs 0 --dtypes bfloat16 fp8 --output encode-fp8.json
    # CPU smoke test (fp8 emulated in float32)
    python benchmarks/encode.py --tiny --dtypes float32 fp8 --output /tmp/encode-tiny.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure_peaks, mfu, recorded_command, write_report  # noqa: E402

SHAPES: Dict[str, dict] = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, rms_norm_eps=1e-5, max_position_embeddings=4096),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, rms_norm_eps=1e-5, rope_theta=100000.0,
                         max_position_embeddings=8192, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000, max_position_embeddings=4096),
}
BASELINE_BATCH = 16


def make_lengths(corpus: str, output: str) -> None:
    """Token lengths of SciFact passages as RepLLaMA formats them, with the SmolLM2 tokenizer."""
    from pyserini_llama.data.beir import iter_corpus
    from pyserini_llama.encoders.inputs import format_passage
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.models.load import load_tokenizer
    from pyserini_llama.models.hub import resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path("smollm2-135m"))
    config = CheckpointConfig()
    texts = [format_passage(d.title, d.text, config) for d in iter_corpus(corpus)]
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    lengths = [len(row) + 1 for row in ids]  # + the appended EOS; not truncated: --max-length cuts at run time
    note = ("SmolLM2-135M tokenizer (the Llama-2 tokenizer is not available offline); Llama-2 adds a BOS and "
            "splits text somewhat differently, so its lengths differ by a few percent")
    print(note)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(dict(corpus="/".join(Path(corpus).parts[-2:]), tokenizer="SmolLM2-135M",
                                            note=note, lengths=lengths)) + "\n")
    print(f"wrote {output}: {len(lengths)} documents, mean {np.mean(lengths):.0f} tokens, "
          f"{np.mean(np.array(lengths) > 512) * 100:.1f}% over 512")


def build_model(name: str, device: str, dtype, fp8: bool = False):
    """Random weights at the shape (the same for every dtype: one seed); ``fp8`` quantises the decoder's
    matmuls as ``--dtype fp8`` does (on a CPU: the float32 emulation of the same maths)."""
    import torch
    from transformers import AutoModel, LlamaConfig

    from pyserini_llama.models.fp8 import quantize_model

    config = LlamaConfig(**SHAPES[name], pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa")
    if fp8:
        quantize_model(model, emulate=not device.startswith("cuda"))
    return model.eval()


def random_docs(lengths: List[int], vocab: int, seed: int = 0) -> List[List[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, size=n).tolist() for n in lengths]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ours(model, docs: List[List[int]], device: str, budget: int, compile: bool = False) -> tuple:
    """Seconds for the timed pass, and for the warm-up (kernels, allocator, and compilation if asked); with
    ``compile`` the timed pass is the second one over ``docs``."""
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.config import CheckpointConfig

    encoder = RepLlamaEncoder(model, SimpleNamespace(pad_token_id=0, eos_token_id=2), CheckpointConfig(),
                              device=device, max_tokens_per_batch=budget, compile=compile)
    start = time.perf_counter()
    # warm-up over documents spread across the length range, so several batch shapes are seen
    encoder.encode_token_ids(docs[::max(1, len(docs) // 256)], progress=False)
    sync(device)
    warmup = time.perf_counter() - start
    # the first full pass can still meet new batch shapes (and compile for them): timed apart, not reported
    for _ in range(2 if compile else 1):
        start = time.perf_counter()
        encoder.encode_token_ids(docs, progress=False)
        sync(device)
    return time.perf_counter() - start, warmup


def time_baseline(model, docs: List[List[int]], device: str, max_length: int) -> float:
    """What a plain loop does: corpus order, batches of 16, every batch padded to max_length."""
    import torch
    import torch.nn.functional as F

    def run(subset):
        for start in range(0, len(subset), BASELINE_BATCH):
            batch = subset[start:start + BASELINE_BATCH]
            ids = torch.zeros((len(batch), max_length), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(batch):
                ids[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = 1
            ids, mask = ids.to(device), mask.to(device)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            last = mask.sum(1) - 1
            F.normalize(hidden[torch.arange(len(batch), device=device), last].float(), dim=-1).cpu()

    with torch.inference_mode():
        run(docs[:2 * BASELINE_BATCH])
        sync(device)
        start = time.perf_counter()
        run(docs)
        sync(device)
    return time.perf_counter() - start


def row(model_name: str, method: str, docs: List[List[int]], seconds: float, params: int, padded: int,
        peaks: dict, **extra) -> dict:
    tokens = sum(len(d) for d in docs)
    flops = 2 * params * tokens
    return dict(model=model_name, method=method, params=params, docs=len(docs), real_tokens=tokens,
                padded_tokens=padded,
                seconds=round(seconds, 3), tokens_per_s=round(tokens / seconds, 1),
                docs_per_s=round(len(docs) / seconds, 2), mfu_bf16_peak=mfu(flops, seconds, peaks["bf16"]),
                mfu_fp8_peak=mfu(flops, seconds, peaks["fp8"]), **extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-lengths", metavar="CORPUS", help="compute the lengths file from a corpus JSONL")
    parser.add_argument("--lengths", help="lengths JSON made by --make-lengths")
    parser.add_argument("--output", required=True, help="JSON results (or the lengths file with --make-lengths)")
    parser.add_argument("--models", nargs="+", default=["llama2-7b", "smollm2-135m"], choices=sorted(SHAPES))
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: the tiny shape, synthetic lengths")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--docs", type=int, help="encode only the first N documents with our encoder")
    parser.add_argument("--baseline-docs", type=int, default=1024, help="documents for the naive baseline")
    parser.add_argument("--budgets", type=int, nargs="+", default=[32768], help="our tokens-per-batch budgets")
    parser.add_argument("--compile", action="store_true",
                        help="also time our encoder with torch.compile (warm-up/compile time reported apart)")
    parser.add_argument("--no-eager", action="store_true", help="with --compile: time only the compiled encoder")
    parser.add_argument("--dtypes", nargs="+", default=["auto"],
                        help="auto (bfloat16 on a GPU, float32 on a CPU), bfloat16, float32 and/or fp8")
    args = parser.parse_args(argv)
    if args.make_lengths:
        make_lengths(args.make_lengths, args.output)
        return 0

    import torch
    import transformers

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    default = "bfloat16" if device.startswith("cuda") else "float32"
    dtypes = [default if d == "auto" else d for d in args.dtypes]
    models = ["tiny"] if args.tiny else args.models
    peaks = measure_peaks(device)
    print(f"matmul peaks: bf16 {peaks['bf16'] / 1e12:.0f} TFLOP/s, fp8 "
          f"{peaks['fp8'] / 1e12 if peaks['fp8'] else float('nan'):.0f} TFLOP/s", flush=True)
    if args.lengths:
        info = json.loads(Path(args.lengths).read_text())
        lengths, source = info["lengths"], f"{info['corpus']} ({info['tokenizer']} tokenizer)"
    elif args.tiny:
        lengths = np.clip(np.random.default_rng(0).lognormal(5.4, 0.5, 200), 8, None).astype(int).tolist()
        source = "synthetic log-normal lengths"
    else:
        parser.error("--lengths is required (make it with --make-lengths), unless --tiny")
    lengths = [max(2, min(n, args.max_length)) for n in lengths]
    baseline_docs = min(args.baseline_docs, 64 if args.tiny else args.baseline_docs)

    results = []
    modes = ([] if args.no_eager and args.compile else [False]) + ([True] if args.compile else [])
    for name in models:
        docs = random_docs(lengths, SHAPES[name]["vocab_size"])
        ours_docs = docs[:args.docs] if args.docs else docs
        for dtype_name in dtypes:
            fp8 = dtype_name == "fp8"
            model = build_model(name, device, torch.bfloat16 if fp8 and device.startswith("cuda") else
                                torch.float32 if fp8 else getattr(torch, dtype_name))
            params = shape_params(name)
            for compile in modes:
                for budget in args.budgets:
                    seconds, warmup = time_ours(model, ours_docs, device, budget, compile)
                    results.append(row(name, "ours+compile" if compile else "ours", ours_docs, seconds, params,
                                       None, peaks, dtype=dtype_name, tokens_per_batch=budget,
                                       warmup_seconds=round(warmup, 1)))
                    print(json.dumps(results[-1]), flush=True)
            if baseline_docs and not fp8:
                base = docs[:baseline_docs]
                seconds = time_baseline(model, base, device, args.max_length)
                results.append(row(name, "naive-hf", base, seconds, params, len(base) * args.max_length, peaks,
                                   dtype=dtype_name, batch_size=BASELINE_BATCH))
                print(json.dumps(results[-1]), flush=True)
            del model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

    report = dict(command=recorded_command("encode.py", argv),
                  device=torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
                  torch=torch.__version__, transformers=transformers.__version__, dtypes=dtypes,
                  lengths=source, max_length=args.max_length, mean_length=round(float(np.mean(lengths)), 1),
                  peaks=peaks, results=results)
    for name in models:
        ours = [r for r in results if r["model"] == name and r["method"].startswith("ours")]
        base = next((r for r in results if r["model"] == name and r["method"] == "naive-hf"), None)
        reference = max((r for r in ours if r["dtype"] != "fp8"), key=lambda r: r["docs_per_s"], default=None)
        for r in ours:
            if base:
                r["speedup_vs_naive"] = round(r["docs_per_s"] / base["docs_per_s"], 2)
            if reference and r["dtype"] == "fp8":
                r["speedup_vs_best_bf16"] = round(r["docs_per_s"] / reference["docs_per_s"], 2)
    write_report(args.output, report)
    print_table(results)
    print(f"wrote {args.output}")
    return 0


def shape_params(name: str) -> int:
    """Parameters of the shape (counted before any quantisation turns Linear weights into buffers)."""
    s = SHAPES[name]
    head_dim = s["hidden_size"] // s["num_attention_heads"]
    attention = 2 * s["hidden_size"] ** 2 + 2 * s["hidden_size"] * s["num_key_value_heads"] * head_dim
    layer = attention + 3 * s["hidden_size"] * s["intermediate_size"] + 2 * s["hidden_size"]
    return s["num_hidden_layers"] * layer + s["vocab_size"] * s["hidden_size"] + s["hidden_size"]


def percent(x) -> str:
    return "" if x is None else f"{x:.1%}"


def print_table(results: List[dict]) -> None:
    print("| model | dtype | method | docs | real tokens/s | docs/s | MFU (bf16 peak) | MFU (fp8 peak) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        method = r["method"] + (f" ({r['tokens_per_batch']} tok/batch)" if "tokens_per_batch" in r else
                                f" (batch {r['batch_size']}, padded)")
        print(f"| {r['model']} | {r['dtype']} | {method} | {r['docs']} | {r['tokens_per_s']:,.0f} | "
              f"{r['docs_per_s']:.1f} | {percent(r['mfu_bf16_peak'])} | {percent(r['mfu_fp8_peak'])} |")


if __name__ == "__main__":
    sys.exit(main())
