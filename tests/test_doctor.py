"""``python -m pyserini_llama.doctor`` says what is true: Pyserini really imports, which Java runs, which
published checkpoints the Hugging Face cache holds in full."""
from __future__ import annotations

import json

import pytest

from pyserini_llama import doctor, java

BROKEN_ENCODE = ("raise OSError(\"HTTPSConnectionPool(host='raw.githubusercontent.com', port=443): Max retries "
                 "exceeded with url: /castorini/pyserini/prebuilt-index-info.json\")\n")


def fake_pyserini(root):
    """A pyserini whose encode module fails at import, as pyserini 2.4 does offline; search.lucene imports."""
    for package in ("pyserini", "pyserini/search", "pyserini/search/lucene", "pyserini/encode"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    (root / "pyserini" / "encode" / "__init__.py").write_text(BROKEN_ENCODE)
    return root


def test_a_pyserini_that_cannot_be_imported_is_reported(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pyserini")
    monkeypatch.setenv("PYTHONPATH", str(fake_pyserini(tmp_path / "fake")))
    checks = {what: (ok, found) for what, ok, found, _ in doctor.check_pyserini_imports()}
    assert checks["import pyserini.search.lucene"] == (True, "ok")
    ok, found = checks["import pyserini.encode"]
    assert not ok and found.startswith("OSError: HTTPSConnectionPool(host='raw.githubusercontent.com'")

    monkeypatch.setattr(doctor, "check_models", lambda: [])  # the rest as it is on this machine
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "[!!] import pyserini.encode" in out and "missing: import pyserini.encode" in out


def write_snapshot(cache, repo_id: str, files: dict) -> None:
    """A Hugging Face cache entry as huggingface_hub lays it out (refs/main -> snapshots/<commit>/)."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


def test_published_checkpoints_are_cached_only_when_complete(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter = {"adapter_config.json": json.dumps({"base_model_name_or_path": "meta-llama/Llama-2-7b-hf"}).encode(),
               "adapter_model.bin": b"weights"}
    write_snapshot(cache, "castorini/repllama-v1-7b-lora-passage", adapter)
    write_snapshot(cache, "meta-llama/Llama-2-7b-hf", {"config.json": b"{}", "tokenizer.model": b"x"})

    _, ok, found, _ = doctor.check_published_checkpoints()
    assert ok and found.startswith("cached: none; not usable offline")  # the base lacks its weights
    assert "repllama (meta-llama/Llama-2-7b-hf incomplete: missing model weights" in found
    assert "llara (BAAI/LLARA-passage not cached)" in found

    snapshot = next((cache / "models--meta-llama--Llama-2-7b-hf" / "snapshots").iterdir())
    (snapshot / "model.safetensors").write_bytes(b"weights")
    _, _, found, _ = doctor.check_published_checkpoints()
    assert found.startswith("cached: repllama, repllama-beir; not usable offline")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    _, _, found, _ = doctor.check_published_checkpoints()
    assert "downloaded from the Hugging Face hub on first use (needs internet" in found


def test_java_is_reported_as_the_runtime_says(tmp_path, monkeypatch):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\necho 'openjdk version \"25.0.2\" 2026-01-20' >&2\n")
    (home / "bin" / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))
    monkeypatch.setattr(java, "_found", None)
    what, ok, found, _ = doctor.check_java()
    assert ok and found.startswith(f"Java 25.0.2 from JAVA_HOME ({home})")
