"""The RepLLaMA query encoder as an ONNX graph run by onnxruntime (CPU, or CUDA where onnxruntime-gpu is).

The exported graph maps ``input_ids`` and ``attention_mask`` (dynamic batch and sequence axes) to the pooled,
normalised embedding, so everything but tokenization runs inside onnxruntime. The export folder holds
``model.onnx``, the tokenizer and ``pyserini_llama.json``, and is used as
``python -m pyserini.search.faiss --encoder DIR --encoder-class repllama-onnx ...``.

Export::

    python -m pyserini_llama.encoders.onnx --checkpoint repllama --output onnx/repllama-query
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from ..batching import map_batches, pad_batch
from ..data.atomic import atomic_dir
from .. import cli
from ..errors import UserError
from ..models.config import CheckpointConfig
from .inputs import format_query, pad_id, tokenize_for_embedding

PathLike = Union[str, os.PathLike]
ONNX_NAME = "model.onnx"
DEFAULT_OPSET = 17
# what an export folder holds: a folder with anything else is someone's and is not replaced
EXPORT_FILES = (ONNX_NAME, "*.onnx.data", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                "merges.txt", "chat_template.jinja", "pyserini_llama.json")


def export_query_encoder(checkpoint: str, output: PathLike, opset: int = DEFAULT_OPSET,
                         overwrite: bool = False, trust_remote_code: bool = False) -> Path:
    """Export ``checkpoint``'s embedding model (float32, CPU) to ``output/model.onnx`` with its tokenizer."""
    import warnings

    import torch

    from .repllama import RepLlamaEncoder

    encoder = RepLlamaEncoder.from_checkpoint(checkpoint, device="cpu", dtype="float32",
                                              trust_remote_code=trust_remote_code)
    config = encoder.config
    # A padded sample: the trace must go through the attention-mask path, not the no-padding shortcut.
    sample = pad_batch(encoder.query_token_ids(["what is the boundary layer thickness", "x"]),
                       pad_id(encoder.tokenizer), config.padding_side)

    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = encoder.model

        def forward(self, input_ids, attention_mask):
            return encoder.embed({"input_ids": input_ids, "attention_mask": attention_mask})

    with atomic_dir(output, overwrite=overwrite, owns=EXPORT_FILES) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings concern branches on shapes we keep dynamic
        torch.onnx.export(Embedder().eval(), (sample["input_ids"], sample["attention_mask"]), str(tmp / ONNX_NAME),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "embedding": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        encoder.tokenizer.save_pretrained(str(tmp))
        replace(config, dtype="float32").save(tmp)
    return Path(output)


class OnnxEncoder:
    """Encode queries with an exported ``model.onnx``; same tokens and pooling as the torch encoder.

    Example::

        enc = OnnxEncoder("onnx/repllama-query")
        vectors = enc.encode_queries(["what is a lobster roll"])      # (1, d) float32
    """

    def __init__(self, folder: PathLike, device: str = "cpu", max_tokens_per_batch: int = 8192,
                 query_prefix: Optional[str] = None):
        import onnxruntime as ort

        from ..models.load import load_tokenizer

        self.folder = Path(folder)
        if not (self.folder / ONNX_NAME).is_file():
            raise UserError(f"{self.folder}: no {ONNX_NAME}; export one with "
                            f"python -m pyserini_llama.encoders.onnx --checkpoint X --output {self.folder}")
        self.config = CheckpointConfig.load(self.folder) or CheckpointConfig()
        if query_prefix is not None:
            self.config.query_prefix = query_prefix
        self.tokenizer = load_tokenizer(self.folder, self.config.padding_side)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.folder / ONNX_NAME), providers=providers)
        self.max_tokens_per_batch = max_tokens_per_batch

    def encode_queries(self, queries: Sequence[str], max_length: Optional[int] = None) -> np.ndarray:
        ids = tokenize_for_embedding(self.tokenizer, [format_query(q, self.config) for q in queries],
                                     max_length or self.config.query_max_length, self.config.append_eos)
        return map_batches(ids, self._run, self.max_tokens_per_batch)

    def _run(self, ids: List[List[int]]) -> np.ndarray:
        batch = pad_batch(ids, pad_id(self.tokenizer), self.config.padding_side)
        feed = {name: tensor.numpy() for name, tensor in batch.items()}
        return self.session.run(["embedding"], feed)[0].astype(np.float32)


def main(argv=None) -> int:
    parser = cli.parser("python -m pyserini_llama.encoders.onnx", "Export a RepLLaMA query encoder to ONNX.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder, built-in name or hub id")
    parser.add_argument("--output", required=True, help="folder to write (model.onnx + tokenizer + config)")
    parser.add_argument("--opset", type=cli.int_at_least(9), default=DEFAULT_OPSET)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)
    from ..data.atomic import check_output_dir

    check_output_dir(args.output, args.overwrite, EXPORT_FILES)  # before the model loads
    out = export_query_encoder(args.checkpoint, args.output, args.opset, args.overwrite, args.trust_remote_code)
    print(f"wrote {out / ONNX_NAME}")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
