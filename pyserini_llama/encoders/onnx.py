"""RepLLaMA and LLaRA encoders run by onnxruntime: the CPU path for encoding a corpus and its queries.

The graph (:mod:`pyserini_llama.onnxrt`) maps ``input_ids`` + ``attention_mask`` to the pooled, normalised
embedding, i.e. the torch encoder's own ``embed``; tokenization is the torch encoder's (``query_token_ids`` /
``passage_token_ids`` of :class:`~.repllama.RepLlamaEncoder` or :class:`~.llara.LlaraEncoder`) and batching is
the same length-sorted loop under a token budget (:func:`~pyserini_llama.batching.map_batches`). Rows are
padded on the right whatever the checkpoint's padding side: with rotary positions a row's result does not
depend on where its padding sits, and the fused attention reads per-row lengths.

The export is made once per checkpoint and precision and cached (:mod:`pyserini_llama.onnxrt.cache`);
``--output`` writes one to a folder of your choice, e.g. for Pyserini::

    python -m pyserini_llama.encoders.onnx --checkpoint repllama-smollm2 --output onnx/repllama-smollm2
    python -m pyserini.search.faiss --index IDX --topics queries.tsv --encoder onnx/repllama-smollm2 \\
        --encoder-class repllama-onnx --output run.trec
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .. import cli
from ..batching import pad_batch
from ..errors import UserError
from ..models.config import CheckpointConfig
from ..onnxrt.cache import EXPORT_FILES
from .base import TextEncoder
from .inputs import PassageLike, pad_id

PathLike = Union[str, os.PathLike]
# texts of several lengths for the export's trace and its check against torch (padding on some rows)
CHECK_QUERIES = ["what is the boundary layer thickness", "x", "heat transfer in a supersonic flow over a wing"]
CHECK_PASSAGES = [("Boundary layers", "The boundary layer thickens downstream of the leading edge " * 6),
                  ("", "Short text."), ("Shock waves", "A normal shock forms ahead of a blunt body in supersonic "
                                                       "flow, and the pressure rises across it.")]


def encoder_class(config: Optional[CheckpointConfig]):
    """The torch encoder whose token layout a checkpoint uses (LLaRA's prompts, else RepLLaMA's)."""
    from .llara import LlaraEncoder
    from .repllama import RepLlamaEncoder

    return LlaraEncoder if config is not None and config.kind == "llara" else RepLlamaEncoder


def export_builder(checkpoint: str, precision: str, trust_remote_code: bool = False):
    """``build(folder) -> record``: export ``checkpoint``'s ``embed`` with its tokenizer and config."""

    def build(folder: Path) -> Dict:
        from ..models.load import resolve_checkpoint
        from ..onnxrt.export import build_export

        torch_encoder = encoder_class(resolve_checkpoint(checkpoint)[1]).from_checkpoint(
            checkpoint, device="cpu", dtype="float32", trust_remote_code=trust_remote_code)
        pad = pad_id(torch_encoder.tokenizer)
        batches = [pad_batch(torch_encoder.query_token_ids(CHECK_QUERIES), pad, "right"),
                   pad_batch(torch_encoder.passage_token_ids(CHECK_PASSAGES), pad, "right")]
        record = build_export(folder, torch_encoder.embed, torch_encoder.model, batches, "embedding", precision)
        torch_encoder.tokenizer.save_pretrained(str(folder))
        torch_encoder.config.save(folder)
        return dict(record, dimension=torch_encoder.dimension)

    return build


def ensure_encoder_export(checkpoint: str, precision: Optional[str] = None,
                          trust_remote_code: bool = False) -> Path:
    """The cached export of an encoder checkpoint (made on first use)."""
    from ..onnxrt import default_precision
    from ..onnxrt.cache import ensure_export
    from ..onnxrt.export import DEFAULT_OPSET

    precision = precision or default_precision(checkpoint, "embedding")
    return ensure_export(checkpoint, "embedding", precision, export_builder(checkpoint, precision,
                                                                            trust_remote_code), DEFAULT_OPSET)


class OnnxEncoder(TextEncoder):
    """Encode queries and passages with an exported graph; same tokens, batches and pooling as the torch encoder.

    Example::

        enc = OnnxEncoder.from_checkpoint("repllama-smollm2")            # exported once, int8 on a CPU
        p = enc.encode_passages([("Lobster roll", "A lobster roll is ...")])
        q = enc.encode_queries(["what is a lobster roll"])               # (1, d) float32, unit norm
        enc = OnnxEncoder("onnx/repllama-smollm2")                         # a folder written with --output
    """

    def __init__(self, folder: PathLike, device: str = "cpu", max_tokens_per_batch: Optional[int] = None,
                 max_batch_size: Optional[int] = None, threads: Optional[int] = None,
                 query_prefix: Optional[str] = None, name_or_path: Optional[str] = None):
        from ..models.load import load_tokenizer
        from ..onnxrt.cache import MODEL_NAME, read_info
        from ..onnxrt.session import open_session

        self.folder = Path(folder)
        if not (self.folder / MODEL_NAME).is_file():
            raise UserError(f"{self.folder}: no {MODEL_NAME}; export one with python -m pyserini_llama.encoders.onnx "
                            f"--checkpoint X --output {self.folder}")
        self.info = read_info(self.folder) or {}
        config = CheckpointConfig.load(self.folder) or CheckpointConfig()
        if query_prefix is not None:
            config.query_prefix = query_prefix
        tokenizer = load_tokenizer(self.folder, config.padding_side)
        self.rows = encoder_class(config)(None, tokenizer, config)  # tokenization only: the torch encoder's own
        self.session = open_session(self.folder / MODEL_NAME, device, threads)
        self.device = "cpu" if not str(device).startswith("cuda") else str(device)
        self.name_or_path = name_or_path or str(self.folder)
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_batch_size = max_batch_size

    @classmethod
    def from_checkpoint(cls, name_or_path: str, precision: Optional[str] = None, device: str = "cpu",
                        trust_remote_code: bool = False, **kwargs) -> "OnnxEncoder":
        """A checkpoint's cached export (made on first use); ``precision``: fp32, int8 (default: measured)."""
        folder = ensure_encoder_export(name_or_path, precision, trust_remote_code)
        return cls(folder, device=device, name_or_path=str(name_or_path), **kwargs)

    # what the torch encoder offers too (dense.index, dense.search and the Pyserini adapters use these)
    @property
    def config(self) -> CheckpointConfig:
        return self.rows.config

    @property
    def tokenizer(self):
        return self.rows.tokenizer

    @property
    def precision(self) -> str:
        return self.info.get("key", {}).get("precision", "fp32")

    @property
    def dimension(self) -> int:
        if "dimension" not in self.info:  # an export without its record: ask the graph
            self.info["dimension"] = int(self.encode_token_ids([[pad_id(self.tokenizer)]]).shape[1])
        return int(self.info["dimension"])

    @property
    def identity(self) -> str:
        """What the vectors depend on: the export (checkpoint, precision, versions) and the config in use."""
        from ..fingerprint import fingerprint, folder_fingerprint

        made_from = self.info.get("key") or folder_fingerprint(self.folder)
        return fingerprint({"onnx": made_from, "config": self.config.to_dict()})

    def with_config(self, **changes) -> "OnnxEncoder":
        """A view of this encoder (same session) with some config fields changed, e.g. ``query_prefix``."""
        view = copy.copy(self)
        view.rows = self.rows.with_config(**changes)
        return view

    def query_token_ids(self, queries: Sequence[str], max_length: Optional[int] = None) -> List[List[int]]:
        return self.rows.query_token_ids(queries, max_length)

    def passage_token_ids(self, docs: Sequence[PassageLike], max_length: Optional[int] = None) -> List[List[int]]:
        return self.rows.passage_token_ids(docs, max_length)

    def encode_batch(self, rows: List[List[int]]) -> np.ndarray:
        from ..onnxrt.session import run_batch

        return run_batch(self.session, pad_batch(rows, pad_id(self.tokenizer), "right"))


def encoder_for_backend(checkpoint: str, backend: str = "torch", device: str = "cpu",
                        precision: Optional[str] = None, dtype: Optional[str] = None,
                        trust_remote_code: bool = False, max_tokens_per_batch: Optional[int] = None,
                        compile: bool = False):
    """The torch encoder, or its onnxruntime twin, as ``backend`` (``torch``, ``onnx``, ``auto``) says."""
    from ..onnxrt import check_backend_options, resolve_backend

    if resolve_backend(backend, device) == "onnx":
        check_backend_options("onnx", precision, dtype, compile)
        return OnnxEncoder.from_checkpoint(checkpoint, precision, device, trust_remote_code,
                                           max_tokens_per_batch=max_tokens_per_batch)
    from .repllama import RepLlamaEncoder

    check_backend_options("torch", precision, dtype, compile)
    return RepLlamaEncoder.from_checkpoint(checkpoint, device=device, dtype=dtype,
                                           trust_remote_code=trust_remote_code,
                                           max_tokens_per_batch=max_tokens_per_batch, compile=compile)


def export_to_folder(checkpoint: str, output: PathLike, precision: Optional[str] = None, overwrite: bool = False,
                     trust_remote_code: bool = False) -> Path:
    """Export an encoder checkpoint into ``output`` (a folder of your choice, e.g. for Pyserini's CLIs)."""
    from ..data.atomic import atomic_dir
    from ..onnxrt import default_precision
    from ..onnxrt.cache import checkpoint_key, export_key, write_info
    from ..onnxrt.export import DEFAULT_OPSET

    precision = precision or default_precision(checkpoint, "embedding")
    folder, identity = checkpoint_key(checkpoint, "embedding")
    with atomic_dir(output, overwrite=overwrite, owns=EXPORT_FILES) as tmp:
        record = export_builder(checkpoint, precision, trust_remote_code)(tmp)
        write_info(tmp, dict(record, key=export_key(identity, "embedding", precision, DEFAULT_OPSET),
                             checkpoint=str(folder)))
    return Path(output)


def main(argv=None) -> int:
    from ..onnxrt.quantize import PRECISIONS

    parser = cli.parser("python -m pyserini_llama.encoders.onnx", __doc__)
    cli.add_checkpoint(parser, "--checkpoint", None, "encoder", required=True)
    parser.add_argument("--output", required=True, help="folder to write (model.onnx + tokenizer + config)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="fp32, int8 (per-token activations) or int8-dynamic (onnxruntime's quantize_dynamic); "
                             "default: the measured CPU default of the checkpoint, else fp32")
    cli.add_overwrite(parser)
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    from ..data.atomic import check_output_dir

    check_output_dir(args.output, args.overwrite, EXPORT_FILES)  # before the model loads
    out = export_to_folder(args.checkpoint, args.output, args.precision, args.overwrite, args.trust_remote_code)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
