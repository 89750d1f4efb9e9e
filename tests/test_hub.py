"""Hub downloads through the real ``huggingface_hub`` client, against a local server speaking the hub's API.

The published RepLLaMA adapter is ``adapter_config.json`` + a pickled ``adapter_model.bin``; its base model
repository holds both safetensors and ``.bin`` weights. ``--encoder repllama`` must download the adapter's
``.bin`` and only the base's safetensors, refuse a gated base and a cut transfer with one line each, and never
take a half-downloaded cache for a complete one.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_env, run_cli
from hub_server import FakeHub

BASE, ADAPTER = "meta-llama/Llama-2-7b-hf", "castorini/repllama-v1-7b-lora-passage"
QUERIES = {"1": "protein structure in cells", "2": " ".join(["heat transfer in the boundary layer"] * 6)}


def published_adapter(base: Path, folder: Path) -> Path:
    """castorini's format: a peft 0.4-era adapter_config.json and ``torch.save`` of the LoRA tensors."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModel

    torch.manual_seed(0)
    targets = ["q_proj", "v_proj", "o_proj", "down_proj", "up_proj", "gate_proj"]
    model = get_peft_model(AutoModel.from_pretrained(str(base)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    folder.mkdir(parents=True)
    torch.save(get_peft_model_state_dict(model), folder / "adapter_model.bin")
    (folder / "adapter_config.json").write_text(json.dumps({
        "auto_mapping": None, "base_model_name_or_path": BASE, "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
        "lora_alpha": 8, "lora_dropout": 0.1, "modules_to_save": None, "peft_type": "LORA", "r": 4,
        "revision": None, "target_modules": targets, "task_type": "FEATURE_EXTRACTION"}))
    (folder / "README.md").write_text("RepLLaMA adapter\n")
    merged = model.merge_and_unload()
    return merged


def tevatron_v1_vectors(model, tokenizer, texts, max_length=32) -> np.ndarray:
    """tevatron v1's encode.py, one formatted text at a time: its ids cut at max_length - 3, + EOS, no BOS; the
    last state, normalised."""
    vectors = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False, max_length=max_length - 3,
                               truncation=True) + [tokenizer.eos_token_id]
        with torch.no_grad():
            state = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        vectors.append((state / state.norm()).numpy())
    return np.stack(vectors)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pyserini_llama.testing import build_tiny_llama

    tmp = tmp_path_factory.mktemp("hub")
    base = build_tiny_llama(tmp / "base", task="causal-lm", style="llama", seed=5)
    torch.save(AutoModelForCausalLM.from_pretrained(str(base)).state_dict(), base / "pytorch_model.bin")
    merged = published_adapter(base, tmp / "adapter")
    server = FakeHub()
    server.add_repo(BASE, base)
    server.add_repo(ADAPTER, tmp / "adapter")
    reference = dict(model=merged.eval(), tokenizer=AutoTokenizer.from_pretrained(str(base)))
    expected = tevatron_v1_vectors(texts=["query: " + q for q in QUERIES.values()], **reference)
    server.reference = reference
    yield server, expected
    server.close()


def encode_queries(server: FakeHub, tmp: Path, name: str, offline: bool = False):
    topics = tmp / "topics.tsv"
    topics.write_text("".join(f"{qid}\t{text}\n" for qid, text in QUERIES.items()))
    return run_cli("pyserini_llama.encode", "queries", "--topics", str(topics), "--encoder", "repllama",
                   "--output", str(tmp / name), "--device", "cpu", HF_ENDPOINT=server.endpoint,
                   HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1" if offline else "0",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")


def one_line_error(proc, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and pattern in errors[0], proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0]


@pytest.mark.integration
def test_published_adapter_downloads_and_encodes_like_tevatron(hub, tmp_path):
    """Online: the adapter's .bin is fetched, the base's .bin is not (its safetensors are), vectors are
    tevatron v1's; offline afterwards the cache alone serves the same vectors."""
    server, expected = hub
    proc = encode_queries(server, tmp_path, "online")
    assert proc.returncode == 0, proc.stderr
    assert "adapter_model.bin" in server.downloads(ADAPTER)
    base_files = server.downloads(BASE)
    assert "model.safetensors" in base_files and "pytorch_model.bin" not in base_files
    with open(tmp_path / "online" / "embedding.pkl", "rb") as f:
        got = pickle.load(f)
    np.testing.assert_allclose(np.stack(got["embedding"]), expected, atol=1e-5)

    proc = encode_queries(server, tmp_path, "offline", offline=True)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "offline" / "embedding.pkl", "rb") as f:
        np.testing.assert_allclose(np.stack(pickle.load(f)["embedding"]), expected, atol=1e-5)


@pytest.mark.integration
def test_gated_and_cut_downloads_fail_in_one_line_and_never_look_complete(hub, tmp_path):
    server, expected = hub
    server.gated.add(BASE)
    try:
        one_line_error(encode_queries(server, tmp_path, "gated"), f"model '{BASE}' is gated")
    finally:
        server.gated.discard(BASE)

    server.truncate[BASE, "model.safetensors"] = 1000
    one_line_error(encode_queries(server, tmp_path, "cut"), "arrived incomplete")
    assert not (tmp_path / "cut" / "embedding.pkl").exists()
    # offline, the half-cached base is refused, not loaded as if it were complete
    one_line_error(encode_queries(server, tmp_path, "cut-offline", offline=True), "is incomplete")
    # online again, the download is finished and gives the right vectors
    proc = encode_queries(server, tmp_path, "resumed")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "resumed" / "embedding.pkl", "rb") as f:
        np.testing.assert_allclose(np.stack(pickle.load(f)["embedding"]), expected, atol=1e-5)


PYSERINI_ENCODERS = """
import json, sys
from pyserini.search.faiss.__main__ import init_query_encoder
from pyserini.encode.__main__ import init_encoder
queries, docs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for name in ("repllama", "repllama-beir"):
    # exactly what python -m pyserini.search.faiss / pyserini.encode do with --encoder NAME (no --encoder-class)
    q = init_query_encoder(name, None, None, None, None, "cpu", None, "cls", True, None)
    d = init_encoder(name, None, "cpu", "cls", True, None, False, False)
    out[name] = dict(classes=[type(q).__name__, type(d).__name__],
                     queries=q.encode_batch(queries).tolist(),
                     docs=d.encode(texts=[t for _, t in docs], titles=[t for t, _ in docs], max_length=512).tolist())
print(json.dumps(out))
"""


@pytest.mark.integration
def test_unmodified_pyserini_picks_the_recipe_by_name(hub, tmp_path):
    """--encoder repllama-beir through Pyserini's own encoder resolution: the BEIR recipe (queries up to 512
    tokens), where --encoder repllama cuts them at 32 as on MS MARCO."""
    server, _ = hub
    queries = list(QUERIES.values())
    docs = [("", "Heat transfer in the boundary layer. " * 40), ("Protein folding", "Proteins fold.")]
    proc = subprocess.run([sys.executable, "-c", PYSERINI_ENCODERS, json.dumps(queries), json.dumps(docs)],
                          env=cli_env(HF_ENDPOINT=server.endpoint, HF_HOME=str(tmp_path / "hf"),
                                      HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = server.reference
    passages = tevatron_v1_vectors(texts=[f"passage: {t} {x}" for t, x in docs], max_length=512, **ref)
    for name, length in (("repllama", 32), ("repllama-beir", 512)):
        assert got[name]["classes"] == ["RepLlamaQueryEncoder", "RepLlamaDocumentEncoder"]
        want = tevatron_v1_vectors(texts=["query: " + q for q in queries], max_length=length, **ref)
        np.testing.assert_allclose(np.array(got[name]["queries"]), want, atol=1e-5)
        np.testing.assert_allclose(np.array(got[name]["docs"]), passages, atol=1e-5)
    long_query = np.array([got[name]["queries"][1] for name in ("repllama", "repllama-beir")])
    assert long_query[0] @ long_query[1] < 0.999  # the 32-token cut changed the long query's vector
    assert "recipe is 196" in proc.stderr  # --max-length 512 differs from repllama's MS MARCO passage length


def test_files_to_download_takes_one_weight_format():
    from pyserini_llama.models.hub import files_to_download

    llama = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
             "model-00002-of-00002.safetensors", "model.safetensors.index.json", "pytorch_model-00001-of-00002.bin",
             "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json", "tokenizer.model",
             "tokenizer_config.json", "special_tokens_map.json", "README.md", "LICENSE.txt", "original/x.pth"]
    assert files_to_download(llama) == [
        "LICENSE.txt", "config.json", "generation_config.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "special_tokens_map.json",
        "tokenizer.model", "tokenizer_config.json"]
    adapter = [".gitattributes", "README.md", "adapter_config.json", "adapter_model.bin", "training_args.bin"]
    assert files_to_download(adapter) == ["adapter_config.json", "adapter_model.bin"]


def test_missing_files_sees_what_a_checkpoint_lacks(tmp_path):
    from pyserini_llama.models.hub import missing_files

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert missing_files(tmp_path) == [
        "model weights (model.safetensors or pytorch_model.bin, or all shards of an index)", "tokenizer files"]
    (tmp_path / "model-00002-of-00002.safetensors").symlink_to(tmp_path / "blob-never-finished")
    (tmp_path / "tokenizer.model").write_bytes(b"x")
    assert missing_files(tmp_path)[0].startswith("model weights")  # a dangling link is not a file
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert missing_files(tmp_path) == []
    assert missing_files(tmp_path, ["generation_config.json"]) == ["generation_config.json"]
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert missing_files(tmp_path / "adapter") == ["adapter_model.safetensors or adapter_model.bin"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
