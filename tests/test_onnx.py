"""The onnxruntime backend on tiny random models: the exported graphs give the torch vectors and scores (float32
exactly, int8 closely), exports are cached by content and never reused when stale or broken, and the CLIs,
the pipeline stages and the Pyserini classes run it."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from pyserini_llama.data.beir import Document  # noqa: E402
from pyserini_llama.encoders.onnx import OnnxEncoder, ensure_encoder_export, main  # noqa: E402
from pyserini_llama.encoders.repllama import RepLlamaEncoder  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402
from pyserini_llama.models.config import CheckpointConfig  # noqa: E402
from pyserini_llama.onnxrt import cache  # noqa: E402

# lengths and batch sizes unlike the export's trace: the dynamic axes must hold
QUERIES = ["protein", "heat transfer in the boundary layer of a supersonic wing " * 4, "gene expression in mice",
           "x", "shock", "the effect of treatment on disease risk"]
DOCS = [Document("d1", "Protein folding", "Proteins fold into structures in the cell. " * 5),
        Document("d2", "", "Gene expression is increased in cancer cells."),
        Document("d3", "Heat transfer", "Heat transfer in the boundary layer of a wing."),
        Document("d4", "Shock", "shock")]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """Exports go to a cache of this module's own, never the user's."""
    root = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("PYSERINI_LLAMA_CACHE")
    os.environ["PYSERINI_LLAMA_CACHE"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("PYSERINI_LLAMA_CACHE", None)
    else:
        os.environ["PYSERINI_LLAMA_CACHE"] = previous


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny RepLLaMA checkpoint with a LLaMA-2-style tokenizer (BOS added, pad = unk)."""
    from pyserini_llama.testing import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("enc") / "tiny-repllama", task="embedding", seed=7)
    CheckpointConfig(query_max_length=16, passage_max_length=48, dtype="float32").save(folder)
    return folder


@pytest.fixture(scope="module")
def torch_encoder(encoder_dir):
    return RepLlamaEncoder.from_checkpoint(str(encoder_dir), device="cpu")


@pytest.mark.parametrize("precision", ["fp32", "int8", "int8-token", "int8-dynamic"])
def test_encoder_matches_torch(encoder_dir, torch_encoder, precision):
    onnx_encoder = OnnxEncoder.from_checkpoint(str(encoder_dir), precision=precision, max_tokens_per_batch=40)
    assert onnx_encoder.precision == precision and onnx_encoder.dimension == torch_encoder.dimension
    assert onnx_encoder.info["attention"] == "fused-rotary" and onnx_encoder.info["attention_ops"] == ["Attention"]
    for encode in ("encode_queries", "encode_passages"):
        texts = QUERIES if encode == "encode_queries" else DOCS
        expected = getattr(torch_encoder, encode)(texts)
        got = getattr(onnx_encoder, encode)(texts)  # several batches of several lengths
        assert got.shape == expected.shape and got.dtype == np.float32
        if precision == "fp32":
            np.testing.assert_allclose(got, expected, atol=1e-5)
        else:
            assert cosines(got, expected).min() > (0.95 if precision == "int8-dynamic" else 0.99)


def test_int8_token_vectors_do_not_depend_on_the_batch(encoder_dir):
    """Per-token activation scales: a text's vector is the same alone or among longer texts."""
    enc = OnnxEncoder.from_checkpoint(str(encoder_dir), precision="int8-token")
    together = enc.encode_queries(QUERIES)
    alone = np.stack([enc.encode_queries([q])[0] for q in QUERIES])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_int8_scales_normalised_inputs_per_tensor_and_the_rest_per_token(encoder_dir):
    import onnx

    from pyserini_llama.onnxrt.quantize import normalised_inputs, weight_matmuls

    fp32 = onnx.load(str(ensure_encoder_export(str(encoder_dir), "fp32") / cache.MODEL_NAME))
    names = [n.name for n in weight_matmuls(fp32)]
    per_tensor = normalised_inputs(fp32)
    assert len(names) == 2 * 7  # two layers of q, k, v, o, gate, up, down
    assert sorted(n.split("/")[-2] for n in per_tensor) == sorted(["q_proj", "k_proj", "v_proj", "gate_proj",
                                                                  "up_proj"] * 2)
    int8 = onnx.load(str(ensure_encoder_export(str(encoder_dir), "int8") / cache.MODEL_NAME))
    ops = [n.op_type for n in int8.graph.node]
    assert "MatMul" not in [n.op_type for n in int8.graph.node if n.name in names]
    assert ops.count("DynamicQuantizeLinear") == 2 * 2  # one per normalised input (q/k/v share, gate/up share)
    assert ops.count("QuantizeLinear") == 2 * 2  # per-token inputs of o_proj and down_proj


def test_identity_and_index_manifest_name_the_backend(encoder_dir, torch_encoder, tmp_path, beir_folder):
    from pyserini_llama.dense.index import build_index, read_index_info
    from pyserini_llama.dense.search import DenseSearcher

    fp32 = OnnxEncoder.from_checkpoint(str(encoder_dir), precision="fp32")
    int8 = OnnxEncoder.from_checkpoint(str(encoder_dir), precision="int8")
    assert len({fp32.identity, int8.identity, torch_encoder.identity}) == 3
    assert fp32.with_config(query_prefix="q: ").identity != fp32.identity
    build_index(int8, beir_folder / "corpus.jsonl", tmp_path / "idx", progress=False)
    info = read_index_info(tmp_path / "idx")
    assert info["dtype"] == "int8" and info["encoder_identity"] == int8.identity and info["count"] == 6
    run = DenseSearcher(tmp_path / "idx", int8).search({"q": "boundary layer heat"}, k=3)
    assert len(run["q"]) == 3


def test_llara_left_padding_runs_right_padded(tmp_path_factory):
    """LLaRA pads on the left in torch; the graph's rows are padded on the right: same vectors (RoPE is
    relative), LLaRA's own token layout and mean-of-last-k pooling."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pyserini_llama.encoders.llara import LlaraEncoder, add_prompt_tokens
    from pyserini_llama.models.presets import PROMPT_FORMATS
    from pyserini_llama.testing import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("llara") / "tiny-llara", task="causal-lm", seed=2)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    add_prompt_tokens(tok, model, PROMPT_FORMATS["released"])
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    PROMPT_FORMATS["released"].checkpoint_config(tok.eos_token, dtype="float32", query_max_length=96,
                                                 passage_max_length=128).save(folder)
    torch_encoder = LlaraEncoder.from_checkpoint(str(folder), device="cpu")
    onnx_encoder = OnnxEncoder.from_checkpoint(str(folder), precision="fp32")
    assert type(onnx_encoder.rows) is LlaraEncoder and torch_encoder.config.padding_side == "left"
    assert onnx_encoder.passage_token_ids(DOCS) == torch_encoder.passage_token_ids(DOCS)
    np.testing.assert_allclose(onnx_encoder.encode_passages(DOCS), torch_encoder.encode_passages(DOCS), atol=1e-5)
    np.testing.assert_allclose(onnx_encoder.encode_queries(QUERIES), torch_encoder.encode_queries(QUERIES),
                               atol=1e-5)


# --- the cache ------------------------------------------------------------------------------------------------

def test_export_is_reused_and_follows_the_checkpoint(encoder_dir, tmp_path, capsys):
    import shutil

    first = ensure_encoder_export(str(encoder_dir), "fp32")
    assert cache.check_export(first) is None and first.parent == cache.onnx_cache()
    stamp = (first / cache.MODEL_NAME).stat().st_mtime_ns
    capsys.readouterr()
    assert ensure_encoder_export(str(encoder_dir), "fp32") == first  # reused: nothing exported again
    assert "exporting" not in capsys.readouterr().out and (first / cache.MODEL_NAME).stat().st_mtime_ns == stamp
    assert ensure_encoder_export(str(encoder_dir), "int8") != first  # precision is part of the key

    edited = tmp_path / encoder_dir.name
    shutil.copytree(encoder_dir, edited)
    assert ensure_encoder_export(str(edited), "fp32") == first  # same content, same export
    replace(CheckpointConfig.load(edited), passage_prefix="doc: ").save(edited)
    changed = ensure_encoder_export(str(edited), "fp32")
    assert changed != first and CheckpointConfig.load(changed).passage_prefix == "doc: "
    with open(edited / "model.safetensors", "ab") as f:  # new weights (a size the old export never saw)
        f.write(b"\0")
    assert cache.checkpoint_key(str(edited), "embedding")[1] != cache.checkpoint_key(str(encoder_dir),
                                                                                      "embedding")[1]


def test_key_covers_versions_and_code(encoder_dir, monkeypatch):
    _, identity = cache.checkpoint_key(str(encoder_dir), "embedding")
    key = cache.export_key(identity, "embedding", "int8", 17)
    assert set(key["versions"]) == {"torch", "transformers", "onnx", "onnxruntime"}
    monkeypatch.setattr(cache, "library_versions", lambda: {"onnxruntime": "0.0"})
    assert cache.export_key(identity, "embedding", "int8", 17) != key
    assert cache.source_fingerprint("embedding") != cache.source_fingerprint("score")


@pytest.mark.parametrize("damage", ["truncate", "edit", "no-record", "other-key"])
def test_broken_export_is_rebuilt_not_used(encoder_dir, torch_encoder, damage, capsys):
    folder = ensure_encoder_export(str(encoder_dir), "fp32")
    model = folder / cache.MODEL_NAME
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "edit":
        data = bytearray(model.read_bytes())
        data[-10] ^= 0xFF  # same size, other bytes
        model.write_bytes(bytes(data))
    elif damage == "no-record":
        (folder / cache.INFO_NAME).unlink()
    else:
        info = json.loads((folder / cache.INFO_NAME).read_text())
        info["key"]["opset"] = 1
        (folder / cache.INFO_NAME).write_text(json.dumps(info))
    capsys.readouterr()
    again = ensure_encoder_export(str(encoder_dir), "fp32")
    assert again == folder and cache.check_export(again) is None
    assert f"discarding the ONNX export {folder}" in capsys.readouterr().out
    np.testing.assert_allclose(OnnxEncoder(again).encode_queries(QUERIES[:2]),
                               torch_encoder.encode_queries(QUERIES[:2]), atol=1e-5)


def test_failed_export_leaves_nothing_under_the_final_name(encoder_dir, monkeypatch):
    from pyserini_llama.onnxrt import quantize

    target_glob = f"{encoder_dir.name}-embedding-int8-dynamic-*"
    for old in cache.onnx_cache().glob(target_glob):
        cache.remove_tree(old, cache.onnx_cache())

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "quantize_dynamic_int8", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_encoder_export(str(encoder_dir), "int8-dynamic")
    assert not list(cache.onnx_cache().glob(target_glob))
    assert not [p for p in cache.onnx_cache().iterdir() if p.name.startswith(".")]  # no temp folder left


def test_export_refuses_unknown_precision(encoder_dir):
    with pytest.raises(UserError, match="unknown ONNX precision 'int4'"):
        ensure_encoder_export(str(encoder_dir), "int4")


# --- the export CLI and the Pyserini classes ---------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(encoder_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "repllama-onnx"
    assert main(["--checkpoint", str(encoder_dir), "--output", str(out), "--precision", "fp32"]) == 0
    return out


def test_export_cli_writes_a_complete_folder(exported, encoder_dir, torch_encoder, tmp_path):
    assert cache.check_export(exported) is None
    names = {p.name for p in exported.iterdir()}
    assert {"model.onnx", "export.json", "pyserini_llama.json", "tokenizer.json"} <= names
    np.testing.assert_allclose(OnnxEncoder(exported).encode_queries(QUERIES), torch_encoder.encode_queries(QUERIES),
                               atol=1e-5)
    with pytest.raises(UserError, match="already exists"):
        main(["--checkpoint", str(encoder_dir), "--output", str(exported)])
    with pytest.raises(UserError, match="no model.onnx"):
        OnnxEncoder(tmp_path)


def test_pyserini_onnx_encoders(exported, encoder_dir, torch_encoder):
    pytest.importorskip("pyserini")
    from pyserini_llama.encoders.onnx_adapters import RepLlamaOnnxDocumentEncoder, RepLlamaOnnxQueryEncoder

    reference = torch_encoder.encode_queries(QUERIES[:2])
    for source in (str(exported), str(encoder_dir)):  # an export folder, or a checkpoint exported on the fly
        query_encoder = RepLlamaOnnxQueryEncoder(encoder_dir=source, device="cpu")
        np.testing.assert_allclose(query_encoder.encode(QUERIES[0]), reference[0], atol=1e-4)
        np.testing.assert_allclose(query_encoder.encode_batch(QUERIES[:2]), reference, atol=1e-4)
    doc_encoder = RepLlamaOnnxDocumentEncoder(str(exported), device="cpu")
    vectors = doc_encoder.encode([d.text for d in DOCS], titles=[d.title for d in DOCS], max_length=32)
    np.testing.assert_allclose(vectors, torch_encoder.encode_passages(DOCS, max_length=32), atol=1e-4)
    prefixed = RepLlamaOnnxQueryEncoder(encoder_dir=str(exported), prefix="search: ")
    assert prefixed.encoder.config.query_prefix == "search: "


# --- the reranker ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["llama", "smollm2"])
def reranker_dir(request, tmp_path_factory):
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp(f"rank-{request.param}") / "tiny-rankllama",
                            task="sequence-classification", style=request.param, seed=3)


def test_reranker_matches_torch(reranker_dir):
    from pyserini_llama.rerankers.onnx import OnnxReranker
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker

    torch_reranker = RankLlamaReranker.from_checkpoint(str(reranker_dir), device="cpu", dtype="float32")
    docs = {d.docid: d for d in DOCS}
    run = {"q1": [(d.docid, 1.0 - i) for i, d in enumerate(DOCS)], "q2": [("d3", 2.0), ("d1", 1.0)]}
    queries = {"q1": "protein structure in the cell", "q2": "boundary layer heat"}
    expected = torch_reranker.rerank(queries, run, docs, hits=3, progress=False)
    fp32 = OnnxReranker.from_checkpoint(str(reranker_dir), precision="fp32", batch_tokens=64)
    got = fp32.rerank(queries, run, docs, hits=3, progress=False)
    assert [[d for d, _ in got[q]] for q in run] == [[d for d, _ in expected[q]] for q in run]
    np.testing.assert_allclose([s for q in run for _, s in got[q]], [s for q in run for _, s in expected[q]],
                               atol=1e-4)
    pairs = [(d.title, d.text) for d in DOCS]
    reference = torch_reranker.score("protein", pairs)
    int8 = OnnxReranker.from_checkpoint(str(reranker_dir), precision="int8")
    assert int8.precision == "int8"
    np.testing.assert_allclose(int8.score("protein", pairs), reference, atol=0.05 * np.abs(reference).max())


# --- CLIs and stages ----------------------------------------------------------------------------------------------

def test_encode_and_rerank_clis_with_the_onnx_backend(encoder_dir, beir_folder, tmp_path, capsys):
    from pyserini_llama import encode, rerank
    from pyserini_llama.data.trec import load_run, write_run
    from pyserini_llama.dense.index import read_index_info
    from pyserini_llama.testing import build_tiny_llama

    assert encode.main(["corpus", "--corpus", str(beir_folder / "corpus.jsonl"), "--encoder", str(encoder_dir),
                        "--index", str(tmp_path / "idx"), "--backend", "onnx", "--precision", "int8"]) == 0
    assert read_index_info(tmp_path / "idx")["dtype"] == "int8"
    reranker = build_tiny_llama(tmp_path / "rr", task="sequence-classification", seed=3)
    write_run({"q3": [("d3", 2.0), ("d1", 1.0), ("d2", 0.5)]}, tmp_path / "run.trec")
    assert rerank.main(["--run", str(tmp_path / "run.trec"), "--topics", str(beir_folder), "--index",
                        str(beir_folder), "--reranker", str(reranker), "--hits", "2", "--backend", "onnx",
                        "--precision", "fp32", "--output", str(tmp_path / "out.trec")]) == 0
    assert "(onnxruntime fp32, q 32 + p 164 tokens)" in capsys.readouterr().out
    out = load_run(tmp_path / "out.trec")
    assert [d for d, _ in out["q3"]][2] == "d2"  # below the reranked depth: first-stage order kept
    with pytest.raises(UserError, match="--precision applies to the onnx backend"):
        encode.main(["queries", "--topics", str(beir_folder), "--encoder", str(encoder_dir), "--output",
                     str(tmp_path / "q"), "--precision", "int8"])
    with pytest.raises(UserError, match="--dtype and --compile apply to the torch backend"):
        rerank.main(["--run", str(tmp_path / "run.trec"), "--topics", str(beir_folder), "--index",
                     str(beir_folder), "--reranker", str(reranker), "--backend", "onnx", "--dtype", "float16",
                     "--output", str(tmp_path / "out2.trec")])


def test_stage_keys_name_the_backend(encoder_dir):
    from pyserini_llama.stages import backend_key

    assert backend_key(str(encoder_dir), "embedding", "torch", "cpu", None) == {}
    assert backend_key(str(encoder_dir), "embedding", "auto", "cpu", "int8") == {"backend": "onnx",
                                                                                 "precision": "int8"}
    assert backend_key(str(encoder_dir), "score", "onnx", "cpu", None) == {"backend": "onnx", "precision": "fp32"}
