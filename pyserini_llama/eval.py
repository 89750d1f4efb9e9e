"""Evaluate TREC runs with ir_measures: ``python -m pyserini_llama.eval --run RUN --qrels QRELS``.

Example::

    python -m pyserini_llama.eval --qrels ../shared/ir/beir-scifact/qrels/test.tsv --run runs/bm25.trec
    python -m pyserini_llama.eval --collection beir-scifact --split test --run runs/bm25.trec --per-query
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Sequence

from .data.beir import Qrels, load_qrels
from .data.trec import Run, load_run
from . import cli
from .errors import UserError

DEFAULT_METRICS = ("nDCG@10", "R@100", "R@1000", "RR@10", "AP")
# Common spellings users type (trec_eval and Pyserini's) mapped to ir_measures names.
ALIASES = {"MRR@10": "RR@10", "MAP": "AP", "map": "AP", "ndcg_cut_10": "nDCG@10", "recall_100": "R@100",
           "recall_1000": "R@1000", "recip_rank": "RR"}
DISPLAY = {"RR@10": "MRR@10", "AP": "MAP"}


def parse_measures(names: Iterable[str]):
    import ir_measures

    parsed = []
    for name in names:
        try:
            parsed.append(ir_measures.parse_measure(ALIASES.get(name, name)))
        except (ValueError, NameError, SyntaxError):
            raise UserError(f"unknown metric {name!r} (examples: nDCG@10, R@100, MRR@10, MAP)") from None
    return parsed


def _as_dict(run: Run) -> Dict[str, Dict[str, float]]:
    # ir_measures ranks by score; ties are broken by docid, as trec_eval does
    return {qid: {docid: float(score) for docid, score in hits} for qid, hits in run.items()}


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS,
             per_query: bool = False) -> Dict:
    """Aggregate metrics over the judged queries (unretrieved judged queries count as zero).

    Returns ``{metric: value}``; with ``per_query`` also ``{"per_query": {qid: {metric: value}}}``.
    """
    import ir_measures

    measures = parse_measures(metrics)
    run_d = {qid: hits for qid, hits in _as_dict(run).items() if qid in qrels}
    names = {m: DISPLAY.get(str(m), str(m)) for m in measures}
    rows: Dict[str, Dict[str, float]] = {qid: {names[m]: 0.0 for m in measures} for qid in qrels}
    for metric in ir_measures.iter_calc(measures, qrels, run_d):
        rows[metric.query_id][names[metric.measure]] = float(metric.value)
    n = len(qrels)
    result = {names[m]: (sum(r[names[m]] for r in rows.values()) / n if n else 0.0) for m in measures}
    if per_query:
        result["per_query"] = rows
    return result


def format_table(results: Dict[str, Dict[str, float]], metrics: Optional[List[str]] = None) -> str:
    """Render ``{system: {metric: value}}`` as a fixed-width table."""
    systems = list(results)
    metrics = metrics or [m for m in next(iter(results.values())) if m != "per_query"] if results else []
    width = max([len("system")] + [len(s) for s in systems])
    lines = ["  ".join([f"{'system':<{width}}"] + [f"{m:>8}" for m in metrics])]
    for s in systems:
        cells = []
        for m in metrics:
            v = results[s].get(m)
            cells.append(f"{v:>8.4f}" if isinstance(v, float) else f"{str(v if v is not None else '-'):>8}")
        lines.append("  ".join([f"{s:<{width}}"] + cells))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.eval", __doc__)
    parser.add_argument("--run", required=True, nargs="+", help="TREC or MS MARCO run file(s)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--qrels", help="qrels file (BEIR TSV or TREC format)")
    src.add_argument("--collection", help="collection name or BEIR folder (uses its qrels/<split>.tsv)")
    parser.add_argument("--split", default="test", help="qrels split with --collection (default: test)")
    parser.add_argument("--data-dir", help="where collections live (default: ../shared/ir when present)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--per-query", action="store_true", help="also print one line per query and metric")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.qrels:
        qrels = load_qrels(args.qrels)
    else:
        from .data.collections import resolve_collection
        qrels = resolve_collection(args.collection, args.data_dir).qrels(args.split)
    results = {}
    for path in args.run:
        results[path] = evaluate(load_run(path), qrels, args.metrics, per_query=args.per_query)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if args.per_query:
        for path, res in results.items():
            for qid, row in res.pop("per_query").items():
                for metric, value in row.items():
                    print(f"{metric}\t{qid}\t{value:.4f}\t{path}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
