import json
import pickle

import pytest
import torch

from pyserini_llama.errors import UserError
from pyserini_llama.models.config import CheckpointConfig
from pyserini_llama.models.load import resolve_checkpoint
from pyserini_llama.models.load import load_checkpoint
from pyserini_llama.models.hub import resolve_model_path
from pyserini_llama.testing import build_tiny_llama


def make_adapter(base, folder, seed=0):
    """A LoRA adapter in the published RepLLaMA folder format (non-zero B so it changes outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(str(base))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    peft_model.save_pretrained(str(folder))
    return peft_model


def test_adapter_folder_is_merged_at_load(tmp_path, tiny_llama):
    reference = make_adapter(tiny_llama, tmp_path / "adapter").eval()
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(tiny_llama)
    loaded = load_checkpoint(str(tmp_path / "adapter"), device="cpu", dtype="float32")
    assert not hasattr(loaded.model, "peft_config"), "adapter must be merged"
    ids = torch.tensor([[1, 50, 60, 70, 2]])
    with torch.no_grad():
        want = reference(input_ids=ids).last_hidden_state
        got = loaded.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert loaded.tokenizer.pad_token == "<unk>" and loaded.tokenizer.padding_side == "right"


def test_adapter_for_another_base_model_is_refused(tmp_path, tiny_llama):
    make_adapter(tiny_llama, tmp_path / "adapter")
    other = build_tiny_llama(tmp_path / "other", hidden_size=32)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(other)
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="adapter does not fit base model"):
        load_checkpoint(str(tmp_path / "adapter"))


def test_checkpoint_config_round_trip_and_unknown_keys(tmp_path):
    config = CheckpointConfig(kind="rankllama", passage_prefix="document: ", append_eos=False)
    config.save(tmp_path)
    assert CheckpointConfig.load(tmp_path) == config
    (tmp_path / "pyserini_llama.json").write_text('{"kind": "repllama", "pooling_typo": 1}')
    with pytest.raises(UserError, match="unknown keys"):
        CheckpointConfig.load(tmp_path)


def test_folder_without_config_is_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a checkpoint"):
        load_checkpoint(str(tmp_path / "empty"))


def test_offline_hub_id_not_cached_gives_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        resolve_model_path("castorini/repllama-v1-7b-lora-passage")
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        resolve_checkpoint("repllama")


class Payload:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /tmp/pyserini-llama-pwned",))


def test_pickled_adapter_with_code_is_refused(tmp_path, tiny_llama):
    make_adapter(tiny_llama, tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    with open(tmp_path / "adapter" / "adapter_model.bin", "wb") as f:
        pickle.dump({"weights": Payload()}, f)
    with pytest.raises(UserError, match="refused to load pickled weights"):
        load_checkpoint(str(tmp_path / "adapter"))
    import os
    assert not os.path.exists("/tmp/pyserini-llama-pwned")


def test_invalid_names():
    with pytest.raises(UserError, match="no such folder, and not a hub id"):
        resolve_model_path("./does/not/exist")


def test_truncated_pickled_adapter_is_reported_as_damaged(tmp_path, tiny_llama):
    """A .bin cut short (a copy or download that stopped) is not mistaken for a pickle carrying code."""
    import io

    from safetensors.torch import load_file

    make_adapter(tiny_llama, tmp_path / "adapter")
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    (tmp_path / "adapter" / "adapter_model.bin").write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    with pytest.raises(UserError, match="adapter_model.bin: cannot be read .*damaged or incomplete"):
        load_checkpoint(str(tmp_path / "adapter"))
