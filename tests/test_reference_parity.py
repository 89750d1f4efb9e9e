"""Token-for-token parity with the reference code, with the tiny test tokenizer and the real Llama-2 tokenizer.

Each reference below is a plain re-implementation of the code that produced the published checkpoints and their
numbers (tevatron v1 with transformers 4.33, the model cards, tevatron v2, FlagEmbedding research/LLARA). The
tiny byte-level tokenizer cannot show SentencePiece seams (the dummy prefix, ``"passage: " + title`` joins, an
empty title's double space); the real Llama-2 tokenizer (vocab 32,000, with a tiny random model) does.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from pyserini_llama.data.beir import Document
from pyserini_llama.models.config import CheckpointConfig
from pyserini_llama.models.presets import BUILTIN, PROMPT_FORMATS

LLAMA2_TOKENIZER = REPO.parent / "shared" / "tokenizers" / "llama-2"
LAYOUTS = ("tevatron-v1", "model-card", "tevatron-v2")
QUERIES = ["what is a lobster roll", " protein  folding ", "heat transfer in the boundary layer " * 16, "é ünïcode"]
# (title, text); None: no title field. Empty and space-padded titles are where the layouts differ.
DOCS = [("Protein folding", "Proteins fold into structures in the cell."), ("", "Gene expression in cancer."),
        ("  ", "Shock waves."), (" Padded title ", "with text "), (None, "No title field at all."),
        ("Long", "heat transfer boundary layer shock supersonic velocity model results " * 12)]


def build_model(folder: Path, tokenizer_kind: str, task: str, seed: int = 3) -> Path:
    """A tiny random LLaMA with either the tiny test tokenizer or the real Llama-2 one (vocab 32,000)."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel

    from pyserini_llama.testing import build_tiny_llama

    if tokenizer_kind == "tiny":
        return build_tiny_llama(folder, task=task, style="llama", seed=seed)
    if not (LLAMA2_TOKENIZER / "tokenizer.model").exists():
        pytest.skip(f"the real Llama-2 tokenizer is not at {LLAMA2_TOKENIZER} (the project's shared folder)")
    folder.mkdir(parents=True)
    for f in LLAMA2_TOKENIZER.iterdir():
        shutil.copy(f, folder / f.name)
    config = LlamaConfig(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, tie_word_embeddings=True, num_labels=1)
    torch.manual_seed(seed)
    model_cls = {"causal-lm": LlamaForCausalLM, "embedding": LlamaModel,
                 "sequence-classification": LlamaForSequenceClassification}[task]
    model_cls(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module", params=["tiny", "llama-2"])
def tokenizer_kind(request):
    return request.param


def last_state(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]


# --- RepLLaMA ------------------------------------------------------------------------------------------------

def reference_rows(tok, layout: str, texts, max_len: int):
    """The rows each codebase builds from already formatted texts."""
    eos = tok.eos_token_id
    if layout == "tevatron-v1":  # CorpusPreProcessor / QueryPreProcessor + EncodeDataset.prepare_for_model
        return [tok.encode(t, add_special_tokens=False, max_length=max_len - 3, truncation=True) + [eos]
                for t in texts]
    if layout == "model-card":  # tokenizer(f'passage: {title} {passage}</s>'), no truncation
        return [tok(t + tok.eos_token)["input_ids"] for t in texts]
    ids = tok(texts, max_length=max_len - 1, truncation=True, add_special_tokens=True)["input_ids"]  # v2
    return [row + [eos] for row in ids]


def reference_passage_text(layout: str, title, text: str) -> str:
    if layout == "tevatron-v2":  # EncodeDataset: title + ' ' + text if 'title' in content, then .strip()
        return "passage: " + (title + " " + text if title is not None else text).strip()
    return "passage: " + (title + " " + text if title is not None else text)  # v1 separator ' '; the card


@pytest.fixture(scope="module")
def repllama_folder(tokenizer_kind, tmp_path_factory):
    return build_model(tmp_path_factory.mktemp(f"repllama-{tokenizer_kind}") / "m", tokenizer_kind, "embedding")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_repllama_rows_and_vectors_match_each_layout(repllama_folder, tokenizer_kind, layout):
    from transformers import AutoModel

    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    max_q, max_p = 24, 64 if layout != "model-card" else 4096  # the card does not truncate
    CheckpointConfig(query_max_length=max_q, passage_max_length=max_p, dtype="float32",
                     input_layout=layout).save(repllama_folder)
    encoder = RepLlamaEncoder.from_checkpoint(str(repllama_folder), device="cpu")
    tok = encoder.tokenizer
    docs = [(t, x) if t is not None else x for t, x in DOCS]
    want_p = reference_rows(tok, layout, [reference_passage_text(layout, t, x) for t, x in DOCS], max_p)
    want_q = reference_rows(tok, layout, ["query: " + q for q in QUERIES], max_q)
    assert encoder.passage_token_ids(docs) == want_p
    if layout != "model-card":
        assert encoder.query_token_ids(QUERIES) == want_q
        assert max(map(len, want_p)) == max_p - (2 if layout == "tevatron-v1" else 0)
    else:  # cut like v2 when a row is too long: BOS ... EOS, at most the length
        assert encoder.query_token_ids(QUERIES[:2]) == want_q[:2]
        cut = encoder.query_token_ids(QUERIES[2:3])[0]
        assert len(cut) == max_q and cut[-1] == tok.eos_token_id and cut[:-1] == want_q[2][:max_q - 1]
    assert all(row[0] != tok.bos_token_id for row in want_p) == (layout == "tevatron-v1")

    model = AutoModel.from_pretrained(str(repllama_folder)).eval()
    want = np.stack([(s / s.norm()).numpy() for s in (last_state(model, ids) for ids in want_p)])
    np.testing.assert_allclose(encoder.encode_passages(docs, max_tokens_per_batch=256), want, atol=2e-5)


def test_layouts_differ_where_the_references_differ(repllama_folder, tokenizer_kind):
    """An empty title: v1 and the card keep 'passage:  text' (a different token), v2 strips it."""
    from pyserini_llama.encoders.inputs import passage_token_ids
    from pyserini_llama.models.load import load_tokenizer

    tok = load_tokenizer(repllama_folder)
    rows = {layout: passage_token_ids(tok, CheckpointConfig(input_layout=layout), [("", "Gene expression")])[0]
            for layout in LAYOUTS}
    assert rows["model-card"][0] == rows["tevatron-v2"][0] == tok.bos_token_id
    assert rows["tevatron-v1"] == rows["model-card"][1:]
    if tokenizer_kind == "llama-2":  # SentencePiece: '▁▁' + 'Gene' is not '▁Gene'
        assert rows["model-card"] != rows["tevatron-v2"]
        assert tok.convert_ids_to_tokens(rows["tevatron-v1"])[2] == "▁▁"


def test_published_repllama_defaults_to_the_layout_of_its_numbers():
    for name in ("repllama", "repllama-beir", "repllama-doc", "rankllama"):
        assert BUILTIN[name].config.input_layout == "tevatron-v1", name
    assert CheckpointConfig().input_layout == "tevatron-v2"  # our trainers' layout


# --- RankLLaMA -----------------------------------------------------------------------------------------------

def tevatron_v1_pair(tok, query: str, doc: Document, q_max: int, p_max: int):
    """RerankerInferencePreProcessor + RerankerInferenceDataset (transformers 4.33: prepare_for_model adds no
    special tokens for LLaMA, so the explicit BOS ids are all there is)."""
    q = tok.encode("query: " + query, add_special_tokens=False, max_length=q_max, truncation=True)
    p = tok.encode("document: " + doc.title + " " + doc.text, add_special_tokens=False, max_length=p_max - 3,
                   truncation=True)
    return [tok.bos_token_id] + q + [tok.bos_token_id] + p


@pytest.fixture(scope="module")
def rankllama(tokenizer_kind, tmp_path_factory):
    from pyserini_llama.rerankers import RankLlamaReranker

    folder = build_model(tmp_path_factory.mktemp(f"rank-{tokenizer_kind}") / "m", tokenizer_kind,
                         "sequence-classification")
    replace(BUILTIN["rankllama"].config, dtype="float32", base_model=None).save(folder)
    return RankLlamaReranker.from_checkpoint(str(folder), device="cpu")


def test_rankllama_pairs_match_tevatron_v1(rankllama, monkeypatch):
    corpus = {f"d{i}": Document(f"d{i}", t if t is not None else "", x) for i, (t, x) in enumerate(DOCS)}
    queries = {f"q{i}": q for i, q in enumerate(QUERIES)}
    run = {qid: [(d, 1.0) for d in corpus] for qid in queries}
    seen = []
    monkeypatch.setattr(rankllama, "score_token_ids",
                        lambda ids, progress=False: seen.extend(ids) or np.zeros(len(ids), dtype=np.float32))
    rankllama.rerank(queries, run, corpus, hits=len(corpus), progress=False)
    tok, cfg = rankllama.tokenizer, rankllama.config
    want = [tevatron_v1_pair(tok, queries[q], corpus[d], cfg.query_max_length, cfg.passage_max_length)
            for q in queries for d in corpus]
    assert sorted(seen) == sorted(want)


def test_rankllama_scores_the_last_real_token_even_when_it_is_the_pad_id(rankllama):
    """Llama-2 pads with <unk> (id 0): a document ending in <unk> must be scored at that token, not before it."""
    tok, model = rankllama.tokenizer, rankllama.model
    assert rankllama.pad_token_id == tok.unk_token_id == 0
    q = tok("query: protein", add_special_tokens=False)["input_ids"]
    rows = [[1] + q + [1] + tok("document: Proteins fold", add_special_tokens=False)["input_ids"] + [0],
            [1] + q + [1] + tok("document: heat transfer in the boundary layer", add_special_tokens=False)[
                "input_ids"],
            [1] + q + [1, 0]]
    if "<unk>" in tok.get_vocab():  # the real tokenizer reads '<unk>' in a text as that token
        assert rankllama.encode_pairs(["query: protein"], ["document: Proteins fold <unk>"])[0][-1] == 0
    with torch.no_grad():
        want = [model.score(model.model(input_ids=torch.tensor([r])).last_hidden_state[0, -1]).item()
                for r in rows]
    got = rankllama.score_token_ids(rows)
    np.testing.assert_allclose(got, want, atol=1e-5)


# --- LLaRA ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llara(tokenizer_kind, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pyserini_llama.encoders.llara import LlaraEncoder, add_prompt_tokens

    folder = build_model(tmp_path_factory.mktemp(f"llara-{tokenizer_kind}") / "m", tokenizer_kind, "causal-lm")
    tok, model = AutoTokenizer.from_pretrained(str(folder)), AutoModelForCausalLM.from_pretrained(str(folder))
    add_prompt_tokens(tok, model, PROMPT_FORMATS["released"])
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    replace(BUILTIN["llara"].config, dtype="float32", query_max_length=12, passage_max_length=20).save(folder)
    return LlaraEncoder.from_checkpoint(str(folder), device="cpu")


def model_card_llara_rows(tok, texts, suffix: str, max_length: int):
    """BAAI/LLARA's get_query_inputs / get_passage_inputs: the text capped at max_length, the prompt on top."""
    prefix_ids = tok('"', return_tensors=None)["input_ids"]
    suffix_ids = tok(suffix, return_tensors=None)["input_ids"][1:]
    return [prefix_ids + tok(t, return_tensors=None, max_length=max_length, truncation=True,
                             add_special_tokens=False)["input_ids"] + suffix_ids for t in texts]


def finetune_llara_rows(tok, texts, suffix: str, max_len: int):
    """FlagEmbedding research/LLARA/finetune/data.py: the whole row capped at max_len."""
    prefix_ids = tok('"', return_tensors=None)["input_ids"]
    suffix_ids = tok(suffix, return_tensors=None, add_special_tokens=False)["input_ids"]
    room = max_len - len(prefix_ids) - len(suffix_ids)
    return [prefix_ids + tok(t, return_tensors=None, max_length=room, truncation=True,
                             add_special_tokens=False)["input_ids"] + suffix_ids for t in texts]


def test_llara_caps_the_text_like_the_model_card_by_default(llara):
    tok, cfg = llara.tokenizer, llara.config
    assert cfg.max_length_scope == "text"
    passages = [x if t is None else f"{t or ''} {x}".strip() for t, x in DOCS]
    assert llara.query_token_ids(QUERIES) == model_card_llara_rows(tok, QUERIES, cfg.query_suffix, 12)
    assert llara.passage_token_ids([(t, x) if t is not None else x for t, x in DOCS]) == \
        model_card_llara_rows(tok, passages, cfg.passage_suffix, 20)
    rows = llara.query_token_ids(QUERIES)
    assert max(map(len, rows)) > 12  # the prompt comes on top of the 12 text tokens

    row_scoped = llara.with_config(max_length_scope="row", query_max_length=80)
    assert row_scoped.query_token_ids(QUERIES) == finetune_llara_rows(tok, QUERIES, cfg.query_suffix, 80)
    assert max(map(len, row_scoped.query_token_ids(QUERIES))) == 80


def test_llara_vectors_match_the_model_card(llara):
    """The card's embedding: left-padded batch, mean of the last 8 states, normalised; here one text at a time."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(llara.name_or_path)).eval()
    want = []
    for ids in model_card_llara_rows(llara.tokenizer, QUERIES, llara.config.query_suffix, 12):
        with torch.no_grad():
            states = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -8:]
        want.append(torch.nn.functional.normalize(states.mean(0), dim=-1).numpy())
    np.testing.assert_allclose(llara.encode_queries(QUERIES), np.stack(want), atol=2e-5)
