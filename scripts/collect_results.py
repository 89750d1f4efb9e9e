"""Merge the raw result files of scripts/reproduce_small.sh into results/small-scale.json and render results/README.md.

Reads ``results/raw/``: ``evaluate_small.json`` (SciFact test and Cranfield, read once at the end),
``dev_small.json`` (SciFact train-dev: held-out train queries), ``debian_dev.json`` (Debian dev),
``dev_choice.json`` (what the development split chose), ``reproduce_timings.json`` (seconds per step) and
``debian.*.mining.json`` (near duplicates dropped while mining). Systems get names a reader understands; the
full pipeline (the reranker alone or fused with its input, as chosen on the development split) is marked.

    python scripts/collect_results.py
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from render_results import render

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "results" / "raw"
KEEP = ("nDCG@10", "R@100", "MRR@10")
DENSE = {"repllama-smollm2": "RepLLaMA, packaged (Debian -> SciFact as one rank-32 adapter)",
         "repllama-scifact": "RepLLaMA (Debian -> SciFact)",
         "repllama-debian": "RepLLaMA (Debian only)",
         "repllama-llara-scifact": "RepLLaMA (LLaRA-adapted -> Debian -> SciFact)",
         "repllama-llara-debian": "RepLLaMA (LLaRA-adapted -> Debian)"}
RERANKERS = {"rankllama-smollm2": "RankLLaMA, packaged (one rank-32 adapter)",
             "rankllama-chain": "RankLLaMA (Debian -> SciFact, its adapter chain)",
             "rankllama-scifact": "RankLLaMA (Debian -> SciFact)", "rankllama-debian": "RankLLaMA (Debian only)"}
# The targets (nDCG@10), checked on the test tables: (collection, what, system, baseline system, margin)
# where a baseline is given the target is "system >= baseline + margin", else "system >= margin".
TARGETS = [
    ("beir-scifact", "dense", "repllama-smollm2", None, 0.70),
    ("beir-scifact", "hybrid", "bm25+repllama-smollm2 (rrf)", None, 0.75),
    ("beir-scifact", "reranker over its input", "rankllama-smollm2 (reranks rrf top-100)",
     "bm25+repllama-smollm2 (rrf)", 0.01),
    ("beir-scifact", "full pipeline", "@pipeline", None, 0.76),
    ("beir-scifact", "LLaRA adaptation", "repllama-llara-scifact", "repllama-scifact", 0.01),
    ("cranfield", "dense over BM25", "repllama-smollm2", "bm25", 0.0),
    ("cranfield", "reranker over its input", "rankllama-smollm2 (reranks rrf top-100)",
     "bm25+repllama-smollm2 (rrf)", 0.0),
    ("cranfield", "LLaRA adaptation", "repllama-llara-scifact", "repllama-scifact", 0.01),
]


def targets(test: dict, chosen: str, metric: str = "nDCG@10") -> list:
    """Each target with the measured value, what it needed and by how much it was met (>= 0) or missed."""
    rows = []
    for collection, what, system, baseline, margin in TARGETS:
        systems = test.get(collection, {})
        name = chosen if system == "@pipeline" else system
        if name not in systems or (baseline and baseline not in systems):
            continue
        needed = (systems[baseline][metric] if baseline else 0.0) + margin
        value = systems[name][metric]
        rows.append({"collection": collection, "target": what, "system": readable(name, chosen),
                     "needed": round(needed, 4), metric: value, "margin": round(value - needed, 4),
                     "met": value >= needed})
    return rows


def readable(system: str, chosen: str = "") -> str:
    """``bm25+repllama-scifact (rrf)`` -> ``hybrid: BM25 + RepLLaMA (Debian -> SciFact), RRF``, and so on."""
    if system == "bm25":
        return "BM25"
    if system in DENSE:
        return DENSE[system]
    if m := re.fullmatch(r"bm25\+(.+) \(rrf\)", system):
        return f"hybrid: BM25 + {DENSE.get(m.group(1), m.group(1))}, RRF"
    if m := re.fullmatch(r"(.+) \(reranks rrf top-(\d+)\)", system):
        name = f"{RERANKERS.get(m.group(1), m.group(1))} reranking the hybrid's top {m.group(2)}"
        return name + (" (full pipeline)" if system == chosen else "")
    if m := re.fullmatch(r"rrf\(([^,]+), .+\)", system):
        name = f"{RERANKERS.get(m.group(1), m.group(1))} fused with the hybrid, RRF"
        return name + (" (full pipeline)" if chosen and chosen.startswith(f"rrf({m.group(1)},") else "")
    return system


def table(path: Path, label=lambda collection: collection, chosen: str = "") -> dict:
    out = {}
    for collection, systems in json.loads(path.read_text()).items():
        if not collection.startswith("_"):
            out[label(collection)] = {readable(s, chosen): {m: round(v[m], 4) for m in KEEP if m in v}
                                      for s, v in systems.items()}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=RAW, help="folder of raw result files (default: results/raw)")
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="folder for small-scale.json and README.md (default: results)")
    args = parser.parse_args(argv)
    collect(args.raw, args.results)


def collect(raw: Path, results: Path) -> None:
    choice = json.loads((raw / "dev_choice.json").read_text()) if (raw / "dev_choice.json").exists() else {}
    # the chosen pipeline, named as the test run names it: the chosen reranker ships as rankllama-smollm2, over
    # the packaged dense model's hybrid
    test = json.loads((raw / "evaluate_small.json").read_text())
    prefix = {"rerank": "rankllama-smollm2 (reranks", "rerank+rrf": "rrf(rankllama-smollm2,"}.get(choice.get("pipeline"))
    chosen = next((s for c in test.values() for s in c if prefix and s.startswith(prefix)), "")
    out = table(raw / "evaluate_small.json", chosen=chosen)
    goals = targets(test, chosen)
    dev_names = {"beir-scifact-dev": "beir-scifact train-dev (held-out train queries)",
                 "debian-descriptions": "debian-descriptions dev"}
    for name in ("dev_small.json", "debian_dev.json"):
        if (raw / name).exists():
            out.update(table(raw / name, lambda c: dev_names.get(c, c)))
    meta = {"evaluate_small": json.loads((raw / "evaluate_small.json").read_text()).get("_meta", {}),
            "dev_choice": choice}
    for path in [raw / "reproduce_timings.json", *sorted(raw.glob("debian.*.mining.json"))]:
        if path.exists():
            meta[path.stem] = json.loads(path.read_text())
    out["_targets"] = goals
    out["_meta"] = meta
    results.mkdir(parents=True, exist_ok=True)
    (results / "small-scale.json").write_text(json.dumps(out, indent=2) + "\n")
    notes = results / "NOTES.md"
    (results / "README.md").write_text(render(out, notes=notes.read_text() if notes.exists() else ""))
    print(f"wrote {results / 'small-scale.json'} and {results / 'README.md'}")


if __name__ == "__main__":
    main()
