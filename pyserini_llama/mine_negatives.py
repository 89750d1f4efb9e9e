"""Hard negatives from any TREC run (BM25, dense, hybrid): the top-ranked documents that are not positives.

Example::

    python -m pyserini_llama.mine_negatives --run runs/scifact-train.bm25.trec \\
        --qrels ../shared/ir/beir-scifact/qrels/train.tsv --output negatives.jsonl --depth 200 --num 30

Each output line is ``{"query_id": ..., "positives": [...], "negatives": [...]}``: positives are the documents
judged relevant (rel > 0); negatives are drawn from ranks ``skip-top+1 .. depth`` of the run with the
positives removed, either ``--sample random`` (uniformly, seeded per query) or ``--sample top`` (the best
ranked), listed in run order. ``--skip-top`` leaves out the very top ranks, where unjudged relevant documents
(false negatives) are most likely. Queries without a judged positive are skipped: they cannot be trained on.
"""
from __future__ import annotations

import json
import random
import sys
from typing import Dict, List, Optional, Sequence

from .data.atomic import atomic_write, check_output_path
from .data.beir import Qrels, load_qrels
from .data.trec import Run, load_run
from . import cli
from .errors import UserError


def mine_negatives(run: Run, qrels: Qrels, depth: int = 200, num: int = 30, skip_top: int = 0,
                   sample: str = "random", seed: int = 42) -> Dict[str, Dict[str, List[str]]]:
    """``{qid: {"positives": [...], "negatives": [...]}}`` for every run query that has a positive."""
    if depth < 1 or num < 1 or skip_top < 0:
        raise ValueError(f"depth and num must be positive and skip_top non-negative "
                         f"(got {depth}, {num}, {skip_top})")
    if skip_top >= depth:
        raise UserError(f"skipping the top {skip_top} leaves nothing of the top {depth}")
    if sample not in ("random", "top"):
        raise ValueError(f"sample must be 'random' or 'top', got {sample!r}")
    mined = {}
    for qid, hits in run.items():
        positives = [d for d, rel in qrels.get(qid, {}).items() if rel > 0]
        if not positives:
            continue
        excluded = set(positives)
        candidates = [d for d, _ in hits[skip_top:depth] if d not in excluded]
        if sample == "top" or len(candidates) <= num:
            negatives = candidates[:num]
        else:
            rng = random.Random(f"{seed}:{qid}")
            picked = sorted(rng.sample(range(len(candidates)), num))  # keep run order
            negatives = [candidates[i] for i in picked]
        mined[qid] = {"positives": positives, "negatives": negatives}
    return mined


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.mine_negatives", __doc__)
    parser.add_argument("--run", required=True, help="TREC or MS MARCO run file over the training queries")
    parser.add_argument("--qrels", required=True, help="training qrels (BEIR TSV or TREC); rel > 0 = positive")
    cli.add_output(parser, help="JSONL to write")
    parser.add_argument("--depth", type=cli.positive_int, default=200, help="only ranks up to this are candidates")
    parser.add_argument("--num", type=cli.positive_int, default=30, help="negatives kept per query")
    parser.add_argument("--skip-top", type=cli.non_negative_int, default=0,
                        help="ignore this many top-ranked documents")
    parser.add_argument("--sample", choices=["random", "top"], default="random",
                        help="random: sample among the candidates; top: take the best ranked")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    check_output_path(args.output, args.overwrite)
    if "test" in args.qrels.rsplit("/", 1)[-1].lower():
        raise UserError(f"{args.qrels}: refusing to mine training negatives from test judgments")
    run, qrels = load_run(args.run), load_qrels(args.qrels)
    mined = mine_negatives(run, qrels, args.depth, args.num, args.skip_top, args.sample, args.seed)
    if not mined:
        raise UserError(f"no query of {args.run} has a positive in {args.qrels}; are they from the same "
                        f"collection and split?")
    with atomic_write(args.output, overwrite=args.overwrite) as f:
        for qid, entry in mined.items():
            f.write(json.dumps({"query_id": qid, **entry}) + "\n")
    short = sum(1 for e in mined.values() if len(e["negatives"]) < args.num)
    print(f"wrote {args.output}: {len(mined)} queries ({len(run) - len(mined)} without a positive skipped), "
          f"{sum(len(e['negatives']) for e in mined.values())} negatives; {short} queries have fewer than "
          f"{args.num}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
