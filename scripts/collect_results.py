"""Merge the raw result files in results/raw/ into results/small-scale.json and render results/README.md.

Each raw file is the output of a script run on the GPU machine (their ``_meta``/``command`` fields say which):
``evaluate_small.json`` (scripts/evaluate_small.py: the packaged checkpoints), ``llara_ablation.json``
(scripts/llara_ablation.sh), ``lora_vs_full.*.json`` and ``evaluate_small.rankllama-*.json`` (earlier recipes,
kept because the notes discuss them).

    python scripts/collect_results.py
"""
from __future__ import annotations

import json
from pathlib import Path

from render_results import render

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "results" / "raw"
KEEP = ("nDCG@10", "R@100", "MRR@10")


def pick(metrics: dict) -> dict:
    return {m: round(metrics[m], 4) for m in KEEP if m in metrics}


def main() -> None:
    out: dict = {}
    main_eval = json.loads((RAW / "evaluate_small.json").read_text())
    for collection, systems in main_eval.items():
        if collection.startswith("_"):
            continue
        for system, metrics in systems.items():
            out.setdefault(collection, {})[system] = pick(metrics)
    for path in sorted(RAW.glob("evaluate_small.rankllama-*.json")):
        variant = path.stem.split(".", 1)[1]
        for collection, systems in json.loads(path.read_text()).items():
            for system, metrics in systems.items() if not collection.startswith("_") else ():
                if system.startswith("rankllama"):
                    out[collection][f"{variant} (reranks rrf top-100)"] = pick(metrics)
    for path in sorted(RAW.glob("lora_vs_full.*.json")):
        recipe = path.stem.split(".", 1)[1]
        for collection, systems in json.loads(path.read_text()).items():
            for system, metrics in systems.items() if not collection.startswith("_") else ():
                if system != "bm25":
                    out[collection][f"{system} ({recipe})"] = pick(metrics)
    ablation = json.loads((RAW / "llara_ablation.json").read_text())
    names = {"base": "ablation: repllama from smollm2 (120 steps)",
             "adapted": "ablation: llara-adapted smollm2 + same repllama fine-tune"}
    for key, runs in ablation["results"].items():
        collection, variant = key.rsplit("-", 1)
        out[collection][names[variant]] = pick(next(iter(runs.values())))
    out["_meta"] = {"evaluate_small": main_eval.get("_meta", {}),
                    "llara_adaptation": ablation.get("adaptation", {})}
    (ROOT / "results" / "small-scale.json").write_text(json.dumps(out, indent=2) + "\n")
    (ROOT / "results" / "README.md").write_text(render(out, notes=(ROOT / "results" / "NOTES.md").read_text()
                                                         if (ROOT / "results" / "NOTES.md").exists() else ""))
    print("wrote results/small-scale.json and results/README.md")


if __name__ == "__main__":
    main()
