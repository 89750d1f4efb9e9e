"""Read and write faiss flat index files with numpy alone, byte-compatible with ``faiss.write_index``.

Pyserini's dense index folder holds ``index`` (a serialized faiss index) and ``docid`` (one id per line, in row
order). Flat indexes are a fixed header plus the raw float32 matrix, so machines without faiss (GPU boxes where
faiss-gpu will not load) can still build indexes that Pyserini reads and search them exactly, and big indexes
are memory-mapped instead of copied into RAM. Other index types (HNSW, PQ, made by ``pyserini.index.faiss``)
need faiss itself.

Layout of an ``IndexFlatIP`` (``IxFI``) / ``IndexFlatL2`` (``IxF2``) file, little-endian::

    fourcc[4] | d:int32 | ntotal:int64 | 2**20:int64 | 2**20:int64 | is_trained:uint8 | metric:int32
    | n_floats:uint64 | float32[ntotal * d]

Example::

    write_flat_index("idx/index", vectors)            # then faiss.read_index("idx/index") works
    index = read_flat_index("idx/index")              # index.vectors is a read-only memmap
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, List, Optional, Sequence, Union

import numpy as np

from ..data.atomic import atomic_write
from ..errors import DataError, UserError

PathLike = Union[str, os.PathLike]

FOURCC = {"ip": b"IxFI", "l2": b"IxF2"}
METRIC_CODE = {"ip": 0, "l2": 1}
_HEADER = struct.Struct("<4siqqqBiQ")  # fourcc, d, ntotal, 2 dummies, is_trained, metric, n_floats
_DUMMY = 1 << 20  # faiss writes this constant twice, in place of fields it dropped long ago
HEADER_SIZE = _HEADER.size


@dataclass
class FlatIndex:
    vectors: np.ndarray  # (ntotal, d) float32, memory-mapped when read from disk
    metric: str  # "ip" or "l2"

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def _header(d: int, ntotal: int, metric: str) -> bytes:
    return _HEADER.pack(FOURCC[metric], d, ntotal, _DUMMY, _DUMMY, 1, METRIC_CODE[metric], ntotal * d)


class FlatIndexWriter:
    """Append float32 rows to a flat index file that only appears under its final name once closed.

    Example::

        with FlatIndexWriter("idx/index", dimension=4096) as w:
            for shard in shards:
                w.add(shard)
    """

    def __init__(self, path: PathLike, dimension: int, metric: str = "ip", overwrite: bool = True):
        if metric not in FOURCC:
            raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
        self.path, self.dimension, self.metric, self.overwrite = Path(path), int(dimension), metric, overwrite
        self.ntotal = 0
        self._ctx = None
        self._file: Optional[IO[bytes]] = None

    def __enter__(self) -> "FlatIndexWriter":
        self._ctx = atomic_write(self.path, "wb", overwrite=self.overwrite)
        self._file = self._ctx.__enter__()
        self._file.write(_header(self.dimension, 0, self.metric))
        return self

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of shape (n, {self.dimension}), got {vectors.shape}")
        self._file.write(vectors.tobytes())
        self.ntotal += vectors.shape[0]

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._file.seek(0)  # the header holds the final count: write it once the rows are known
            self._file.write(_header(self.dimension, self.ntotal, self.metric))
            self._file.seek(0, os.SEEK_END)
        return self._ctx.__exit__(exc_type, exc, tb)


def write_flat_index(path: PathLike, vectors: np.ndarray, metric: str = "ip", overwrite: bool = True) -> None:
    vectors = np.asarray(vectors)
    with FlatIndexWriter(path, vectors.shape[1], metric, overwrite) as writer:
        writer.add(vectors)


def read_flat_index(path: PathLike, mmap: bool = True) -> FlatIndex:
    """Read a faiss ``IndexFlatIP``/``IndexFlatL2`` file; other index types raise a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such index file")
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
    fourcc = head[:4]
    if fourcc not in FOURCC.values():
        raise UserError(f"{path}: faiss index type {fourcc.decode('latin-1')!r} is not a flat index; "
                        f"searching it needs faiss (pip install faiss-cpu)")
    if len(head) < HEADER_SIZE:
        raise DataError(path, "truncated faiss index header")
    _, d, ntotal, _, _, _, metric_code, n_floats = _HEADER.unpack(head)
    metric = {v: k for k, v in METRIC_CODE.items()}.get(metric_code)
    if metric is None or n_floats != ntotal * d or d <= 0:
        raise DataError(path, f"inconsistent flat index header (d={d}, ntotal={ntotal}, floats={n_floats})")
    expected = HEADER_SIZE + 4 * n_floats
    if path.stat().st_size != expected:
        raise DataError(path, f"file has {path.stat().st_size} bytes, the header promises {expected}; "
                              f"the index is truncated or corrupt")
    if ntotal == 0:
        vectors = np.zeros((0, d), dtype="<f4")  # numpy cannot memory-map zero bytes
    elif mmap:
        vectors = np.memmap(path, dtype="<f4", mode="r", offset=HEADER_SIZE, shape=(ntotal, d))
    else:
        vectors = np.fromfile(path, dtype="<f4", offset=HEADER_SIZE, count=n_floats).reshape(ntotal, d)
    return FlatIndex(vectors, metric)


def write_docids(path: PathLike, docids: Sequence[str], overwrite: bool = True) -> None:
    with atomic_write(path, overwrite=overwrite) as f:
        f.writelines(f"{docid}\n" for docid in docids)


def read_docids(path: PathLike) -> List[str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no docid file (a Pyserini dense index folder holds 'index' and 'docid')")
    try:  # utf-8-sig: a byte-order mark is not part of the first id
        with open(path, encoding="utf-8-sig") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8 ({e.reason})") from None
