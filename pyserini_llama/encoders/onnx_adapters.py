"""RepLLaMA/LLaRA on onnxruntime behind Pyserini's encoder interfaces (registered as ``repllama-onnx``).

With the Pyserini hook installed, the unmodified CLIs run the ONNX graph when asked for with
``--encoder-class repllama-onnx``; ``--encoder`` is an export folder (``python -m pyserini_llama.encoders.onnx
--output DIR``) or any checkpoint name or folder, whose export is then made once and cached::

    python -m pyserini.encode input --corpus corpus.jsonl --fields title text \\
        output --embeddings indexes/cranfield-onnx --to-faiss \\
        encoder --encoder repllama-smollm2 --encoder-class repllama-onnx --fields title text --max-length 196
    python -m pyserini.search.faiss --index indexes/cranfield-onnx --topics queries.tsv \\
        --encoder repllama-smollm2 --encoder-class repllama-onnx --output run.trec

Tokens, pooling and normalisation are the checkpoint's (its ``pyserini_llama.json``), as with the torch classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from pyserini.encode import DocumentEncoder, QueryEncoder

from ..errors import UserError
from .onnx import OnnxEncoder
from .registry import register_when_ready


def open_onnx_encoder(name_or_folder: str, device: str = "cpu", tokenizer_name: Optional[str] = None,
                      **config_changes) -> OnnxEncoder:
    """An export folder as it is, or a checkpoint's cached export (at its default CPU precision)."""
    from ..onnxrt.cache import MODEL_NAME
    from .pyserini_adapters import pyserini_device

    if tokenizer_name and tokenizer_name != name_or_folder:
        raise UserError("an ONNX export carries its checkpoint's tokenizer; drop --tokenizer")
    device = pyserini_device(device)
    if (Path(name_or_folder) / MODEL_NAME).is_file():
        encoder = OnnxEncoder(name_or_folder, device=device)
    else:
        encoder = OnnxEncoder.from_checkpoint(name_or_folder, device=device)
    changes = {k: v for k, v in config_changes.items() if v is not None}
    return encoder.with_config(**changes) if changes else encoder


class RepLlamaOnnxQueryEncoder(QueryEncoder):
    """Pyserini query encoder running the ONNX graph; ``prefix`` replaces the checkpoint's query prefix.

    Example::

        enc = RepLlamaOnnxQueryEncoder("repllama-smollm2")         # or an export folder
        vector = enc.encode("what is a lobster roll")
    """

    def __init__(self, encoder_dir: Optional[str] = None, tokenizer_name: Optional[str] = None,
                 device: str = "cpu", prefix: Optional[str] = None, fp16: bool = False,
                 encoded_query_dir: Optional[str] = None, **kwargs):
        super().__init__(encoded_query_dir)
        if not encoder_dir:
            raise UserError("RepLlamaOnnxQueryEncoder needs encoder_dir: an export folder or a checkpoint")
        self.encoder = open_onnx_encoder(encoder_dir, device, tokenizer_name, query_prefix=prefix)
        self.has_model = True

    def encode(self, query: str, **kwargs) -> np.ndarray:
        return self.encoder.encode_queries([query])[0]

    def encode_batch(self, queries: Sequence[str]) -> np.ndarray:
        """Used by Pyserini's ``batch_search``: one length-sorted pass over all queries."""
        return self.encoder.encode_queries(list(queries))


class RepLlamaOnnxDocumentEncoder(DocumentEncoder):
    """Pyserini document encoder running the ONNX graph, as ``python -m pyserini.encode`` calls it.

    ``encode(texts, titles=None, max_length=...)`` formats the checkpoint's passages and returns ``(n, d)``
    float32; Pyserini's ``--max-length`` is the passage length in tokens (special tokens included).

    Example::

        enc = RepLlamaOnnxDocumentEncoder("repllama-smollm2")
        vectors = enc.encode(["A lobster roll is ..."], titles=["Lobster roll"], max_length=196)
    """

    def __init__(self, model_name: str, device: str = "cpu", tokenizer_name: Optional[str] = None,
                 prefix: Optional[str] = None, **kwargs):
        self.encoder = open_onnx_encoder(model_name, device, tokenizer_name, passage_prefix=prefix)

    def encode(self, texts: List[str], titles: Optional[List[str]] = None, max_length: Optional[int] = None,
               **kwargs) -> np.ndarray:
        titles = titles if titles is not None else [""] * len(texts)
        if len(titles) != len(texts):
            raise UserError(f"{len(titles)} titles for {len(texts)} texts")
        return self.encoder.encode_passages(list(zip(titles, texts)), max_length=max_length)


# Last, once the classes above exist: put them into Pyserini's encoder maps, whatever the import order.
register_when_ready(__name__)
