"""Merge the raw result files in results/raw/ into results/small-scale.json and render results/README.md.

Each raw file is the output of a script run on the GPU machine (their ``_meta``/``command`` fields say which):
``evaluate_small.json`` and ``dev_small.json`` (scripts/evaluate_small.py on SciFact test + Cranfield, and on the
held-out train queries, via scripts/train_small.sh), ``*.lora-vs-full.json`` (the same script's first run, which
also trained the full fine-tuning arm), ``llara_ablation.json`` (scripts/llara_ablation.sh).

    python scripts/collect_results.py
"""
from __future__ import annotations

import json
from pathlib import Path

from render_results import render

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "results" / "raw"
KEEP = ("nDCG@10", "R@100", "MRR@10")
DEV = "beir-scifact train-dev (75 held-out train queries)"
# the first full run of scripts/train_small.sh trained both round-2 arms (LoRA and full) with one recipe
FULL_VS_LORA = {"repllama-smollm2": "round 2, LoRA (LoRA-vs-full run)",
                "repllama-smollm2-full": "round 2, full fine-tuning (LoRA-vs-full run)"}
SAME_AS_PACKAGED = "rankllama-pseudo"  # chosen on dev and copied to rankllama-smollm2: same rows


def pick(metrics: dict) -> dict:
    return {m: round(metrics[m], 4) for m in KEEP if m in metrics}


def main() -> None:
    out: dict = {}
    main_eval = json.loads((RAW / "evaluate_small.json").read_text())
    for collection, systems in main_eval.items():
        if collection.startswith("_"):
            continue
        for system, metrics in systems.items():
            if SAME_AS_PACKAGED not in system:
                out.setdefault(collection, {})[system] = pick(metrics)
    for path, collection_name in (("evaluate_small.lora-vs-full.json", None),
                                  ("dev_small.lora-vs-full.json", DEV)):
        for collection, systems in json.loads((RAW / path).read_text()).items():
            for system, metrics in systems.items() if not collection.startswith("_") else ():
                if system in FULL_VS_LORA:
                    out.setdefault(collection_name or collection, {})[FULL_VS_LORA[system]] = pick(metrics)
    for collection, systems in json.loads((RAW / "dev_small.json").read_text()).items():
        for system, metrics in systems.items() if not collection.startswith("_") else ():
            if system == "repllama-r1":  # round 1 trained on all train queries, these included
                system = "repllama-r1 (trained on these queries: not a held-out score)"
            out.setdefault(DEV, {})[system] = pick(metrics)
    ablation = json.loads((RAW / "llara_ablation.json").read_text())
    names = {"base": "ablation: repllama from smollm2 (120 steps)",
             "adapted": "ablation: llara-adapted smollm2 + same repllama fine-tune"}
    for key, runs in ablation["results"].items():
        collection, variant = key.rsplit("-", 1)
        out[collection][names[variant]] = pick(next(iter(runs.values())))
    out["_meta"] = {"evaluate_small": main_eval.get("_meta", {}),
                    "dev_choice": json.loads((RAW / "dev_choice.json").read_text()),
                    "llara_adaptation": ablation.get("adaptation", {})}
    (ROOT / "results" / "small-scale.json").write_text(json.dumps(out, indent=2) + "\n")
    (ROOT / "results" / "README.md").write_text(render(out, notes=(ROOT / "results" / "NOTES.md").read_text()
                                                         if (ROOT / "results" / "NOTES.md").exists() else ""))
    print("wrote results/small-scale.json and results/README.md")


if __name__ == "__main__":
    main()
