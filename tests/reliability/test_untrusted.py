"""Untrusted checkpoints: no checkpoint code runs unless asked, and pickled weights that could run code are refused.

Every payload here writes a marker file when executed; each test asserts the marker never appears (and, for the
remote-code payload, that it does appear once ``trust_remote_code=True`` is passed, so the payload is live).
The payloads refused are counted in the reliability report.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env
from pyserini_llama.errors import UserError
from pyserini_llama.models.load import load_checkpoint
import report
from runner import TRACEBACK

REFUSED = []


def refused(what: str) -> None:
    REFUSED.append(what)
    report.record("untrusted", payloads_refused=len(REFUSED), refused=sorted(REFUSED), payloads_run_without_the_flag=0)


class Payload:
    """Unpickling this runs ``exec``: what a malicious ``.bin`` file does to ``torch.load(weights_only=False)``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


REMOTE_CODE = """
from pathlib import Path
Path({marker!r}).write_text("remote code ran")
from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast


class EvilConfig(LlamaConfig):
    model_type = {model_type!r}


class EvilModel(LlamaModel):
    config_class = EvilConfig


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "model", task="embedding")


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "MARKER"


def remote_code_checkpoint(base: Path, folder: Path, marker: Path, model_type: str) -> Path:
    """A copy of ``base`` whose config and tokenizer point (auto_map) at a module that writes ``marker``."""
    shutil.copytree(base, folder)
    (folder / "evil.py").write_text(REMOTE_CODE.format(marker=str(marker), model_type=model_type))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return folder


def pickled(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"weight": Payload(marker)}, path)
    return path


def test_remote_code_of_a_known_architecture_is_not_run(base, tmp_path, marker):
    folder = remote_code_checkpoint(base, tmp_path / "ckpt", marker, "llama")
    loaded = load_checkpoint(str(folder))
    assert type(loaded.model).__name__ == "LlamaModel"  # the library's own class, not the checkpoint's
    assert not marker.exists()
    refused("auto_map on a known architecture")


def test_remote_code_architecture_needs_the_flag(base, tmp_path, marker):
    folder = remote_code_checkpoint(base, tmp_path / "ckpt", marker, "evil-llama")
    with pytest.raises(UserError, match=r"ckpt: architecture .evil-llama. is custom code.*--trust-remote-code"):
        load_checkpoint(str(folder))
    assert not marker.exists()
    refused("auto_map on an unknown architecture")
    # the payload is live: with the flag, the checkpoint's code runs (which is what the flag is for)
    try:
        load_checkpoint(str(folder), trust_remote_code=True)
    except Exception:  # noqa: BLE001 - whether its model then loads does not matter here
        pass
    assert marker.exists()


def test_malicious_pickle_in_an_adapter_folder_is_refused(base, tmp_path, marker):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "FEATURE_EXTRACTION", "base_model_name_or_path": str(base), "r": 4,
        "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}))
    pickled(adapter / "adapter_model.bin", marker)
    with pytest.raises(UserError, match=r"adapter_model\.bin: refused to load pickled weights"):
        load_checkpoint(str(adapter))
    assert not marker.exists()
    refused("pickle in an adapter folder")


def test_malicious_pickle_in_a_full_model_folder_is_refused(base, tmp_path, marker):
    folder = tmp_path / "full"
    shutil.copytree(base, folder)
    (folder / "model.safetensors").unlink()
    pickled(folder / "pytorch_model.bin", marker)
    with pytest.raises(UserError, match=r"pytorch_model\.bin: refused to load pickled weights"):
        load_checkpoint(str(folder))
    assert not marker.exists()
    refused("pickle in a full model folder")


def test_pickle_next_to_safetensors_is_never_read(base, tmp_path, marker):
    folder = tmp_path / "both"
    shutil.copytree(base, folder)
    pickled(folder / "pytorch_model.bin", marker)
    load_checkpoint(str(folder))
    assert not marker.exists()
    refused("pickle next to safetensors")


def test_cli_refuses_a_malicious_checkpoint_in_one_line(base, tmp_path, marker):
    """Through the real command line: exit 2, one ``error:`` line, no traceback, no index, no payload run."""
    folder = tmp_path / "full"
    shutil.copytree(base, folder)
    (folder / "model.safetensors").unlink()
    pickled(folder / "pytorch_model.bin", marker)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "some text"}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pyserini_llama.encode", "corpus", "--corpus", str(corpus),
                           "--index", str(tmp_path / "idx"), "--encoder", str(folder), "--device", "cpu"],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert TRACEBACK not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "pytorch_model.bin: refused to load pickled weights" in last
    assert not marker.exists() and not (tmp_path / "idx").exists()
    refused("pickle through the encode CLI")
