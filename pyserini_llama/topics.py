"""Write Pyserini-format topics (``qid<TAB>query``, one per line) from a BEIR folder, a queries file or a
collection name: the ``--topics`` file of ``python -m pyserini.search.faiss``, ``.hybrid`` and ``.lucene``.

Examples::

    python -m pyserini_llama.topics --collection cranfield --split test --output runs/cranfield.test.tsv
    python -m pyserini_llama.topics --topics ../shared/ir/beir-scifact --split test --output scifact.test.tsv
    python -m pyserini_llama.topics --topics queries.jsonl --output -          # to stdout

With ``--split``, only the queries judged in that split's qrels are written (BEIR keeps every split's queries in
one ``queries.jsonl``), in the order of the queries file. Tabs and line breaks inside a query become spaces
(the format has no quoting). A name ending in ``.gz`` is written gzipped; Pyserini reads both.
"""
from __future__ import annotations

import gzip
import io
import sys
from typing import Dict, Optional, Sequence

from . import cli
from .errors import UserError

BREAKS = str.maketrans({"\t": " ", "\n": " ", "\r": " ", "\x0b": " ", "\x0c": " "})


def build_parser():
    parser = cli.parser("python -m pyserini_llama.topics", __doc__)
    parser.add_argument("--topics", "--collection", dest="topics", required=True,
                        help="a BEIR folder, a queries file (BEIR queries.jsonl or qid<TAB>text TSV, optionally "
                             "gzipped) or a collection name")
    parser.add_argument("--split", help="only the queries judged in this split (a BEIR folder or collection)")
    parser.add_argument("--data-dir", help="where collections live (default: ../shared/ir when present)")
    cli.add_output(parser, help="topics file to write (.tsv, or .tsv.gz for gzip); '-' writes to stdout")
    return parser


def format_topics(queries: Dict[str, str]) -> str:
    """``qid<TAB>text`` lines; a tab or line break inside a query would split its line, so it becomes a space."""
    return "".join(f"{qid}\t{text.translate(BREAKS).strip()}\n" for qid, text in queries.items())


def integer_id_warning(queries: Dict[str, str]) -> Optional[str]:
    """Pyserini reads a ``.tsv`` whose ids are all integers with Anserini's integer reader (unless its path
    contains ``beir``), which turns ``007`` into ``7``: say so when that would change an id."""
    ids = list(queries)
    if all(q.isascii() and q.isdigit() for q in ids) and any(str(int(q)) != q for q in ids):
        changed = next(q for q in ids if str(int(q)) != q)
        return (f"query ids such as {changed!r} are integers with leading zeros: Pyserini reads them as "
                f"{int(changed)!r} unless the file name contains 'beir'; runs would then miss the qrels")
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.atomic import atomic_write, check_output_path
    from .data.collections import open_topics

    if args.output != "-":
        check_output_path(args.output, args.overwrite)
    queries = open_topics(args.topics, args.data_dir, args.split)
    if not queries:
        raise UserError(f"{args.topics}: no queries{f' judged in split {args.split!r}' if args.split else ''}")
    text = format_topics(queries)
    changed = sum(1 for t in queries.values() if t.translate(BREAKS) != t)
    warning = integer_id_warning(queries)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    if args.output.endswith(".gz"):
        with atomic_write(args.output, "wb", overwrite=args.overwrite) as raw:
            # mtime 0: the same topics give the same bytes
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, io.TextIOWrapper(gz, "utf-8") as f:
                f.write(text)
    else:
        with atomic_write(args.output, overwrite=args.overwrite) as f:
            f.write(text)
    split = f" (split {args.split})" if args.split else ""
    note = f"; {changed} with tabs or line breaks made spaces" if changed else ""
    print(f"wrote {len(queries)} queries of {args.topics}{split} to {args.output}{note}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
