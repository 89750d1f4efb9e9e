"""Hard negatives from any TREC run (BM25, dense, hybrid): the top-ranked documents that are not positives.

Example::

    python -m pyserini_llama.mine_negatives --run runs/scifact-train.bm25.trec \\
        --qrels ../shared/ir/beir-scifact/qrels/train.tsv --output negatives.jsonl --depth 200 --num 30

Each output line is ``{"query_id": ..., "positives": [...], "negatives": [...]}``: positives are the documents
judged relevant (rel > 0); negatives are drawn from ranks ``skip-top+1 .. depth`` of the run with the
positives removed, either ``--sample random`` (uniformly, seeded per query) or ``--sample top`` (the best
ranked), listed in run order. ``--skip-top`` leaves out the very top ranks, where unjudged relevant documents
(false negatives) are most likely. Queries without a judged positive are skipped: they cannot be trained on.
An output name ending in ``.gz`` is written gzipped (the trainers read either).

``--exclude-near-duplicates --corpus C [--topics T]`` also drops the candidates that nearly repeat a positive:
collections built from related records (Debian's ``libfoo1`` and ``libfoo-dev`` share one description plus a
line) hold unjudged copies of the positive, and teaching them as non-relevant contradicts the positive. A
candidate is dropped when (1) its text nearly repeats the positive's: the word set of the shorter text is at
least ``--near-duplicate-threshold`` (0.8) contained in the other's, and (2) with ``--topics``, it also holds
every query word the positive holds. (2) keeps the templated siblings that the query tells apart (the "Tamil"
and "Esperanto" language packs share all but one word, and the query names one of them): they are the
hardest true negatives there are. Both tests are pure functions of the texts: deterministic and cheap.
"""
from __future__ import annotations

import gzip
import json
import random
import re
import sys
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence

from .data.atomic import atomic_write, check_output_path
from .data.beir import Qrels, load_qrels
from .data.trec import Run, load_run
from . import cli
from .errors import UserError

WORD = re.compile(r"\w+")
NEAR_DUPLICATE_THRESHOLD = 0.8


def word_set(text: str) -> FrozenSet[str]:
    return frozenset(WORD.findall(text.lower()))


def containment(a: FrozenSet[str], b: FrozenSet[str]) -> float:
    """How much of the smaller word set the other holds: 1.0 when one text's words are all in the other."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def near_duplicate_filter(texts: Mapping[str, str], threshold: float = NEAR_DUPLICATE_THRESHOLD,
                          queries: Optional[Mapping[str, str]] = None) -> Callable[[str, str, Sequence[str]], bool]:
    """``is_near_duplicate(qid, candidate, positives)`` over documents' texts (each word set computed once).

    A candidate is a near duplicate of a positive when the smaller of their word sets is at least ``threshold``
    contained in the other and, when ``queries`` are given, it holds every word of query ``qid`` that the
    positive holds (a sibling missing the query's distinguishing word stays a negative).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    cache: Dict[str, FrozenSet[str]] = {}

    def words(docid: str) -> FrozenSet[str]:
        if docid not in cache:
            cache[docid] = word_set(texts.get(docid, ""))
        return cache[docid]

    def is_near_duplicate(qid: str, candidate: str, positives: Sequence[str]) -> bool:
        query = word_set(queries.get(qid, "")) if queries is not None else frozenset()
        c = words(candidate)
        return any(containment(c, words(p)) >= threshold and (query & words(p)) <= c for p in positives)

    return is_near_duplicate


def mine_negatives(run: Run, qrels: Qrels, depth: int = 200, num: int = 30, skip_top: int = 0,
                   sample: str = "random", seed: int = 42,
                   exclude: Optional[Callable[[str, str, Sequence[str]], bool]] = None
                   ) -> Dict[str, Dict[str, List[str]]]:
    """``{qid: {"positives": [...], "negatives": [...]}}`` for every run query that has a positive.

    ``exclude(qid, candidate, positives)`` (e.g. :func:`near_duplicate_filter`) removes candidates before
    sampling.
    """
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
        if exclude is not None:
            candidates = [d for d in candidates if not exclude(qid, d, positives)]
        if sample == "top" or len(candidates) <= num:
            negatives = candidates[:num]
        else:
            rng = random.Random(f"{seed}:{qid}")
            picked = sorted(rng.sample(range(len(candidates)), num))  # keep run order
            negatives = [candidates[i] for i in picked]
        mined[qid] = {"positives": positives, "negatives": negatives}
    return mined


def corpus_texts(path: str, docids: set) -> Dict[str, str]:
    """Title + text of the documents named, from a corpus file, BEIR folder or collection name."""
    from .data.collections import resolve_corpus
    from .data.documents import load_corpus_subset

    return {d: doc.contents for d, doc in load_corpus_subset(resolve_corpus(path), docids).items()}


def write_negatives(mined: Dict[str, Dict[str, List[str]]], output: str, overwrite: bool = False) -> None:
    """JSONL, one query a line; gzipped when the name ends in ``.gz``."""
    lines = "".join(json.dumps({"query_id": qid, **entry}) + "\n" for qid, entry in mined.items())
    with atomic_write(output, "wb", overwrite=overwrite) as f:
        data = lines.encode("utf-8")
        f.write(gzip.compress(data, mtime=0) if str(output).endswith(".gz") else data)


def summary(mined: Dict[str, Dict[str, List[str]]], num: int, n_run: int) -> str:
    short = sum(1 for e in mined.values() if len(e["negatives"]) < num)
    return (f"{len(mined)} queries ({n_run - len(mined)} without a positive skipped), "
            f"{sum(len(e['negatives']) for e in mined.values())} negatives; {short} queries have fewer than {num}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.mine_negatives", __doc__)
    parser.add_argument("--run", required=True, help="TREC or MS MARCO run file over the training queries")
    parser.add_argument("--qrels", required=True, help="training qrels (BEIR TSV or TREC); rel > 0 = positive")
    cli.add_output(parser, help="JSONL to write (.jsonl.gz: gzipped)")
    parser.add_argument("--depth", type=cli.positive_int, default=200, help="only ranks up to this are candidates")
    parser.add_argument("--num", type=cli.positive_int, default=30, help="negatives kept per query")
    parser.add_argument("--skip-top", type=cli.non_negative_int, default=0,
                        help="ignore this many top-ranked documents")
    parser.add_argument("--sample", choices=["random", "top"], default="random",
                        help="random: sample among the candidates; top: take the best ranked")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--exclude-near-duplicates", action="store_true",
                        help="drop candidates whose text nearly repeats a positive's (needs --corpus)")
    parser.add_argument("--near-duplicate-threshold", type=cli.finite_float, default=NEAR_DUPLICATE_THRESHOLD,
                        help="word-set containment at which two texts are near duplicates (default: 0.8)")
    parser.add_argument("--corpus", help="the run's corpus (file, BEIR folder or collection name), for "
                                         "--exclude-near-duplicates")
    parser.add_argument("--topics", help="the run's queries (topics file or BEIR queries.jsonl): near duplicates "
                                         "must also hold every query word the positive holds")
    args = parser.parse_args(argv)

    check_output_path(args.output, args.overwrite)
    if "test" in Path(args.qrels).name.lower():
        raise UserError(f"{args.qrels}: refusing to mine training negatives from test judgments")
    if args.exclude_near_duplicates and not args.corpus:
        parser.error("--exclude-near-duplicates needs --corpus (the documents' texts)")
    if not 0 < args.near_duplicate_threshold <= 1:
        parser.error(f"argument --near-duplicate-threshold: must be in (0, 1], got {args.near_duplicate_threshold}")
    run, qrels = load_run(args.run), load_qrels(args.qrels)
    exclude = None
    if args.exclude_near_duplicates:
        wanted = {d for hits in run.values() for d, _ in hits[:args.depth]} | \
                 {d for docs in qrels.values() for d in docs}
        queries = None
        if args.topics:
            from .data.collections import open_topics
            queries = open_topics(args.topics)
        exclude = near_duplicate_filter(corpus_texts(args.corpus, wanted), args.near_duplicate_threshold, queries)
    mined = mine_negatives(run, qrels, args.depth, args.num, args.skip_top, args.sample, args.seed, exclude)
    if not mined:
        raise UserError(f"no query of {args.run} has a positive in {args.qrels}; are they from the same "
                        f"collection and split?")
    write_negatives(mined, args.output, args.overwrite)
    print(f"wrote {args.output}: {summary(mined, args.num, len(run))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
