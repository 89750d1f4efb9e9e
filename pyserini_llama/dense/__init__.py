"""Dense indexes in Pyserini's faiss folder format (``index`` + ``docid``), built and searched with or without
faiss: :func:`build_index` (sharded, resumable, multi-GPU) and :class:`DenseSearcher` (exact top-k)."""
from .faiss_format import FlatIndex, FlatIndexWriter, read_docids, read_flat_index, write_docids, write_flat_index
from .index import build_index, read_index_info
from .search import DenseSearcher

__all__ = ["FlatIndex", "FlatIndexWriter", "read_docids", "read_flat_index", "write_docids", "write_flat_index",
           "build_index", "read_index_info", "DenseSearcher"]
