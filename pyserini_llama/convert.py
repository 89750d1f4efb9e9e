"""Convert a BEIR corpus to Pyserini's JsonCollection: ``python -m pyserini_llama.convert CORPUS OUTPUT``.

Each BEIR line ``{"_id", "title", "text"}`` becomes ``{"id", "contents": "title text"}``, the "flat" layout of
Pyserini's BEIR indexes, ready for ``python -m pyserini.index.lucene --collection JsonCollection``.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from .bm25 import convert_to_jsoncollection
from .data.atomic import check_output_path
from .errors import run_cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_llama.convert", description=__doc__.splitlines()[0])
    parser.add_argument("corpus", help="BEIR corpus.jsonl (optionally .gz)")
    parser.add_argument("output", help="JsonCollection .jsonl file to write")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    check_output_path(args.output, args.overwrite)
    n = convert_to_jsoncollection(args.corpus, args.output, overwrite=True)
    print(f"{n} documents -> {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
