"""LLaRA encoders in Pyserini's encoder interfaces (registered as ``llara`` by ``pyserini_llama_hook``).

With the hook installed, the unmodified Pyserini CLIs pick these classes for any ``--encoder`` whose name
contains ``llara`` (or with ``--encoder-class llara``)::

    python -m pyserini.encode input --corpus corpus.jsonl --fields title text \\
        output --embeddings emb --to-faiss \\
        encoder --encoder BAAI/LLARA-passage --encoder-class llara --fields title text --max-length 512
    python -m pyserini.search.faiss --index emb --topics queries.tsv --encoder BAAI/LLARA-passage \\
        --encoder-class llara --output run.txt

Prompts, pooling and padding come from the checkpoint's ``pyserini_llama.json`` (see
:mod:`pyserini_llama.encoders.llara`); Pyserini's own ``--pooling``/``--l2-norm`` options do not apply.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from pyserini.encode import DocumentEncoder, QueryEncoder

from .llara import LlaraEncoder
from .registry import register_when_ready


def _load(name: str, device: str, fp16: bool) -> LlaraEncoder:
    from .pyserini_adapters import pyserini_device

    return LlaraEncoder.from_checkpoint(name, device=pyserini_device(device), dtype="float16" if fp16 else None)


class LlaraQueryEncoder(QueryEncoder):
    """Pyserini query encoder for LLaRA checkpoints (``BAAI/LLARA-passage``, the name ``llara``, or a folder).

    Example::

        encoder = LlaraQueryEncoder("llara", device="cuda:0")
        vector = encoder.encode("what is a llama")            # (hidden,) float32, unit norm
    """

    def __init__(self, encoder_dir: Optional[str] = None, tokenizer_name: Optional[str] = None,
                 device: str = "cpu", prefix: Optional[str] = None, fp16: bool = False,
                 encoded_query_dir: Optional[str] = None, max_length: Optional[int] = None, **kwargs):
        super().__init__(encoded_query_dir)
        self.max_length = max_length
        self.encoder: Optional[LlaraEncoder] = None
        if encoder_dir:
            if tokenizer_name and tokenizer_name != encoder_dir:
                raise ValueError("LLaRA checkpoints carry their own tokenizer (with the added <sN> tokens); "
                                 "drop --tokenizer")
            encoder = _load(encoder_dir, device, fp16)
            self.encoder = encoder.with_config(query_prefix=prefix) if prefix is not None else encoder
            self.has_model = True
        if not (self.has_model or self.has_encoded_query):
            raise ValueError("give a LLaRA checkpoint (encoder_dir) or pre-encoded queries")

    def encode(self, query: str, **kwargs) -> np.ndarray:
        if not self.has_model:
            return super().encode(query)
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: Sequence[str]) -> np.ndarray:
        """All queries at once (FaissSearcher.batch_search uses this when present)."""
        if not self.has_model:
            return np.stack([super(LlaraQueryEncoder, self).encode(q) for q in queries])
        return self.encoder.encode_queries(list(queries), self.max_length)


class LlaraDocumentEncoder(DocumentEncoder):
    """Pyserini document encoder for LLaRA checkpoints: ``encode(texts, titles)`` -> ``(n, hidden)`` float32.

    Example::

        encoder = LlaraDocumentEncoder("llara", device="cuda:0")
        vectors = encoder.encode(["The llama is a camelid."], titles=["Llama"], max_length=512)
    """

    def __init__(self, model_name: str, tokenizer_name: Optional[str] = None, device: str = "cpu",
                 fp16: bool = False, **kwargs):
        self.encoder = _load(model_name, device, fp16)
        self._warned: set = set()

    def encode(self, texts: List[str], titles: Optional[List[str]] = None, max_length: Optional[int] = None,
               **kwargs) -> np.ndarray:
        from .pyserini_adapters import passage_length, pyserini_docs

        return self.encoder.encode_passages(pyserini_docs(texts, titles),
                                            passage_length(self.encoder, max_length, self._warned))



# Last, once the classes above exist: put them into Pyserini's encoder maps (the hook alone cannot when this
# module is imported before pyserini.encode, since importing pyserini.encode is what triggers the hook).
register_when_ready(__name__)
