"""Exact dense search over a Pyserini faiss index folder, with or without faiss.

On a GPU (or wherever faiss is missing) the index is searched in row chunks with a matmul + top-k per chunk
(:mod:`.exact`): held on the device (``memory="device"``), streamed from host memory so that GPU memory stays
at two chunks whatever the index size (``memory="host"``), and/or sharded across several GPUs (``devices``);
all give the same hits. float16 rows (an fp16 scalar-quantiser index, or ``fp16=True`` for a float32 one)
take half the memory and are scored against float32 queries, as faiss scores them. On a CPU with faiss
installed, faiss searches the same file (and also reads HNSW/PQ indexes made by
``python -m pyserini.index.faiss``).

Example::

    searcher = DenseSearcher("indexes/scifact-repllama", RepLlamaEncoder.from_checkpoint("repllama"), "cuda")
    run = searcher.search({"q1": "what causes scurvy"}, k=1000)       # {"q1": [(docid, score), ...]}
    big = DenseSearcher("indexes/msmarco-fp16", encoder, "cuda", memory="host")     # 72 GB index, 24 GB GPU
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..data.trec import Run
from ..errors import DataError, UserError
from .exact import (DEFAULT_QUERIES_PER_STEP, DEFAULT_ROWS_PER_CHUNK, ResidentChunks, StreamedChunks, exact_search,
                    shard_bounds)
from .faiss_format import read_docids, read_flat_index, readable_without_faiss

PathLike = Union[str, os.PathLike]
ROWS_PER_CHUNK = DEFAULT_ROWS_PER_CHUNK
MEMORY = ("device", "host")


class DenseSearcher:
    """Top-k inner-product search of encoded queries against an index folder (``index`` + ``docid``).

    ``query_encoder`` is a :class:`~pyserini_llama.encoders.repllama.RepLlamaEncoder` (queries are encoded in
    length-sorted batches) or any object with Pyserini's ``encode(query) -> vector``; it may be ``None`` when
    only :meth:`search_embeddings` is used. ``backend``: ``auto`` (faiss on CPU when installed, else torch),
    ``torch`` or ``faiss``. With torch: ``memory`` ``device`` holds the index on the device(s), ``host`` streams
    it from host memory (peak device memory: two chunks of ``rows_per_chunk`` rows plus one block of
    ``queries_per_step`` queries' scores); ``devices`` (e.g. ``["cuda:0", "cuda:1"]``) shards it across GPUs.
    """

    def __init__(self, index_dir: PathLike, query_encoder=None, device: str = "cpu", fp16: bool = False,
                 backend: str = "auto", rows_per_chunk: int = ROWS_PER_CHUNK, memory: str = "device",
                 devices: Optional[List[str]] = None, queries_per_step: int = DEFAULT_QUERIES_PER_STEP):
        self.index_dir = Path(index_dir)
        if not self.index_dir.is_dir():
            raise UserError(f"{self.index_dir}: no such index folder")
        if memory not in MEMORY:
            raise UserError(f"unknown index memory {memory!r} (use device or host)")
        if rows_per_chunk <= 0 or queries_per_step <= 0:
            raise UserError("rows per chunk and queries per step must be positive")
        self.query_encoder = query_encoder
        self.device, self.fp16 = str(device), fp16
        self.queries_per_step = queries_per_step
        self.docids = read_docids(self.index_dir / "docid")
        self.backend = self._choose_backend(backend)
        if self.backend == "faiss":
            import faiss

            try:
                self._faiss = faiss.read_index(str(self.index_dir / "index"))
            except RuntimeError as e:  # faiss reports a truncated or corrupt file as a C++ exception
                lines = [line for line in str(e).splitlines() if line.strip()]
                raise DataError(self.index_dir / "index", f"faiss cannot read it; the index is truncated or "
                                                          f"corrupt ({lines[-1][:200] if lines else e})") from None
            self.dimension, ntotal = self._faiss.d, self._faiss.ntotal
        else:
            flat = read_flat_index(self.index_dir / "index")
            if flat.metric != "ip":
                raise UserError(f"{self.index_dir}/index: an L2 index; only inner-product indexes are searched")
            self.dimension, ntotal = flat.dimension, len(flat)
            self._sources = self._make_sources(flat.vectors, devices or [self.device], rows_per_chunk, memory)
        encoder_dimension = getattr(query_encoder, "dimension", None)
        if encoder_dimension is not None and encoder_dimension != self.dimension:
            raise UserError(f"{self.index_dir}: the index holds {self.dimension}-dimensional vectors but the query "
                            f"encoder makes {encoder_dimension}; search with the model that built the index")
        if ntotal != len(self.docids):
            raise UserError(f"{self.index_dir}: index has {ntotal} vectors but docid has {len(self.docids)} "
                            f"lines; the folder is inconsistent")

    def _choose_backend(self, backend: str) -> str:
        if backend not in ("auto", "torch", "faiss"):
            raise UserError(f"unknown search backend {backend!r} (use auto, torch or faiss)")
        has_faiss = importlib.util.find_spec("faiss") is not None
        flat = (self.index_dir / "index").is_file() and readable_without_faiss(self.index_dir / "index")
        if backend == "faiss" or (backend == "auto" and (not flat or
                                                         (self.device == "cpu" and not self.fp16))):
            if not has_faiss:
                if backend == "auto" and flat:
                    return "torch"
                raise UserError(f"{self.index_dir}/index: this index needs faiss (pip install faiss-cpu)")
            return "faiss"
        return "torch"

    def _make_sources(self, vectors: np.ndarray, devices: List[str], rows_per_chunk: int, memory: str):
        """One chunk source per device, each a contiguous run of whole chunks (the same grid for any split)."""
        import torch

        dtype = torch.float16 if self.fp16 else None  # None: the file's own (float32, or float16 rows)
        kind = ResidentChunks if memory == "device" else StreamedChunks
        return [kind(vectors, device, rows_per_chunk, first, last, dtype)
                for device, (first, last) in zip(devices, shard_bounds(len(vectors), rows_per_chunk, len(devices)))]

    def encode_queries(self, queries: List[str]) -> np.ndarray:
        if self.query_encoder is None:
            raise UserError("this searcher has no query encoder; pass one, or search embeddings")
        if hasattr(self.query_encoder, "encode_queries"):
            return self.query_encoder.encode_queries(queries)
        return np.stack([np.asarray(self.query_encoder.encode(q), dtype=np.float32).reshape(-1)
                         for q in queries])

    def search(self, queries: Dict[str, str], k: int = 1000) -> Run:
        """Encode ``queries`` (qid -> text) and return the top ``k`` documents per query, best first."""
        if k <= 0:
            raise UserError(f"--hits must be positive, got {k}")
        qids = list(queries)
        if not qids:
            return {}
        scores, indices = self.search_embeddings(self.encode_queries([queries[q] for q in qids]), k)
        return {qid: [(self.docids[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for qid, row_s, row_i in zip(qids, scores, indices)}

    def search_embeddings(self, q_emb: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Scores and row indices ``(n_queries, min(k, ntotal))`` of the best documents, best first."""
        q_emb = np.ascontiguousarray(np.asarray(q_emb, dtype=np.float32).reshape(-1, self.dimension))
        k = min(k, len(self.docids))
        if k == 0:  # an empty index
            return np.zeros((len(q_emb), 0), np.float32), np.zeros((len(q_emb), 0), np.int64)
        if self.backend == "faiss":
            scores, indices = self._faiss.search(q_emb, k)
            return scores, indices
        return exact_search(q_emb, self._sources, k, self.queries_per_step)
