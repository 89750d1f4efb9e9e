"""Fuse runs with Pyserini's formulas, on in-memory runs (no pandas, no Java).

* :func:`reciprocal_rank_fusion` = ``pyserini.fusion.reciprocal_rank_fusion``: each run contributes
  ``1 / (rrf_k + rank)`` (rank from 1, over its top ``depth``), summed per document; ties by docid.
* :func:`hybrid_fusion` = ``pyserini.search.hybrid.HybridSearcher`` (``--alpha``, ``--normalization``,
  ``--weight-on-dense``): ``alpha * sparse + dense`` (or ``sparse + alpha * dense``); a document missing from
  one run takes that run's minimum score; with normalization each run's scores are centred on the middle of
  their range and divided by the range.

Example::

    from pyserini_llama.fusion import hybrid_fusion, reciprocal_rank_fusion
    rrf = reciprocal_rank_fusion([bm25_run, dense_run], rrf_k=60, depth=1000, k=1000)
    hybrid = hybrid_fusion(dense_run, bm25_run, alpha=0.1, k=1000)
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .data.trec import Run
from .errors import UserError


def _ranked(scores: Dict[str, float], k: Optional[int]) -> List[Tuple[str, float]]:
    hits = sorted(scores.items(), key=lambda h: (-h[1], h[0]))
    return hits[:k] if k is not None else hits


def reciprocal_rank_fusion(runs: Sequence[Run], rrf_k: int = 60, depth: Optional[int] = None,
                           k: Optional[int] = None) -> Run:
    """Sum of ``1 / (rrf_k + rank)`` over the runs (Cormack et al., 2009), for every query in any run."""
    if len(runs) < 2:
        raise UserError(f"fusion needs at least 2 runs, got {len(runs)}")
    fused: Run = {}
    for qid in sorted({qid for run in runs for qid in run}):
        scores: Dict[str, float] = {}
        for run in runs:
            for rank, (docid, _) in enumerate(run.get(qid, [])[:depth], start=1):
                scores[docid] = scores.get(docid, 0.0) + 1.0 / (rrf_k + rank)
        fused[qid] = _ranked(scores, k)
    return fused


def _hybrid_query(dense: Dict[str, float], sparse: Dict[str, float], alpha: float, normalization: bool,
                  weight_on_dense: bool) -> Dict[str, float]:
    lo_d, hi_d = (min(dense.values()), max(dense.values())) if dense else (0.0, 1.0)
    lo_s, hi_s = (min(sparse.values()), max(sparse.values())) if sparse else (0.0, 1.0)
    out: Dict[str, float] = {}
    for docid in set(dense) | set(sparse):
        d, s = dense.get(docid, lo_d), sparse.get(docid, lo_s)
        if normalization:
            # a run whose scores are all equal has no spread; Pyserini divides by zero there
            s = (s - (lo_s + hi_s) / 2) / ((hi_s - lo_s) or 1.0)
            d = (d - (lo_d + hi_d) / 2) / ((hi_d - lo_d) or 1.0)
        out[docid] = s + alpha * d if weight_on_dense else alpha * s + d
    return out


def hybrid_fusion(dense: Run, sparse: Run, alpha: float = 0.1, normalization: bool = False,
                  weight_on_dense: bool = False, k: Optional[int] = None) -> Run:
    """Pyserini's dense + sparse hybrid over the union of each query's hits (``k0`` is the input depth)."""
    fused: Run = {}
    for qid in sorted(set(dense) | set(sparse)):
        scores = _hybrid_query(dict(dense.get(qid, [])), dict(sparse.get(qid, [])), alpha, normalization,
                               weight_on_dense)
        fused[qid] = _ranked(scores, k)
    return fused


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyserini_llama.fusion``: reciprocal rank fusion of TREC runs, options as ``pyserini.fusion``."""
    from . import cli
    from .data.atomic import check_output_path
    from .data.trec import load_run, write_run

    parser = cli.parser("python -m pyserini_llama.fusion",
                        "Fuse TREC runs by reciprocal rank fusion, as pyserini.fusion does (no Java needed).")
    parser.add_argument("--runs", nargs="+", required=True, help="two or more TREC runs")
    cli.add_output(parser, help="fused TREC run to write")
    parser.add_argument("--method", default="rrf", choices=["rrf"])
    parser.add_argument("--rrf.k", dest="rrf_k", type=cli.positive_int, default=60, help="RRF constant (default 60)")
    parser.add_argument("--depth", type=cli.positive_int, default=1000,
                        help="ranks of each run that vote (default 1000)")
    parser.add_argument("--k", type=cli.positive_int, default=1000, help="hits kept per query (default 1000)")
    parser.add_argument("--runtag", default="pyserini_llama.fusion")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error(f"argument --runs: fusion needs at least 2 runs, got {len(args.runs)}")
    check_output_path(args.output, args.overwrite)
    fused = reciprocal_rank_fusion([load_run(p) for p in args.runs], rrf_k=args.rrf_k, depth=args.depth, k=args.k)
    write_run(fused, args.output, tag=args.runtag, overwrite=args.overwrite)
    print(f"wrote {args.output}: {len(fused)} queries fused from {len(args.runs)} runs")
    return 0


if __name__ == "__main__":
    from .cli import run_cli

    run_cli(main)
