"""Pick the packaged reranker and the full pipeline from development-split numbers (never from test).

Reads ``scripts/evaluate_small.py`` output for a development split; among every reranker's two pipelines
(``R (reranks rrf top-100)`` and ``rrf(R, bm25+<dense> (rrf))``, the reranker fused with its input) it picks the
best by ``--metric``, copies that reranker's checkpoint folder to ``CHECKPOINTS/LINK`` and writes the choice.

    python scripts/choose_on_dev.py --dev results/raw/dev_small.json --collection beir-scifact-dev \\
        --rerankers rankllama-queries rankllama-pseudo --checkpoints ckpt --link rankllama-smollm2 \\
        --output results/raw/dev_choice.json
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama import cli  # noqa: E402
from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402
from pyserini_llama.paths import remove_tree  # noqa: E402


def main(argv=None) -> int:
    parser = cli.parser("python scripts/choose_on_dev.py", __doc__)
    parser.add_argument("--dev", required=True, help="evaluate_small.py JSON of the development split")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--rerankers", nargs="+", required=True)
    parser.add_argument("--checkpoints", required=True, help="folder holding the rerankers' checkpoints")
    parser.add_argument("--link", required=True, help="name the chosen checkpoint is copied to")
    parser.add_argument("--metric", default="nDCG@10")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    results = json.loads(Path(args.dev).read_text())
    if args.collection not in results:
        raise UserError(f"{args.dev}: no results for {args.collection!r} (have: {', '.join(results)})")
    table = results[args.collection]
    candidates = {}
    for name in args.rerankers:
        for system, pipeline in table.items():
            if system.startswith(f"{name} (reranks"):
                candidates[system] = (name, "rerank")
            elif system.startswith(f"rrf({name},"):
                candidates[system] = (name, "rerank+rrf")
    if not candidates:
        raise UserError(f"{args.dev}: no pipeline of {', '.join(args.rerankers)} for {args.collection}")
    best = max(candidates, key=lambda s: (table[s][args.metric], -list(candidates).index(s)))
    reranker, pipeline = candidates[best]
    target = Path(args.checkpoints) / args.link
    if target.exists():
        remove_tree(target, Path(args.checkpoints))
    shutil.copytree(Path(args.checkpoints) / reranker, target)
    choice = {"metric": args.metric, "split": args.collection, "reranker": reranker, "pipeline": pipeline,
              "system": best, "dev": {s: table[s][args.metric] for s in candidates}}
    with atomic_write(args.output) as f:
        f.write(json.dumps(choice, indent=2) + "\n")
    print(f"chosen on {args.collection}: {best} ({args.metric} {table[best][args.metric]:.4f}); "
          f"{reranker} copied to {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
