"""ONNX export of the query encoder: onnxruntime gives the torch vectors (cosine >= 0.999)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from pyserini_llama.encoders.onnx import ONNX_NAME, OnnxEncoder, main  # noqa: E402
from pyserini_llama.encoders.repllama import RepLlamaEncoder  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402
from pyserini_llama.models.config import CheckpointConfig  # noqa: E402

# lengths and batch sizes unlike the export sample: the dynamic axes must hold
QUERIES = ["protein", "heat transfer in the boundary layer of a supersonic wing " * 4, "gene expression in mice",
           "x", "shock", "the effect of treatment on disease risk"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from pyserini_llama.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("onnx")
    model = build_tiny_llama(root / "model", task="embedding", style="llama", seed=7)
    CheckpointConfig(query_max_length=16, dtype="float32").save(model)
    assert main(["--checkpoint", str(model), "--output", str(root / "exported")]) == 0
    return model, root / "exported"


def test_onnx_matches_torch(exported):
    model, folder = exported
    assert (folder / ONNX_NAME).is_file() and (folder / "pyserini_llama.json").is_file()
    torch_vectors = RepLlamaEncoder.from_checkpoint(str(model)).encode_queries(QUERIES, progress=False)
    onnx_vectors = OnnxEncoder(folder, max_tokens_per_batch=40).encode_queries(QUERIES)  # several batches
    cosine = (torch_vectors * onnx_vectors).sum(1) / np.linalg.norm(onnx_vectors, axis=1)
    assert cosine.min() >= 0.999
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4)


def test_pyserini_onnx_query_encoder(exported):
    pytest.importorskip("pyserini")
    from pyserini_llama.encoders.pyserini_adapters import RepLlamaOnnxQueryEncoder

    model, folder = exported
    encoder = RepLlamaOnnxQueryEncoder(encoder_dir=str(folder), device="cpu")
    reference = RepLlamaEncoder.from_checkpoint(str(model)).encode_queries(QUERIES[:2], progress=False)
    vector = encoder.encode(QUERIES[0])
    assert vector.shape == (reference.shape[1],)
    np.testing.assert_allclose(vector, reference[0], atol=1e-4)
    np.testing.assert_allclose(encoder.encode_batch(QUERIES[:2]), reference, atol=1e-4)


def test_export_refuses_to_overwrite_and_missing_model(exported, tmp_path):
    model, folder = exported
    with pytest.raises(UserError, match="already exists"):
        main(["--checkpoint", str(model), "--output", str(folder)])
    with pytest.raises(UserError, match="no model.onnx"):
        OnnxEncoder(tmp_path)
