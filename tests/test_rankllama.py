"""RankLLaMA: v1 input format, token-exact pair encoding, score parity with a plain per-pair computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyserini_llama.data.beir import Document
from pyserini_llama.errors import UserError
from pyserini_llama.models.presets import rankllama_v1_config as default_config
from pyserini_llama.rerankers import RankLlamaReranker, format_pair, pair_template, rerank_hits, tokenize_pairs
from pyserini_llama.runtime import dtype_name

CORPUS = {
    "d1": Document("d1", "Protein folding", "Proteins fold into structures in the cell."),
    "d2": Document("d2", "Gene expression", " ".join(["Gene expression is increased in cancer cells."] * 3)),
    "d3": Document("d3", "", "Heat transfer in the boundary layer of a wing."),
    "d4": Document("d4", "Shock", " ".join(["Supersonic flow produces shock waves."] * 3)),
    "d5": Document("d5", "Mice", "A study of disease risk in mice."),
}
QUERIES = {"q1": "protein structure in cells", "q2": "cancer gene expression risk", "q3": "heat"}
RUN = {"q1": [("d1", 9.0), ("d2", 8.0), ("d3", 7.0), ("d4", 6.0)],
       "q2": [("d2", 5.0), ("d5", 4.0), ("d4", 3.0)],
       "q3": [("d3", 1.0), ("d4", 0.5), ("d1", 0.2), ("d5", 0.1)]}


@pytest.fixture(scope="module", params=["llama", "smollm2"])
def tiny_reranker_dir(request, tmp_path_factory):
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp(f"rank-{request.param}"), task="sequence-classification",
                            style=request.param, seed=3)


def reference_score(folder, query: str, doc: Document) -> tuple[list, float]:
    """The straightforward computation: one pair call, batch 1, the model's own forward."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1).eval()
    # the model card's f"document: {title} {text}", without the double space an empty title would leave
    passage = f"document: {doc.title} {doc.text}" if doc.title else f"document: {doc.text}"
    enc = tok(f"query: {query}", passage, return_tensors="pt")
    with torch.no_grad():
        return enc["input_ids"][0].tolist(), model(**enc).logits[0, 0].item()


def test_format_pair_v1():
    config = default_config()
    assert format_pair("what is x", "Title", "Body text.", config) == ("query: what is x", "document: Title Body text.")
    assert format_pair("q", "", "Body", config) == ("query: q", "document: Body")


def test_pair_template_llama_bos_before_each_part(tiny_reranker_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_reranker_dir))
    expected = ([], [], []) if "smollm2" in tiny_reranker_dir.name else ([1], [1], [])  # SmolLM2 adds no BOS
    assert pair_template(tok) == expected


def test_tokenize_pairs_equals_pair_call_and_truncates(tiny_reranker_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_reranker_dir))
    q, p = format_pair("protein structure", "Title", "cells proteins fold", default_config())
    assert tokenize_pairs(tok, [q], [p], 32, 164) == [tok(q, p)["input_ids"]]

    long_q, long_p = q + " protein" * 50, p + " wing" * 300
    (ids,) = tokenize_pairs(tok, [long_q], [long_p], 8, 20)
    pre, mid, post = pair_template(tok)
    q_ids = tok(long_q, add_special_tokens=False)["input_ids"][:8]
    p_ids = tok(long_p, add_special_tokens=False)["input_ids"][:20 - 3]  # v1 keeps p_max_len - 3 tokens
    assert ids == pre + q_ids + mid + p_ids + post


def test_rerank_scores_match_independent_computation(tiny_reranker_dir):
    # a small token budget: several batches, padded pairs of different lengths
    reranker = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir), batch_tokens=200)
    reranked = reranker.rerank(QUERIES, RUN, CORPUS, hits=3, progress=False)
    for qid, hits in RUN.items():
        for docid, _ in hits[:3]:
            ids, expected = reference_score(tiny_reranker_dir, QUERIES[qid], CORPUS[docid])
            got = dict(reranked[qid])[docid]
            assert got == pytest.approx(expected, abs=1e-5), (qid, docid)
            q, p = format_pair(QUERIES[qid], CORPUS[docid].title, CORPUS[docid].text, reranker.config)
            assert reranker.encode_pairs([q], [p]) == [ids]
    direct = reranker.score(QUERIES["q1"], [(CORPUS[d].title, CORPUS[d].text) for d in ("d1", "d2")])
    assert direct == pytest.approx([dict(reranked["q1"])["d1"], dict(reranked["q1"])["d2"]], abs=1e-5)


def test_rerank_orders_top_hits_and_keeps_the_tail(tiny_reranker_dir):
    reranker = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir))
    reranked = reranker.rerank(QUERIES, RUN, CORPUS, hits=2, progress=False)
    for qid, hits in RUN.items():
        out = reranked[qid]
        assert sorted(d for d, _ in out) == sorted(d for d, _ in hits)  # nothing dropped
        scores = [s for _, s in out]
        assert scores == sorted(scores, reverse=True)
        assert {d for d, _ in out[:2]} == {d for d, _ in hits[:2]}
        assert [d for d, _ in out[2:]] == [d for d, _ in hits[2:]]  # tail keeps first-stage order


def test_rerank_bad_input(tiny_reranker_dir):
    reranker = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir))
    partial = {k: v for k, v in CORPUS.items() if k not in ("d4", "d5")}
    with pytest.raises(UserError, match=r"2 documents of the run are not in the corpus \(e.g. 'd4', 'd5'\)"):
        reranker.rerank(QUERIES, RUN, partial, hits=10, progress=False)
    kept = reranker.rerank(QUERIES, RUN, partial, hits=10, skip_missing=True, progress=False)
    assert [d for d, _ in kept["q2"]][-2:] == ["d5", "d4"]  # unscored, first-stage order, below the rest
    with pytest.raises(UserError, match="1 queries of the run are not in the topics"):
        reranker.rerank({"q1": "a", "q2": "b"}, RUN, CORPUS, progress=False)
    with pytest.raises(UserError, match="empty"):
        reranker.rerank(QUERIES, {}, CORPUS, progress=False)
    with pytest.raises(ValueError, match="hits must be positive"):
        reranker.rerank(QUERIES, RUN, CORPUS, hits=0, progress=False)


def test_bf16_scores_are_finite_and_close(tiny_reranker_dir):
    fp32 = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir))
    bf16 = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir), dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16
    docs = [(d.title, d.text) for d in CORPUS.values()]
    a, b = fp32.score("protein cells", docs), bf16.score("protein cells", docs)
    assert np.isfinite(b).all() and b.dtype == np.float32
    assert b == pytest.approx(a, abs=0.05)
    assert dtype_name(None, "cpu") == "float32" and dtype_name("float16", "cpu") == "float32"


def test_non_finite_scores_are_an_error(tiny_reranker_dir):
    reranker = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir))
    with torch.no_grad():
        reranker.model.score.weight.fill_(float("inf"))
    with pytest.raises(UserError, match="non-finite"):
        reranker.score("q", [("", "text")])


def test_score_batch_is_differentiable(tiny_reranker_dir):
    reranker = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir))
    ids = reranker.encode_pairs(["query: a", "query: b c"], ["document: x y z", "document: w"])
    logits = reranker.score_batch(reranker.collate(ids))
    assert logits.shape == (2,) and logits.requires_grad
    logits.sum().backward()
    assert reranker.model.score.weight.grad is not None


class LuceneLikeHit:
    def __init__(self, docid, score, raw):
        self.docid, self.score, self._raw = docid, score, raw
        self.lucene_document = self

    def get(self, field):
        return self._raw if field == "raw" else None


class DenseLikeHit:
    def __init__(self, docid, score):
        self.docid, self.score = docid, score


def test_rerank_hits_reads_raw_or_a_corpus(tiny_reranker_dir):
    import json

    reranker = RankLlamaReranker.from_checkpoint(str(tiny_reranker_dir))
    raw_hits = [LuceneLikeHit(d, s, json.dumps({"id": d, "contents": CORPUS[d].contents})) for d, s in RUN["q1"]]
    from_raw = rerank_hits(reranker, QUERIES["q1"], raw_hits, k=3)
    from_corpus = rerank_hits(reranker, QUERIES["q1"], [DenseLikeHit(d, s) for d, s in RUN["q1"]], docs=CORPUS,
                              k=3)
    assert [d for d, _ in from_raw] == [d for d, _ in from_corpus]
    assert [s for _, s in from_raw] == pytest.approx([s for _, s in from_corpus], abs=1e-6)
    assert from_raw[-1][0] == "d4"  # beyond k: kept last
    with pytest.raises(UserError, match="no stored document"):
        rerank_hits(reranker, "q", [DenseLikeHit("d1", 1.0)])


def test_lora_adapter_is_merged_at_load(tmp_path):
    """The published format: a peft SEQ_CLS adapter (LoRA + trained score head) over a causal-LM base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from pyserini_llama.testing import build_tiny_llama

    base = build_tiny_llama(tmp_path / "base", task="causal-lm", style="llama", seed=5)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1, pad_token_id=0)
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                                                  target_modules=["q_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    peft_model.eval()

    reranker = RankLlamaReranker.from_checkpoint(str(tmp_path / "adapter"))
    q, p = format_pair("protein cells", "Title", "proteins fold in the cell", reranker.config)
    (ids,) = reranker.encode_pairs([q], [p])
    with torch.no_grad():
        expected = peft_model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert reranker.score("protein cells", [("Title", "proteins fold in the cell")])[0] == \
        pytest.approx(expected, abs=1e-4)
