"""RankLLaMA run by onnxruntime: the CPU path for reranking.

The graph (:mod:`pyserini_llama.onnxrt`) is the torch reranker's own ``score_batch`` (model + score head +
score position) traced from ``input_ids`` + ``attention_mask`` to one score per pair. Everything else is the
torch reranker's, inherited unchanged: the pair tokens (:mod:`.inputs`), the length-sorted batches under the
token budget, the merging of reranked and unscored hits. The export is made once per checkpoint and precision
and cached (:mod:`pyserini_llama.onnxrt.cache`).

Example::

    reranker = OnnxReranker.from_checkpoint("rankllama-smollm2")        # exported on first use
    scores = reranker.score("what is a lobster roll", [("", "A lobster roll is a sandwich ...")])
    reranked = reranker.rerank(queries, first_stage_run, corpus, hits=20)
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..batching import default_max_padding, map_batches
from ..errors import UserError
from ..progress import progress_bar
from .rankllama import RankLlamaReranker

PathLike = Union[str, os.PathLike]
CHECK_PAIRS = [("what is the boundary layer thickness", "The boundary layer thickens downstream " * 8),
               ("x", "Short text."), ("supersonic shock", "A normal shock forms ahead of a blunt body.")]


def export_builder(checkpoint: str, precision: str, trust_remote_code: bool = False):
    """``build(folder) -> record``: export ``checkpoint``'s ``score_batch`` with its tokenizer and config."""

    def build(folder: Path) -> Dict:
        from ..onnxrt.export import build_export
        from .inputs import format_pair

        torch_reranker = RankLlamaReranker.from_checkpoint(checkpoint, device="cpu", dtype="float32",
                                                           trust_remote_code=trust_remote_code)
        pairs = [format_pair(q, "", p, torch_reranker.config) for q, p in CHECK_PAIRS]
        rows = torch_reranker.encode_pairs([q for q, _ in pairs], [p for _, p in pairs])
        batches = [torch_reranker.collate(rows), torch_reranker.collate(rows[1:])]
        record = build_export(folder, torch_reranker.score_batch, torch_reranker.model, batches, "score", precision)
        torch_reranker.tokenizer.save_pretrained(str(folder))
        torch_reranker.config.save(folder)
        return dict(record, pad_token_id=torch_reranker.pad_token_id)

    return build


class OnnxReranker(RankLlamaReranker):
    """A :class:`RankLlamaReranker` whose scores come from an exported graph instead of a torch model.

    Example::

        reranker = OnnxReranker.from_checkpoint("rankllama-smollm2", precision="fp32")
        new_run = reranker.rerank(queries, run, corpus, hits=20)
    """

    def __init__(self, folder: PathLike, device: str = "cpu", batch_tokens: Optional[int] = None,
                 threads: Optional[int] = None, name_or_path: Optional[str] = None):
        from ..models.config import CheckpointConfig
        from ..models.load import load_tokenizer
        from ..models.presets import rankllama_v1_config
        from ..onnxrt.cache import MODEL_NAME, read_info
        from ..onnxrt.session import open_session

        self.folder = Path(folder)
        self.info = read_info(self.folder) or {}
        if not (self.folder / MODEL_NAME).is_file() or "pad_token_id" not in self.info:
            raise UserError(f"{self.folder}: not an ONNX reranker export (no {MODEL_NAME} or export.json)")
        config = CheckpointConfig.load(self.folder) or rankllama_v1_config()
        tokenizer = load_tokenizer(self.folder, "right")
        # the base class reads only the pad id off the model; the scores come from the session
        head = SimpleNamespace(config=SimpleNamespace(pad_token_id=self.info["pad_token_id"]))
        super().__init__(head, tokenizer, config, "cpu", batch_tokens)
        self.session = open_session(self.folder / MODEL_NAME, device, threads)
        self.name_or_path = name_or_path or str(self.folder)

    @classmethod
    def from_checkpoint(cls, name_or_path: str, precision: Optional[str] = None, device: str = "cpu",
                        trust_remote_code: bool = False, batch_tokens: Optional[int] = None,
                        threads: Optional[int] = None) -> "OnnxReranker":
        """A checkpoint's cached export (made on first use); ``precision``: fp32, int8 (default: measured)."""
        from ..onnxrt import default_precision
        from ..onnxrt.cache import ensure_export
        from ..onnxrt.export import DEFAULT_OPSET

        precision = precision or default_precision(name_or_path, "score")
        folder = ensure_export(name_or_path, "score", precision,
                               export_builder(name_or_path, precision, trust_remote_code), DEFAULT_OPSET)
        return cls(folder, device, batch_tokens, threads, str(name_or_path))

    @property
    def precision(self) -> str:
        return self.info.get("key", {}).get("precision", "fp32")

    def score_token_ids(self, token_ids: Sequence[List[int]], progress: bool = False) -> np.ndarray:
        """Scores of tokenized pairs in input order, computed longest first under the token budget."""
        from ..onnxrt.session import run_batch

        if not token_ids:
            return np.zeros(0, dtype=np.float32)

        def score_rows(rows: List[Sequence[int]]) -> np.ndarray:
            scores = run_batch(self.session, self.collate(rows)).reshape(-1)
            if not np.isfinite(scores).all():
                raise UserError(f"non-finite reranker scores from {self.folder}")
            return scores

        with progress_bar(len(token_ids), "reranking", "pair", enabled=progress) as bar:
            return map_batches(token_ids, score_rows, self.batch_tokens, progress=bar.update,
                               max_padding=default_max_padding("cpu"))  # onnxruntime runs on the CPU


def reranker_for_backend(checkpoint: str, backend: str = "torch", device: str = "cpu",
                         precision: Optional[str] = None, dtype: Optional[str] = None,
                         trust_remote_code: bool = False, batch_tokens: Optional[int] = None,
                         compile: bool = False) -> RankLlamaReranker:
    """The torch reranker, or its onnxruntime twin, as ``backend`` (``torch``, ``onnx``, ``auto``) says."""
    from ..onnxrt import check_backend_options, resolve_backend

    if resolve_backend(backend, device) == "onnx":
        check_backend_options("onnx", precision, dtype, compile)
        return OnnxReranker.from_checkpoint(checkpoint, precision, device, trust_remote_code, batch_tokens)
    check_backend_options("torch", precision, dtype, compile)
    return RankLlamaReranker.from_checkpoint(checkpoint, device=device, dtype=dtype,
                                             trust_remote_code=trust_remote_code, batch_tokens=batch_tokens,
                                             compile=compile)
