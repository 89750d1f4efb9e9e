"""Copy a Pyserini dense index folder into half the space: float32 flat -> faiss fp16 scalar quantiser.

Example::

    python -m pyserini_llama.dense.convert --index indexes/msmarco-repllama --output indexes/msmarco-repllama-fp16

The copy (``index`` + ``docid`` and, when present, ``index_info.json``) is what ``faiss.read_index`` and
Pyserini's ``FaissSearcher`` read as an ``IndexScalarQuantizer`` (``QT_fp16``, same metric), and what
``python -m pyserini_llama.search --index`` searches without faiss (``--index-memory host`` streams it).
Rows are converted in steps of ``--rows-per-step``, so memory stays small; the folder appears only complete.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional, Sequence

from .. import cli
from ..data.atomic import atomic_dir
from ..errors import UserError
from .faiss_format import FlatIndexWriter, read_flat_index

COPIED = ("docid", "index_info.json")


def convert_index(source: Path, output: Path, dtype: str = "float16", overwrite: bool = False,
                  rows_per_step: int = 1 << 16) -> int:
    """Write ``source``'s rows as ``dtype`` into a new index folder ``output``; returns the number of rows."""
    source, output = Path(source), Path(output)
    if not (source / "index").is_file() or not (source / "docid").is_file():
        raise UserError(f"{source}: not a dense index folder (it needs 'index' and 'docid')")
    flat = read_flat_index(source / "index")
    with atomic_dir(output, overwrite=overwrite) as tmp:
        with FlatIndexWriter(tmp / "index", flat.dimension, flat.metric, dtype=dtype) as writer:
            for start in range(0, len(flat), rows_per_step):
                try:
                    writer.add(flat.vectors[start:start + rows_per_step])
                except ValueError as e:  # a value beyond float16's range
                    raise UserError(f"{source / 'index'}: {e}; keep this index in float32") from None
        for name in COPIED:
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
    return len(flat)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.dense.convert", __doc__)
    parser.add_argument("--index", required=True, help="dense index folder to copy (index + docid)")
    parser.add_argument("--output", required=True, help="index folder to write")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                        help="row type of the copy (default float16: faiss IndexScalarQuantizer QT_fp16)")
    parser.add_argument("--rows-per-step", type=cli.positive_int, default=1 << 16)
    cli.add_overwrite(parser)
    args = parser.parse_args(argv)
    n = convert_index(Path(args.index), Path(args.output), args.dtype, args.overwrite, args.rows_per_step)
    print(f"wrote {args.output}: {n} rows in {args.dtype}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
