"""Exact dense search over a Pyserini faiss index folder, with or without faiss.

On a GPU (or wherever faiss is missing) the index matrix is loaded onto the device in row chunks and searched
with a matmul + top-k per chunk, merged across chunks; ``fp16=True`` halves the memory it takes (scores then
carry fp16 rounding). On a CPU with faiss installed, faiss searches the same file (and also reads HNSW/PQ
indexes made by ``python -m pyserini.index.faiss``).

Example::

    searcher = DenseSearcher("indexes/scifact-repllama", RepLlamaEncoder.from_checkpoint("repllama"), "cuda")
    run = searcher.search({"q1": "what causes scurvy"}, k=1000)       # {"q1": [(docid, score), ...]}
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..data.trec import Run
from ..errors import DataError, UserError
from .faiss_format import FOURCC, read_docids, read_flat_index

PathLike = Union[str, os.PathLike]
ROWS_PER_CHUNK = 1 << 20  # 1M rows x 4096 dims x 2 bytes = 8 GiB per chunk at most in fp16
QUERIES_PER_STEP = 1024


class DenseSearcher:
    """Top-k inner-product search of encoded queries against an index folder (``index`` + ``docid``).

    ``query_encoder`` is a :class:`~pyserini_llama.encoders.repllama.RepLlamaEncoder` (queries are encoded in
    length-sorted batches) or any object with Pyserini's ``encode(query) -> vector``; it may be ``None`` when
    only :meth:`search_embeddings` is used. ``backend``: ``auto`` (faiss on CPU when installed, else torch),
    ``torch`` or ``faiss``.
    """

    def __init__(self, index_dir: PathLike, query_encoder=None, device: str = "cpu", fp16: bool = False,
                 backend: str = "auto", rows_per_chunk: int = ROWS_PER_CHUNK):
        self.index_dir = Path(index_dir)
        if not self.index_dir.is_dir():
            raise UserError(f"{self.index_dir}: no such index folder")
        self.query_encoder = query_encoder
        self.device, self.fp16 = str(device), fp16
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
            self._chunks = self._load_chunks(flat.vectors, rows_per_chunk)
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
        with open(self.index_dir / "index", "rb") as f:
            flat = f.read(4) in FOURCC.values()
        if backend == "faiss" or (backend == "auto" and (not flat or
                                                         (self.device == "cpu" and not self.fp16))):
            if not has_faiss:
                if backend == "auto" and flat:
                    return "torch"
                raise UserError(f"{self.index_dir}/index: this index needs faiss (pip install faiss-cpu)")
            return "faiss"
        return "torch"

    def _load_chunks(self, vectors: np.ndarray, rows_per_chunk: int):
        import torch

        dtype = torch.float16 if self.fp16 else torch.float32
        return [torch.from_numpy(np.array(vectors[s:s + rows_per_chunk], dtype=np.float32)).to(self.device, dtype)
                for s in range(0, len(vectors), rows_per_chunk)]

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
        import torch

        out_s, out_i = [], []
        with torch.inference_mode():
            for start in range(0, len(q_emb), QUERIES_PER_STEP):
                q = torch.from_numpy(q_emb[start:start + QUERIES_PER_STEP]).to(self.device, self._chunks[0].dtype)
                best_s, best_i = self._topk(q, k)
                out_s.append(best_s.float().cpu().numpy())
                out_i.append(best_i.cpu().numpy())
        return np.concatenate(out_s), np.concatenate(out_i)

    def _topk(self, q, k: int):
        import torch

        best_s: Optional[torch.Tensor] = None
        best_i: Optional[torch.Tensor] = None
        offset = 0
        for chunk in self._chunks:
            s, i = torch.topk(q @ chunk.T, min(k, len(chunk)), dim=1)
            i = i + offset
            offset += len(chunk)
            if best_s is not None:  # keep the running best k across chunks
                merged = torch.cat([best_s, s], 1)
                s, pick = torch.topk(merged, min(k, merged.shape[1]), dim=1)
                i = torch.gather(torch.cat([best_i, i], 1), 1, pick)
            best_s, best_i = s, i
        return best_s, best_i
