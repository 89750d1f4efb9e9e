"""Read and write faiss exhaustive index files with numpy alone, byte-compatible with ``faiss.write_index``.

Pyserini's dense index folder holds ``index`` (a serialized faiss index) and ``docid`` (one id per line, in row
order). Two exhaustive (exact) index types are a fixed header plus a raw matrix, so machines without faiss (GPU
boxes where faiss-gpu will not load) can build indexes that Pyserini reads and search them exactly, and big
indexes are memory-mapped instead of copied into RAM:

* ``IndexFlatIP`` / ``IndexFlatL2``: float32 rows (4 bytes per dimension);
* ``IndexScalarQuantizer`` with ``QT_fp16``: IEEE float16 rows, half the size (MS MARCO passage at 4096
  dimensions: 72 GB instead of 144). faiss (hence ``FaissSearcher``) decodes the rows to float32 and scores
  them against float32 queries; so does :mod:`.search`.

Other index types (HNSW, PQ, IVF, made by ``pyserini.index.faiss``) need faiss itself.

Layouts, little-endian (the common part is faiss's ``write_index_header``)::

    common:  fourcc[4] | d:int32 | ntotal:int64 | 2**20:int64 | 2**20:int64 | is_trained:uint8 | metric:int32
    IxFI/IxF2 (flat):  common | n_floats:uint64 | float32[ntotal * d]
    IxSQ (fp16):       common | qtype=4:int32 | rangestat=0:int32 | rangestat_arg=0:float32 | d:uint64
                       | code_size=2d:uint64 | n_trained=0:uint64 | n_code_bytes:uint64 | float16[ntotal * d]

Example::

    write_flat_index("idx/index", vectors)                    # then faiss.read_index("idx/index") works
    write_flat_index("idx16/index", vectors, dtype="float16")  # an IndexScalarQuantizer(QT_fp16) file
    index = read_flat_index("idx/index")                      # index.vectors is a read-only memmap
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
SQ_FOURCC = b"IxSQ"
METRIC_CODE = {"ip": 0, "l2": 1}
QT_FP16 = 4  # faiss ScalarQuantizer::QT_fp16
DTYPES = {"float32": "<f4", "float16": "<f2"}
_COMMON = struct.Struct("<4siqqqBi")  # fourcc, d, ntotal, 2 dummies, is_trained, metric
_FLAT_TAIL = struct.Struct("<Q")  # n_floats
_SQ_TAIL = struct.Struct("<iifQQQQ")  # qtype, rangestat, rangestat_arg, d, code_size, n_trained, n_code_bytes
_DUMMY = 1 << 20  # faiss writes this constant twice, in place of fields it dropped long ago
HEADER_SIZE = _COMMON.size + _FLAT_TAIL.size
SQ_HEADER_SIZE = _COMMON.size + _SQ_TAIL.size


@dataclass
class FlatIndex:
    vectors: np.ndarray  # (ntotal, d) float32 or float16, memory-mapped when read from disk
    metric: str  # "ip" or "l2"

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def dtype(self) -> str:
        return "float16" if self.vectors.dtype == np.float16 else "float32"

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def _header(d: int, ntotal: int, metric: str, dtype: str = "float32") -> bytes:
    if dtype == "float16":
        return (_COMMON.pack(SQ_FOURCC, d, ntotal, _DUMMY, _DUMMY, 1, METRIC_CODE[metric])
                + _SQ_TAIL.pack(QT_FP16, 0, 0.0, d, 2 * d, 0, 2 * d * ntotal))
    return _COMMON.pack(FOURCC[metric], d, ntotal, _DUMMY, _DUMMY, 1, METRIC_CODE[metric]) + \
        _FLAT_TAIL.pack(ntotal * d)


class FlatIndexWriter:
    """Append rows to a flat (float32) or fp16 scalar-quantiser index file that only appears under its final
    name once closed. float16 rows are rounded exactly as faiss's fp16 encoder rounds them (:func:`encode_fp16`).

    Example::

        with FlatIndexWriter("idx/index", dimension=4096, dtype="float16") as w:
            for shard in shards:
                w.add(shard)
    """

    def __init__(self, path: PathLike, dimension: int, metric: str = "ip", overwrite: bool = True,
                 dtype: str = "float32"):
        if metric not in FOURCC:
            raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        self.path, self.dimension, self.metric, self.overwrite = Path(path), int(dimension), metric, overwrite
        self.dtype = dtype
        self.ntotal = 0
        self._ctx = None
        self._file: Optional[IO[bytes]] = None

    def __enter__(self) -> "FlatIndexWriter":
        self._ctx = atomic_write(self.path, "wb", overwrite=self.overwrite)
        self._file = self._ctx.__enter__()
        self._file.write(_header(self.dimension, 0, self.metric, self.dtype))
        return self

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of shape (n, {self.dimension}), got {vectors.shape}")
        if self.dtype == "float16":
            rows = encode_fp16(vectors)
            if ((rows & 0x7C00) == 0x7C00).any():  # the all-ones exponent: inf or nan
                bad = int(np.flatnonzero(((rows & 0x7C00) == 0x7C00).any(axis=1))[0])
                raise ValueError(f"row {self.ntotal + bad} does not fit float16 (|value| >= 65520 or not finite)")
        else:
            rows = np.ascontiguousarray(vectors, dtype="<f4")
        self._file.write(rows.tobytes())
        self.ntotal += vectors.shape[0]

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._file.seek(0)  # the header holds the final count: write it once the rows are known
            self._file.write(_header(self.dimension, self.ntotal, self.metric, self.dtype))
            self._file.seek(0, os.SEEK_END)
        return self._ctx.__exit__(exc_type, exc, tb)


def encode_fp16(x: np.ndarray) -> np.ndarray:
    """float16 bit patterns (uint16) of ``x`` exactly as faiss's fp16 encoder makes them (the generic one:
    ties round away from zero, where numpy rounds them to even), so our files equal faiss's byte for byte."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4")
    sign = bits & np.uint32(0x80000000)
    magnitude = bits ^ sign
    # drop the bits below the rounding bit, rebias the exponent by a float multiply (which also makes the
    # subnormals), add half an fp16 ulp and keep the top bits; saturates to infinity
    scaled = (magnitude & np.uint32(0xFFFFF000)).view("<f4") * np.float32(2.0 ** -112)
    scaled = np.minimum(scaled, np.array([(31 << 23) - 0x1000], dtype="<u4").view("<f4")[0])
    out = (scaled.view("<u4") + np.uint32(0x1000)) >> np.uint32(13)
    infinity = np.uint32(255 << 23)
    out = np.where(magnitude > infinity, np.uint32(0x7E00), np.where(magnitude == infinity, np.uint32(0x7C00), out))
    return (out | (sign >> np.uint32(16))).astype("<u2")


def write_flat_index(path: PathLike, vectors: np.ndarray, metric: str = "ip", overwrite: bool = True,
                     dtype: str = "float32") -> None:
    vectors = np.asarray(vectors)
    with FlatIndexWriter(path, vectors.shape[1], metric, overwrite, dtype) as writer:
        writer.add(vectors)


def readable_without_faiss(path: PathLike) -> bool:
    """Whether :func:`read_flat_index` can read the index file (a flat or an fp16 scalar-quantiser index)."""
    with open(path, "rb") as f:
        head = f.read(SQ_HEADER_SIZE)
    if head[:4] in FOURCC.values():
        return True
    return head[:4] == SQ_FOURCC and len(head) == SQ_HEADER_SIZE and \
        _SQ_TAIL.unpack_from(head, _COMMON.size)[0] == QT_FP16


def read_flat_index(path: PathLike, mmap: bool = True) -> FlatIndex:
    """Read a faiss ``IndexFlatIP``/``IndexFlatL2`` or fp16 ``IndexScalarQuantizer`` file; other index types
    raise a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such index file")
    with open(path, "rb") as f:
        head = f.read(SQ_HEADER_SIZE)
    fourcc = head[:4]
    if fourcc not in FOURCC.values() and fourcc != SQ_FOURCC:
        raise UserError(f"{path}: faiss index type {fourcc.decode('latin-1')!r} is not a flat index; "
                        f"searching it needs faiss (pip install faiss-cpu)")
    size = HEADER_SIZE if fourcc != SQ_FOURCC else SQ_HEADER_SIZE
    if len(head) < size:
        raise DataError(path, "truncated faiss index header")
    _, d, ntotal, _, _, _, metric_code = _COMMON.unpack_from(head)
    metric = {v: k for k, v in METRIC_CODE.items()}.get(metric_code)
    if fourcc == SQ_FOURCC:
        qtype, _, _, sq_d, code_size, n_trained, n_bytes = _SQ_TAIL.unpack_from(head, _COMMON.size)
        if qtype != QT_FP16:
            raise UserError(f"{path}: a scalar-quantizer index of type {qtype}, not fp16 ({QT_FP16}); searching "
                            f"it needs faiss (pip install faiss-cpu)")
        dtype, count = "<f2", n_bytes // 2
        consistent = sq_d == d and code_size == 2 * d and n_trained == 0 and n_bytes == 2 * d * ntotal
    else:
        dtype, (count,) = "<f4", _FLAT_TAIL.unpack_from(head, _COMMON.size)
        consistent = count == ntotal * d
    if metric is None or not consistent or d <= 0 or ntotal < 0:
        raise DataError(path, f"inconsistent index header (d={d}, ntotal={ntotal}, values={count})")
    expected = size + np.dtype(dtype).itemsize * count
    if path.stat().st_size != expected:
        raise DataError(path, f"file has {path.stat().st_size} bytes, the header promises {expected}; "
                              f"the index is truncated or corrupt")
    if ntotal == 0:
        vectors = np.zeros((0, d), dtype=dtype)  # numpy cannot memory-map zero bytes
    elif mmap:
        vectors = np.memmap(path, dtype=dtype, mode="r", offset=size, shape=(ntotal, d))
    else:
        vectors = np.fromfile(path, dtype=dtype, offset=size, count=count).reshape(ntotal, d)
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
