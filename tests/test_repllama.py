"""RepLLaMA encoder: exact recipe parity (tokens and vectors) with a straightforward reference computation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyserini_llama.batching import map_batches, pad_batch, plan_batches
from pyserini_llama.encoders.inputs import format_passage, format_query, pad_id, pool, tokenize_for_embedding
from pyserini_llama.encoders.repllama import RepLlamaEncoder
from pyserini_llama.errors import UserError
from pyserini_llama.models.config import CheckpointConfig

MAX_Q, MAX_P = 12, 24
QUERIES = ["protein cell", "heat transfer in the boundary layer of a supersonic wing " * 3, "x"]
PASSAGES = [("Protein folding", "Proteins fold into structures in the cell."),
            ("", "Gene expression is increased in cancer cells."),
            ("Heat", "heat transfer boundary layer shock supersonic velocity model results " * 4),
            ("Mice", "mice")]


def reference_embeddings(folder, texts, max_length):
    """Batch size 1, no padding: tokenize, cut, append EOS by hand, take the last position, normalise."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    all_ids, vectors = [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_length - 1] + [tokenizer.eos_token_id]
        with torch.no_grad():
            state = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        all_ids.append(ids)
        vectors.append((state / state.norm()).numpy())
    return all_ids, np.stack(vectors)


@pytest.fixture(scope="module", params=["llama", "smollm2"])
def checkpoint(request, tmp_path_factory):
    from pyserini_llama.testing import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp(f"tiny-{request.param}"), task="embedding",
                              style=request.param, seed=3)
    CheckpointConfig(query_max_length=MAX_Q, passage_max_length=MAX_P, dtype="float32").save(folder)
    return request.param, folder


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return RepLlamaEncoder.from_checkpoint(str(checkpoint[1]))


def test_prompts():
    config = CheckpointConfig(query_suffix=" Q", passage_suffix=" P")
    assert format_query("what is x", config) == "query: what is x Q"
    assert format_passage("Title", "the text", config) == "passage: Title the text P"
    assert format_passage("", " the text", config) == "passage: the text P"


def test_tokens_match_reference(checkpoint, encoder):
    style, folder = checkpoint
    texts = [format_query(q, encoder.config) for q in QUERIES]
    ours = tokenize_for_embedding(encoder.tokenizer, texts, MAX_Q)
    ref, _ = reference_embeddings(folder, texts, MAX_Q)
    assert ours == ref
    assert all(row[-1] == encoder.tokenizer.eos_token_id and len(row) <= MAX_Q for row in ours)
    assert max(len(row) for row in ours) == MAX_Q  # the long query was truncated, its EOS kept
    assert all((row[0] == 1) == (style == "llama") for row in ours)  # BOS only where the tokenizer adds it


@pytest.mark.parametrize("budget", [None, 40])
def test_vectors_match_reference(checkpoint, encoder, budget):
    folder = checkpoint[1]
    q = encoder.encode_queries(QUERIES, max_tokens_per_batch=budget, progress=False)
    p = encoder.encode_passages(PASSAGES, max_tokens_per_batch=budget, progress=False)
    _, q_ref = reference_embeddings(folder, [format_query(x, encoder.config) for x in QUERIES], MAX_Q)
    _, p_ref = reference_embeddings(folder, [format_passage(t, x, encoder.config) for t, x in PASSAGES], MAX_P)
    assert q.dtype == np.float32 and q.shape == (len(QUERIES), encoder.dimension)
    np.testing.assert_allclose(q, q_ref, atol=1e-5)
    np.testing.assert_allclose(p, p_ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)


def test_left_padding_gives_the_same_vectors(encoder):
    right = encoder.encode_passages(PASSAGES, progress=False)
    left = encoder.with_config(padding_side="left").encode_passages(PASSAGES, progress=False)
    np.testing.assert_allclose(left, right, atol=1e-5)


def test_pad_batch_pads_both_sides():
    right = pad_batch([[5, 6, 2], [7, 2]], 0, "right", multiple_of=4)
    assert right["input_ids"].tolist() == [[5, 6, 2, 0], [7, 2, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    left = pad_batch([[5, 6, 2], [7, 2]], 0, "left")
    assert left["input_ids"].tolist() == [[5, 6, 2], [0, 7, 2]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]


def test_pool_takes_the_last_real_token_not_a_pad():
    hidden = torch.arange(5, dtype=torch.float32).view(1, 5, 1).repeat(3, 1, 2)  # state value = position
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert pool(hidden, mask, "eos")[:, 0].tolist() == [2, 4, 4]
    assert pool(hidden, mask, "mean_last_k", k=2)[:, 0].tolist() == [1.5, 3.5, 3.5]
    assert pool(hidden, mask, "mean_last_k", k=8)[:, 0].tolist() == [1.0, 3.0, 2.0]  # fewer than k tokens
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "cls")


def test_plan_batches_respects_the_budget_and_covers_everything():
    lengths = [5, 300, 12, 290, 2048, 7, 7, 100]
    batches = plan_batches(lengths, max_tokens=640, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [4]  # longer than the budget: alone, first
    for b in batches[1:]:
        assert len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 640
    rows = map_batches([[0] * n for n in lengths], lambda b: np.array([[len(r)] for r in b], dtype=np.float32),
                       max_tokens=640, max_batch_size=3)
    assert rows[:, 0].tolist() == lengths  # back in input order


def test_plan_batches_bounds_the_padding_share_when_asked():
    """A CPU's bound: no batch is more than a tenth padding, unless a row stands alone; nothing is lost."""
    lengths = [512, 40, 300, 35, 500, 120, 38, 290, 118, 7]
    batches = plan_batches(lengths, max_tokens=8192, max_padding=0.1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width, real = max(lengths[i] for i in b), sum(lengths[i] for i in b)
        assert len(b) == 1 or width * len(b) - real <= 0.1 * width * len(b)
    assert len(plan_batches(lengths, max_tokens=8192)) == 1  # unbounded: one batch, 61% padding


def test_embed_keeps_gradients_for_training(encoder):
    ids = tokenize_for_embedding(encoder.tokenizer, ["query: protein"], MAX_Q)
    out = encoder.embed(pad_batch(ids, pad_id(encoder.tokenizer)))
    out.sum().backward()
    assert out.requires_grad and encoder.model.layers[0].self_attn.q_proj.weight.grad is not None
    encoder.model.zero_grad(set_to_none=True)


def test_published_adapter_format(tmp_path):
    """A peft LoRA folder naming its base (castorini's format) is merged at load, giving the merged vectors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from pyserini_llama.testing import build_tiny_llama

    base = build_tiny_llama(tmp_path / "base", task="embedding", style="llama", seed=5)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                         "down_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModel.from_pretrained(str(base)), lora)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] \
        == str(base)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(tmp_path / "merged"))
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(tmp_path / "merged"))

    encoder = RepLlamaEncoder.from_checkpoint(str(tmp_path / "adapter"), dtype="float32")
    assert encoder.config.passage_max_length == 196 and encoder.config.pooling == "eos"  # the published recipe
    texts = [format_passage(t, x, encoder.config) for t, x in PASSAGES]
    _, ref = reference_embeddings(tmp_path / "merged", texts, 196)
    np.testing.assert_allclose(encoder.encode_passages(PASSAGES, progress=False), ref, atol=1e-5)
    _, base_ref = reference_embeddings(base, texts, 196)
    assert np.abs(ref - base_ref).max() > 1e-3  # the adapter changed the vectors


def test_builtin_name_offline_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(UserError, match="castorini/repllama-v1-7b-lora-passage"):
        RepLlamaEncoder.from_checkpoint("repllama")
