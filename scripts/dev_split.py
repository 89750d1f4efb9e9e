"""Hold out part of a BEIR folder's train queries as a development split, for choices no test judgment may make.

Writes ``OUTPUT/`` as a BEIR folder beside the original: ``corpus.jsonl[.gz]`` and ``queries.jsonl[.gz]`` are
symbolic links to the original's, ``qrels/train-fit.tsv`` holds the judgments of the queries kept for training and
``qrels/train-dev.tsv`` those of the held-out ones. A query goes to dev when the first 8 hex digits of the
SHA-1 of its id, as an integer, fall below ``--dev-fraction`` of 2^32: a pure function of the id, so the split
is the same on every machine and does not depend on file order.

    python scripts/dev_split.py --collection ../shared/ir/beir-scifact --output runs/small/beir-scifact-dev
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyserini_llama import cli  # noqa: E402
from pyserini_llama.data.atomic import atomic_write  # noqa: E402
from pyserini_llama.data.beir import BeirFolder  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402


def is_dev(qid: str, fraction: float) -> bool:
    return int(hashlib.sha1(qid.encode()).hexdigest()[:8], 16) < fraction * 2**32


def main(argv=None) -> int:
    parser = cli.parser("python scripts/dev_split.py", __doc__)
    parser.add_argument("--collection", required=True, help="BEIR folder with qrels/train.tsv")
    parser.add_argument("--output", required=True, help="folder to write (a BEIR folder)")
    parser.add_argument("--split", default="train", help="the split to divide (default: train)")
    parser.add_argument("--dev-fraction", type=cli.finite_float, default=0.1)
    args = parser.parse_args(argv)
    source = Path(args.collection).resolve()
    qrels = source / "qrels" / f"{args.split}.tsv"
    if not qrels.is_file():
        raise UserError(f"{qrels}: no such qrels file")
    if "test" in args.split:
        raise UserError("refusing to split a test split: development queries must come from training data")
    out = Path(args.output)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    folder = BeirFolder(source)
    for target in (folder.corpus_path, folder.queries_path):  # corpus.jsonl or corpus.jsonl.gz, ...
        link = out / target.name
        if not link.exists():
            os.symlink(os.path.relpath(target, out), link)
    lines = qrels.read_text().splitlines()
    header = lines[0] if lines and lines[0].lower().startswith("query") else None
    body = lines[1:] if header else lines
    parts = {"train-fit": [], "train-dev": []}
    for line in body:
        if line.strip():
            parts["train-dev" if is_dev(line.split("\t", 1)[0], args.dev_fraction) else "train-fit"].append(line)
    for name, rows in parts.items():
        with atomic_write(out / "qrels" / f"{name}.tsv", "w", overwrite=True) as f:
            f.write("\n".join(([header] if header else []) + rows) + "\n")
    count = {name: len({r.split("\t", 1)[0] for r in rows}) for name, rows in parts.items()}
    print(f"{out}: {count['train-fit']} train-fit and {count['train-dev']} train-dev queries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
