"""Render benchmarks/README.md from the JSON files in benchmarks/results/ (written by the benchmark scripts).

    python benchmarks/render_readme.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> dict:
    return json.loads((HERE / "results" / name).read_text())


def encode_table(data: dict) -> list:
    rows = ["| model | method | docs | real tokens/s | docs/s | MFU | warm-up s |", "|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        method = r["method"] + (f" ({r['tokens_per_batch']} tok/batch)" if r.get("tokens_per_batch") else
                                f" (batch {r['batch_size']}, padded to 512)")
        rows.append(f"| {r['model']} | {method} | {r['docs']} | {r['tokens_per_s']:,.0f} | {r['docs_per_s']:.1f} | "
                    f"{r['mfu']:.1%} | {r.get('warmup_seconds', '')} |")
    return rows


def rerank_table(data: dict) -> list:
    rows = ["| model | lengths | method | pairs/s | ms/query (top-100) | MFU |", "|---|---|---|---|---|---|"]
    for r in data["results"]:
        rows.append(f"| {r['model']} | {r['lengths']} | {r['method']} | {r['pairs_per_s']:.1f} | "
                    f"{r['ms_per_query']:.0f} | {r['mfu']:.1%} |")
    return rows


def train_table(data: dict) -> list:
    rows = ["| model | mode | queries/step | group | tokens/step | s/step | tokens/s | MFU | peak GiB |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        mode = "compiled" if r.get("compile") else "eager"
        rows.append(f"| {r['model']} | {mode} | {r['batch_queries']} | {r['group_size']} | {r['tokens_per_step']:,} | "
                    f"{r['step_seconds']:.2f} | {r['tokens_per_second']:,.0f} | {r['mfu']:.1%} | "
                    f"{r['peak_memory_gib']} |")
    return rows


def onnx_cpu_section() -> list:
    """The CPU tables of ``benchmarks/onnx_cpu.py`` (each JSON records its command), when they exist."""
    found = {name: load(f"onnx-cpu-{name}.json") for name in ("speed", "cranfield", "scifact", "rerank", "demo")
             if (HERE / "results" / f"onnx-cpu-{name}.json").exists()}
    if not found:
        return []
    any_run = next(iter(found.values()))
    lines = ["## CPU: onnxruntime vs torch float32 (`benchmarks/onnx_cpu.py`)", "",
             f"{any_run['machine']['cpu']}, {any_run['machine']['cores']} cores shared with other jobs (load "
             f"averages are in each JSON); {', '.join(f'{k} {v}' for k, v in any_run['versions'].items())}. "
             "Packaged SmolLM2-135M checkpoints (real weights). `onnx-*` rows are "
             "`--backend onnx --precision *` (see `pyserini_llama/onnxrt/quantize.py`).", ""]
    if "speed" in found:
        sp = found["speed"]
        lines += [f"Speed, same texts, batches and token budget for every backend, median of {sp['rounds']} "
                  f"interleaved rounds: {sp['docs']} Cranfield documents ({sp['doc_tokens']:,} tokens) encoded, "
                  f"{sp['pairs']} query-document pairs ({sp['pair_tokens']:,} tokens) scored. Command: "
                  f"`{sp['command']}`.", "",
                  "| backend | docs/s | encoding vs torch | pairs/s | reranking vs torch |", "|---|---|---|---|---|"]
        for name, enc in sp["encode"].items():
            rer = sp["rerank"][name]
            lines.append(f"| {name} | {enc['per_s']:.2f} | {enc['speedup']:.2f}x | {rer['per_s']:.2f} | "
                         f"{rer['speedup']:.2f}x |")
        lines.append("")
    for key in ("cranfield", "scifact"):
        if key in found:
            fi = found[key]
            lines += [f"Encoder fidelity, {Path(fi['collection']).name} {fi['split']}: {fi['docs']} documents, "
                      f"{fi['queries']} queries, exact search. Command: `{fi['command']}`.", "",
                      "| backend | nDCG@10 | vs torch | R@100 | doc cosine mean / min | query cosine mean / min |",
                      "|---|---|---|---|---|---|"]
            for name, row in fi["backends"].items():
                lines.append(f"| {name} | {row['nDCG@10']:.4f} | {row['nDCG@10_delta']:+.4f} | {row['R@100']:.4f} | "
                             f"{row['doc_cosine_mean']:.4f} / {row['doc_cosine_min']:.4f} | "
                             f"{row['query_cosine_mean']:.4f} / {row['query_cosine_min']:.4f} |")
            lines.append("")
    if "rerank" in found:
        rr = found["rerank"]
        lines += [f"Reranker fidelity, {Path(rr['collection']).name} {rr['split']}: {rr['queries']} queries, top-"
                  f"{rr['depth']} of {rr['first_stage']} (nDCG@10 {rr['bm25_nDCG@10']:.4f}). Kendall tau of each "
                  f"query's reranked order to torch float32's. Command: `{rr['command']}`.", "",
                  "| backend | nDCG@10 | vs torch | Kendall tau mean / min | same order | pairs/s |",
                  "|---|---|---|---|---|---|"]
        for name, row in rr["backends"].items():
            lines.append(f"| {name} | {row['nDCG@10']:.4f} | {row['nDCG@10_delta']:+.4f} | "
                         f"{row['kendall_tau_mean']:.3f} / {row['kendall_tau_min']:.3f} | "
                         f"{row['identical_order']:.0%} | {row['pairs_per_s']:.1f} |")
        lines.append("")
    if "demo" in found:
        de = found["demo"]
        pl = de["pipeline"]
        lines += [f"The README demo on this CPU, `python -m pyserini_llama.pipeline` with no arguments (first run: "
                  f"fresh export cache, BM25 index built): {de['seconds'] / 60:.1f} minutes, {pl['queries']} "
                  f"queries of {Path(pl['collection']).name}, reranking depth {pl['rerank_depth']} (load average "
                  f"{de['load_average_before'][0]:.1f} before). Command: `{de['command']}`.", "",
                  "| stage | nDCG@10 | R@100 | MRR@10 | seconds |", "|---|---|---|---|---|"]
        for name, row in pl["stages"].items():
            lines.append(f"| {name} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} | {row['MRR@10']:.4f} | "
                         f"{row['seconds']:.0f} |")
        lines.append("")
    return lines


def main() -> None:
    enc, rer, tr = load("encode-h100.json"), load("rerank-h100.json"), load("train-h100.json")
    eager = load("rerank-h100-eager.json")
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/render_readme.py` from `benchmarks/results/*.json`; each JSON records "
             "the command that wrote it. One H100 80GB, bf16, random weights at the model's shape (speed does not "
             "depend on weight values). MFU = model FLOPs / 800 TFLOP/s (the bf16 matmul rate measured on that "
             "machine): 2 x params x real tokens for inference, 6 x matmul params x tokens for training.", "",
             "## Encoding the SciFact corpus (RepLLaMA, `benchmarks/encode.py`)", "",
             f"Command: `{enc['command']}`; lengths: {enc['lengths']}, mean {enc['mean_length']} tokens, max "
             f"{enc['max_length']}.", ""] + encode_table(enc) + [
             "", "Targets at 7B shape: >= 2x the naive baseline and >= 70% MFU: met with `--compile` "
             "(torch.compile fuses the norm/rotary/activation kernels; eager stays near 55%). The original code's "
             "published SciFact speed is ~47 docs/s (HF) and ~115 docs/s (vLLM, merged LoRA) on one H100.", "",
             "## Reranking top-100 (RankLLaMA, `benchmarks/rerank.py`)", "",
             f"Command: `{rer['command']}`; {rer['queries']} queries x {rer['depth']} pairs, q {rer['q_max']} + "
             f"p {rer['p_max']} tokens; lengths: {rer['lengths']}.", ""] + rerank_table(rer) + [
             "", f"Eager-only run with three token budgets: `{eager['command']}`", ""] + rerank_table(eager) + [
             "", "Targets at 7B shape: >= 70% MFU and <= 0.5 s per query: met with `--compile` (411-429 ms/query, "
             "71-74% MFU); eager misses both (~580 ms, ~53%). With SciFact's lengths nearly every pair fills "
             "q 32 + p 164, so length sorting gains little here; compilation is what pays.", "",
             "## Training (RepLLaMA LoRA, `benchmarks/train.py`)", "",
             f"Command: `{tr['command']}`. Convention: {tr['flop_convention']}.", ""] + train_table(tr) + [
             "", "Target >= 40% MFU at 7B shape: **met with `--compile`** (57.2%; eager 35.7%). The trainers' "
             "`--compile` compiles each decoder layer in place (regional compilation, dynamic shapes), inside "
             "gradient checkpointing and under peft's wrappers; it fuses the norms, rotary embeddings, SiLU and "
             "LoRA dropout that eager runs as separate memory-bound kernels, and lowers peak memory. At 135M the "
             "same flag doubles throughput (2.2x) but MFU stays low (15%): with a hidden size of 576 the "
             "matmuls are too small to keep an H100 busy.", ""]
    lines += onnx_cpu_section()
    (HERE / "README.md").write_text("\n".join(lines))
    print("wrote benchmarks/README.md")


if __name__ == "__main__":
    main()
