"""RankLLaMA reranking throughput: our length-sorted, token-budgeted batching vs a naive fixed-batch baseline.

Scores ``--queries`` queries x top-``--depth`` (default 100) synthetic pairs with random-weight models:
LLaMA-2-7B shape (built on the GPU from ``LlamaConfig``, no download) and SmolLM2-135M (``--smollm2 FOLDER`` or
the cached conversion). Pair lengths are RankLLaMA's passage setting, q 32 + p 164 tokens at most:
``realistic`` draws query/passage lengths from ``--lengths`` (a JSON file ``{"query": [...], "passage":
[...]}`` of token counts, e.g. measured on a collection) or, without one, uniformly (query 6-32, passage
40-161 tokens); ``full`` gives every pair the maximum length. The baseline scores the pairs in run order in
fixed batches of ``--naive-batch`` padded to the longest pair of the batch (as the reference inference code
does). MFU = 2 x non-embedding parameters x real (unpadded) tokens / time / peak (attention FLOPs ignored;
small at 200 tokens).

``--dtypes bfloat16 fp8`` also times the FP8 reranker (``pyserini_llama.models.fp8``) with the same weights. The
run starts by measuring the device's bf16 and FP8 matmul ceilings (``common.py``); rows report MFU against both.

Example::

    python benchmarks/rerank.py --output results/rerank-h100.json                  # on a GPU, < 3 minutes
    # bf16-compiled beside fp8-compiled at 7B shape (~2 minutes on one H200)
    python benchmarks/rerank.py --models llama2-7b --compile --no-eager --naive-batch 0 --batch-tokens 32768 \
        --dtypes bfloat16 fp8 --lengths benchmarks/rerank-scifact-lengths.json --output rerank-fp8.json
    python benchmarks/rerank.py --tiny --output /tmp/rerank-tiny.json              # CPU smoke run
    # real length distributions (untruncated token counts of formatted queries and documents), made on a CPU
    python benchmarks/rerank.py --write-lengths results/scifact-lengths.json --collection beir-scifact \
        --tokenizer smollm2-135m
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure_peaks, mfu, recorded_command  # noqa: E402
from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.cli import run_cli  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402
Q_MAX, P_MAX = 32, 164
P_CONTENT_MAX = P_MAX - 3  # RankLLaMA v1 keeps p_max_len - 3 passage tokens
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300)


def pair_lengths(n: int, mode: str, lengths_file: Optional[str], rng: np.random.Generator) -> np.ndarray:
    """Token count of each pair: BOS + query + BOS + passage, capped like RankLLaMA v1."""
    if mode == "full":
        return np.full(n, 2 + Q_MAX + P_CONTENT_MAX)
    if lengths_file:
        data = json.loads(Path(lengths_file).read_text())
        q = rng.choice(np.minimum(np.asarray(data["query"]), Q_MAX), n)
        p = rng.choice(np.minimum(np.asarray(data["passage"]), P_CONTENT_MAX), n)
    else:
        q, p = rng.integers(6, Q_MAX + 1, n), rng.integers(40, P_CONTENT_MAX + 1, n)
    return 2 + q + p


def write_lengths(path: str, collection: str, tokenizer_name: str, split: str = "test") -> None:
    """Token counts of RankLLaMA-formatted queries (of ``split``) and documents of a collection."""
    from transformers import AutoTokenizer

    from pyserini_llama.data.collections import resolve_collection
    from pyserini_llama.models.hub import resolve_model_path
    from pyserini_llama.models.presets import rankllama_v1_config
    from pyserini_llama.rerankers.inputs import format_pair

    folder, config = resolve_collection(collection), rankllama_v1_config()
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path(tokenizer_name)))
    queries = [format_pair(q, "", "", config)[0] for q in folder.queries(split).values()]
    passages = [format_pair("", d.title, d.text, config)[1] for d in folder.corpus().values()]
    lengths = {name: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
               for name, texts in (("query", queries), ("passage", passages))}
    with atomic_write(path) as f:
        f.write(json.dumps(dict(source=f"{folder.root.name} {split} queries + corpus, {tokenizer_name} "
                                       f"tokenizer", **lengths)) + "\n")


def build_random_model(shape: Dict, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(**shape, num_labels=1, pad_token_id=0, max_position_embeddings=4096,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build 7B directly in bf16: no 27 GB fp32 detour
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def load_smollm2(folder: Optional[str], device: str, dtype):
    from transformers import AutoModelForSequenceClassification

    from pyserini_llama.models.hub import resolve_model_path

    path = Path(folder) if folder else resolve_model_path("smollm2-135m")
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype,
                                                               attn_implementation="sdpa")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = 2  # SmolLM2 pads with its EOS
    return model.to(device).eval()


def non_embedding_params(model) -> int:
    """Counted before any quantisation (FP8 weights are buffers, not parameters)."""
    embed = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embed


def quantized(model, device: str):
    """The model with its decoder matmuls in FP8, as ``--dtype fp8`` loads it (emulated on a CPU)."""
    from pyserini_llama.models.fp8 import quantize_model

    quantize_model(model, emulate=not device.startswith("cuda"))
    return model


def make_reranker(model, device: str, batch_tokens: int, tokenizer_dir: Path, compile: bool = False):
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker
    from pyserini_llama.testing import build_tokenizer

    # Token ids are synthetic; the tokenizer only gives the reranker its pair template.
    tokenizer = build_tokenizer(tokenizer_dir, style="llama")
    return RankLlamaReranker(model, tokenizer, device=device, batch_tokens=batch_tokens, compile=compile)


def synthetic_pairs(lengths: np.ndarray, vocab: int, rng: np.random.Generator) -> List[List[int]]:
    return [rng.integers(3, vocab, int(n)).tolist() for n in lengths]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_ours(reranker, pairs: List[List[int]]) -> float:
    # warm-up (kernels, allocator, compilation): pairs across the length range, so several shapes are seen
    reranker.score_token_ids(pairs[::max(1, len(pairs) // 256)])
    sync(reranker.device)
    start = time.perf_counter()
    reranker.score_token_ids(pairs)
    sync(reranker.device)
    return time.perf_counter() - start


def time_naive(reranker, pairs: List[List[int]], batch_size: int) -> float:
    import torch

    def run(items):
        with torch.inference_mode():
            for i in range(0, len(items), batch_size):
                reranker.score_batch(reranker.collate(items[i:i + batch_size]))

    run(pairs[:batch_size])
    sync(reranker.device)
    start = time.perf_counter()
    run(pairs)
    sync(reranker.device)
    return time.perf_counter() - start


def measure(name: str, dtype: str, reranker, params: int, pairs: List[List[int]], n_queries: int,
            naive_batch: Optional[int], lengths_mode: str, peaks: Dict, eager: bool = True) -> List[Dict]:
    """Time our batching (unless ``eager`` is off for an uncompiled reranker), and the naive baseline when
    ``naive_batch`` is given."""
    tokens = sum(len(p) for p in pairs)
    timings = []
    if eager or reranker.compile:
        timings.append(("ours+compile" if reranker.compile else "ours", time_ours(reranker, pairs)))
    if naive_batch:
        timings.append(("naive", time_naive(reranker, pairs, naive_batch)))
    rows = []
    for method, seconds in timings:
        flops = 2 * params * tokens
        rows.append(dict(model=name, dtype=dtype, lengths=lengths_mode, method=method, pairs=len(pairs),
                         tokens=tokens, batch_tokens=reranker.batch_tokens if method.startswith("ours") else None,
                         batch_size=naive_batch if method == "naive" else None, seconds=seconds,
                         pairs_per_s=len(pairs) / seconds, tokens_per_s=tokens / seconds,
                         ms_per_query=1000 * seconds / n_queries, mfu_bf16_peak=mfu(flops, seconds, peaks["bf16"]),
                         mfu_fp8_peak=mfu(flops, seconds, peaks["fp8"])))
        print(f"  {name:<12} {dtype:<8} {lengths_mode:<9} {method:<12} {rows[-1]['pairs_per_s']:>9.1f} pairs/s "
              f"{rows[-1]['ms_per_query']:>8.1f} ms/query  MFU {percent(rows[-1]['mfu_bf16_peak'])} of bf16 peak, "
              f"{percent(rows[-1]['mfu_fp8_peak'])} of fp8 peak", flush=True)
    return rows


def percent(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def format_rows(rows: List[Dict]) -> str:
    head = (f"{'model':<12} {'dtype':<8} {'lengths':<9} {'method':<12} {'pairs/s':>9} {'ms/query':>9} {'tok/s':>9} "
            f"{'MFU bf16':>9} {'MFU fp8':>8}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['model']:<12} {r['dtype']:<8} {r['lengths']:<9} {r['method']:<12} {r['pairs_per_s']:>9.1f} "
                     f"{r['ms_per_query']:>9.1f} {r['tokens_per_s']:>9.0f} {percent(r['mfu_bf16_peak']):>9} "
                     f"{percent(r['mfu_fp8_peak']):>8}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="JSON results")
    parser.add_argument("--write-lengths", metavar="JSON", help="only write a --lengths file from --collection")
    parser.add_argument("--collection", default="beir-scifact", help="with --write-lengths")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="with --write-lengths")
    parser.add_argument("--smollm2", help="SmolLM2-135M folder (default: the cached conversion)")
    parser.add_argument("--lengths", help="JSON {query: [...], passage: [...]} of token lengths")
    parser.add_argument("--queries", type=int, default=20, help="queries of top-depth pairs (default 20)")
    parser.add_argument("--depth", type=int, default=100, help="pairs per query (default 100)")
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[16384, 32768, 65536],
                        help="token budgets to try for our batching (the best is reported too)")
    parser.add_argument("--naive-batch", type=int, default=64, help="fixed batch size of the baseline")
    parser.add_argument("--models", nargs="+", default=["llama2-7b", "smollm2-135m"],
                        choices=["llama2-7b", "smollm2-135m"])
    parser.add_argument("--compile", action="store_true", help="also time the reranker under torch.compile")
    parser.add_argument("--no-eager", action="store_true", help="with --compile: time only the compiled reranker")
    parser.add_argument("--dtypes", nargs="+", default=["auto"],
                        help="auto (bfloat16 on a GPU, float32 on a CPU), bfloat16, float32 and/or fp8")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: a tiny random model, few pairs")
    parser.add_argument("--device", help="default: cuda when present, else cpu")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.write_lengths:
        write_lengths(args.write_lengths, args.collection, args.tokenizer)
        print(f"wrote {args.write_lengths}")
        return 0
    if not args.output:
        raise UserError("--output is required")

    import torch

    from pyserini_llama.data.atomic import check_output_path

    check_output_path(args.output, overwrite=args.overwrite)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.tiny and not device.startswith("cuda"):
        raise UserError("the full benchmark needs a GPU; use --tiny for a CPU smoke run")
    default = "bfloat16" if device.startswith("cuda") else "float32"
    dtypes = [default if d == "auto" else d for d in args.dtypes]
    peaks = measure_peaks(device)
    print(f"matmul peaks: bf16 {peaks['bf16'] / 1e12:.0f} TFLOP/s, fp8 "
          f"{peaks['fp8'] / 1e12 if peaks['fp8'] else float('nan'):.0f} TFLOP/s", flush=True)
    n_pairs = args.queries * args.depth
    models = {"tiny": None} if args.tiny else dict.fromkeys(args.models)
    rows: List[Dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            for dtype_name in dtypes:
                fp8 = dtype_name == "fp8"
                dtype = (torch.bfloat16 if device.startswith("cuda") else torch.float32) if fp8 else \
                    getattr(torch, dtype_name)
                start = time.perf_counter()
                model = (build_random_model(TINY, device, dtype) if name == "tiny" else
                         build_random_model(LLAMA2_7B, device, dtype) if name == "llama2-7b" else
                         load_smollm2(args.smollm2, device, dtype))
                params = non_embedding_params(model)
                if fp8:
                    model = quantized(model, device)
                print(f"{name} ({dtype_name}): {params / 1e6:.1f}M non-embedding parameters, built in "
                      f"{time.perf_counter() - start:.1f}s", flush=True)
                rng = np.random.default_rng(0)  # the same pairs for every dtype
                for mode in ("realistic", "full"):
                    pairs = synthetic_pairs(pair_lengths(n_pairs, mode, args.lengths, rng),
                                            model.config.vocab_size, rng)
                    for i, budget in enumerate(args.batch_tokens):
                        naive = args.naive_batch if i == 0 and not fp8 else None
                        reranker = make_reranker(model, device, budget, Path(tmp) / "tok")
                        rows += measure(name, dtype_name, reranker, params, pairs, args.queries, naive, mode,
                                        peaks, eager=not (args.no_eager and args.compile))
                        if args.compile:
                            reranker = make_reranker(model, device, budget, Path(tmp) / "tok", compile=True)
                            rows += measure(name, dtype_name, reranker, params, pairs, args.queries, None, mode,
                                            peaks)
                del model
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()

    print()
    print(format_rows(rows))
    info = dict(device=torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
                or "cpu", torch=torch.__version__, dtypes=dtypes, peaks=peaks,
                queries=args.queries, depth=args.depth, q_max=Q_MAX, p_max=P_MAX,
                lengths=(json.loads(Path(args.lengths).read_text()).get("source", args.lengths)
                         if args.lengths else "synthetic uniform: query 6-32, passage 40-161 tokens (+2 BOS)"),
                command=recorded_command("rerank.py", argv))
    with atomic_write(args.output, overwrite=args.overwrite) as f:
        f.write(json.dumps(dict(info, results=rows), indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
