"""Convert a BEIR corpus to Pyserini's JsonCollection: ``python -m pyserini_llama.convert CORPUS OUTPUT``.

Each BEIR line ``{"_id", "title", "text"}`` becomes ``{"id", "contents": "title text"}``, the "flat" layout of
Pyserini's BEIR indexes, ready for ``python -m pyserini.index.lucene --collection JsonCollection``.
"""
from __future__ import annotations

from typing import Optional, Sequence

from . import cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.convert", __doc__)
    parser.add_argument("corpus", help="BEIR corpus.jsonl (optionally .gz), BEIR folder or collection name")
    parser.add_argument("output", help="JsonCollection .jsonl file to write")
    cli.add_overwrite(parser)
    args = parser.parse_args(argv)
    from .data.atomic import check_output_path
    from .data.collections import resolve_corpus
    from .lucene import convert_to_jsoncollection

    corpus = resolve_corpus(args.corpus)
    check_output_path(args.output, args.overwrite)
    n = convert_to_jsoncollection(corpus, args.output, overwrite=args.overwrite)
    print(f"{n} documents -> {args.output}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
