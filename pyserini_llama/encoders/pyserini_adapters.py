"""RepLLaMA behind Pyserini's encoder interfaces (the only encoder module that imports pyserini).

The Pyserini hook registers these classes as ``repllama``, so the unmodified CLIs use them
(``--encoder-class repllama``, or any ``--encoder`` name containing ``repllama``; the onnxruntime classes,
``--encoder-class repllama-onnx``, are in :mod:`.onnx_adapters`)::

    python -m pyserini.encode input --corpus corpus.jsonl --fields title text \\
        output --embeddings indexes/scifact-repllama --to-faiss \\
        encoder --encoder repllama --fields title text --max-length 512 --dimension 4096 --device cuda:0
    python -m pyserini.search.faiss --index indexes/scifact-repllama --topics queries.tsv \\
        --encoder repllama --encoder-class repllama --output run.trec --device cuda:0

From Python::

    from pyserini.search.faiss import FaissSearcher
    searcher = FaissSearcher("indexes/scifact-repllama", RepLlamaQueryEncoder("repllama", device="cuda:0"))
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

import numpy as np
from pyserini.encode import DocumentEncoder, QueryEncoder

from ..errors import EXIT_USER_ERROR, UserError
from .repllama import RepLlamaEncoder
from .registry import register_when_ready


def report_user_errors_in_pyserini_cli() -> None:
    """Under ``python -m pyserini.*``, show our UserErrors as our own CLIs do: one line, exit status 2, and keep
    the libraries our encoders start as quiet as our own CLIs keep them (``PYSERINI_LLAMA_VERBOSE=1``: not).

    Pyserini's ``__main__`` modules do not know our errors, so a checkpoint folder without its config would
    otherwise end in a traceback. Only Pyserini's command-line entry points are affected, never a library user.
    """
    argv = list(getattr(sys, "orig_argv", []))  # sys.argv[0] is still "-m" while the package imports
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if module.split(".")[0] != "pyserini":
        return
    from ..cli import quiet_third_parties

    quiet_third_parties()
    previous = sys.excepthook

    def excepthook(kind, value, traceback):
        if not issubclass(kind, UserError):
            return previous(kind, value, traceback)
        print(f"error: {value}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_USER_ERROR)  # the interpreter is ending anyway; sys.exit cannot set a status from here

    sys.excepthook = excepthook


report_user_errors_in_pyserini_cli()


def pyserini_device(device: Optional[str]) -> str:
    """Pyserini's CLIs default to ``cuda:0``; on a machine without a GPU that default means the CPU (with a
    warning), as it must for ``python -m pyserini.encode`` to work there at all."""
    import warnings

    from ..runtime import cuda_available, resolve_device

    device = str(device or "cpu")
    if device.startswith("cuda") and not cuda_available():
        warnings.warn(f"device {device!r} requested but CUDA is not available; using cpu", stacklevel=3)
        return "cpu"
    return resolve_device(device)


def load_encoder(name_or_path: str, device: str = "cpu", fp16: bool = False, tokenizer_name: Optional[str] = None,
                 encoder_cls=RepLlamaEncoder, **config_changes) -> RepLlamaEncoder:
    """Load an encoder the way Pyserini's arguments describe it (``fp16``, a separate tokenizer, a prefix)."""
    encoder = encoder_cls.from_checkpoint(name_or_path, device=pyserini_device(device),
                                          dtype="float16" if fp16 else None)
    if tokenizer_name:
        from ..models.hub import resolve_model_path
        from ..models.load import load_tokenizer

        encoder.tokenizer = load_tokenizer(resolve_model_path(tokenizer_name), encoder.config.padding_side)
    changes = {k: v for k, v in config_changes.items() if v is not None}
    return encoder.with_config(**changes) if changes else encoder


class RepLlamaQueryEncoder(QueryEncoder):
    """Pyserini query encoder: ``encode(query) -> (d,)`` float32; batched by ``encode_batch``.

    Accepts Pyserini's constructor arguments; ``prefix`` replaces the checkpoint's query prefix, and
    ``encoded_query_dir`` (an ``embedding.pkl`` folder) serves queries encoded beforehand.

    Example::

        enc = RepLlamaQueryEncoder("repllama", device="cuda:0")
        vector = enc.encode("what is a lobster roll")
    """

    encoder_cls = RepLlamaEncoder  # subclasses (LLaRA) swap in their own encoder

    def __init__(self, encoder_dir: Optional[str] = None, tokenizer_name: Optional[str] = None,
                 device: str = "cpu", prefix: Optional[str] = None, fp16: bool = False,
                 encoded_query_dir: Optional[str] = None, **kwargs):
        super().__init__(encoded_query_dir)
        self.encoder: Optional[RepLlamaEncoder] = None
        if encoder_dir:
            self.encoder = load_encoder(encoder_dir, device, fp16, tokenizer_name, self.encoder_cls,
                                        query_prefix=prefix)
            self.has_model = True
        elif not self.has_encoded_query:
            raise UserError(f"{type(self).__name__} needs encoder_dir (a checkpoint) or encoded_query_dir")

    def encode(self, query: str, **kwargs) -> np.ndarray:
        if self.has_encoded_query and query in self.embedding:
            return np.asarray(self.embedding[query], dtype=np.float32)
        if self.encoder is None:
            raise UserError(f"query {query[:60]!r} is not among the pre-encoded queries and no model is loaded")
        return self.encoder.encode_queries([query])[0]

    def encode_batch(self, queries: Sequence[str]) -> np.ndarray:
        """Used by Pyserini's ``batch_search``: one length-sorted pass over all queries."""
        if self.encoder is None or self.has_encoded_query:
            return np.stack([self.encode(q) for q in queries])
        return self.encoder.encode_queries(list(queries))


def passage_length(encoder: RepLlamaEncoder, max_length: Optional[int], warned: set) -> Optional[int]:
    """Pyserini's ``--max-length`` (default 256) cuts the passages; say so once when the checkpoint's recipe
    differs (``repllama-beir`` is 512), since Pyserini cannot tell a default from a choice."""
    import warnings

    recipe = encoder.config.passage_max_length
    if max_length is not None and max_length != recipe and max_length not in warned:
        warned.add(max_length)
        warnings.warn(f"passages are cut at {max_length} tokens (Pyserini's --max-length, default 256), but "
                      f"{encoder.name_or_path}'s recipe is {recipe}; pass --max-length {recipe} to follow it",
                      stacklevel=3)
    return max_length


def pyserini_docs(texts: List[str], titles: Optional[List[str]]) -> list:
    """Documents as Pyserini's encode CLI hands them over: with ``--fields title text`` every document has a
    title (Pyserini turns an empty one into None: it is ``""`` again here, as in tevatron's corpora, where
    BEIR and MS MARCO documents always have a title field); without a title field, the text alone."""
    if titles is None:
        return [text or "" for text in texts]
    return [(title or "", text or "") for title, text in zip(titles, texts)]


class RepLlamaDocumentEncoder(DocumentEncoder):
    """Pyserini document encoder, as ``python -m pyserini.encode`` calls it.

    ``encode(texts, titles=None, max_length=...)`` formats ``passage: {title} {text}`` and returns
    ``(n, d)`` float32. Pyserini's ``--max-length`` (default 256) is the passage length in tokens, special tokens
    included; it overrides the checkpoint's (with a warning when they differ): the published BEIR runs use 512
    (``--encoder repllama-beir --max-length 512``).

    Example::

        enc = RepLlamaDocumentEncoder("repllama", device="cuda:0")
        vectors = enc.encode(["A lobster roll is ..."], titles=["Lobster roll"], max_length=512)
    """

    encoder_cls = RepLlamaEncoder

    def __init__(self, model_name: str, device: str = "cpu", tokenizer_name: Optional[str] = None,
                 prefix: Optional[str] = None, **kwargs):
        self.encoder = load_encoder(model_name, device, False, tokenizer_name, self.encoder_cls,
                                    passage_prefix=prefix)
        self._warned: set = set()

    def encode(self, texts: List[str], titles: Optional[List[str]] = None, max_length: Optional[int] = None,
               fp16: bool = False, **kwargs) -> np.ndarray:
        if fp16:
            self._use_fp16()
        if titles is not None and len(titles) != len(texts):
            raise UserError(f"{len(titles)} titles for {len(texts)} texts")
        docs = pyserini_docs(texts, titles)
        return self.encoder.encode_passages(docs, max_length=passage_length(self.encoder, max_length,
                                                                             self._warned))

    def _use_fp16(self) -> None:
        """Pyserini passes ``--fp16`` per batch; a float32 model on a GPU is cast once."""
        import torch

        model = self.encoder.model
        if str(self.encoder.device).startswith("cuda") and next(model.parameters()).dtype == torch.float32:
            model.half()


# The ONNX classes live in .onnx_adapters; a hook installed by an older version looks for the query class here.
from .onnx_adapters import RepLlamaOnnxQueryEncoder  # noqa: E402,F401  (re-exported)

# Last, once the classes above exist: put them into Pyserini's encoder maps (the hook alone cannot when this
# module is imported before pyserini.encode, since importing pyserini.encode is what triggers the hook).
register_when_ready(__name__)
