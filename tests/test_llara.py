"""LLaRA: one-pass mask and positions, token layout, encoder parity, adaptation loss and resume (tiny models)."""
from __future__ import annotations

import json

import pytest
import torch

from pyserini_llama.encoders.llara import LlaraEncoder, add_prompt_tokens
from pyserini_llama.models.presets import PROMPT_FORMATS
from pyserini_llama.train.collator import LlaraCollator, attention_and_positions
from pyserini_llama.train.llara_data import PretrainExample, document_examples, remove_stop_words, split_sentences

TEXTS = ["the cell and gene expression in mice.", "heat transfer in the boundary layer of a wing",
         "shock"]


def expected_mask_and_positions(lengths, width, side):
    """The specification, one element at a time."""
    allowed = torch.zeros(len(lengths), 1, width, width, dtype=torch.bool)
    positions = torch.zeros(len(lengths), width, dtype=torch.long)
    for r, (n, a, b) in enumerate(lengths):
        start = width - (n + a + b) if side == "left" else 0
        seg = {}
        for i in range(width):
            j = i - start
            seg[i] = "pad" if j < 0 or j >= n + a + b else "in" if j < n else "A" if j < n + a else "B"
        for q in range(width):
            positions[r, q] = start + n + (q - start - n - a) if seg[q] == "B" else q
            for k in range(width):
                if seg[q] == "pad":
                    allowed[r, 0, q, k] = q == k
                else:
                    allowed[r, 0, q, k] = k <= q and seg[k] != "pad" and not (seg[q] == "B" and seg[k] == "A")
    return allowed, positions


@pytest.mark.parametrize("side", ["left", "right"])
def test_mask_and_positions_element_wise(side):
    lengths = [(3, 2, 2), (1, 2, 2), (4, 3, 2)]
    got_mask, got_pos = attention_and_positions(torch.tensor(lengths), 10, side)
    want_mask, want_pos = expected_mask_and_positions(lengths, 10, side)
    assert torch.equal(got_mask, want_mask)
    assert torch.equal(got_pos, want_pos)
    if side == "left":  # row 0: 3 pads, input 3..5, A 6..7 (positions 6, 7), B 8..9 reusing positions 6, 7
        assert got_pos[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 6, 7]
        assert got_mask[0, 0, 9].tolist() == [False] * 3 + [True] * 3 + [False, False, True, True]


def test_sentence_split_and_chunks():
    assert split_sentences('He said "stop." then . a b! Why? 3.5 is (fine.) end') == \
        ['He said "stop."', "then .", "a b!", "Why?", "3.5 is (fine.)", "end"]
    examples = document_examples("one two three. four five. six seven eight nine.", chunk_words=5)
    assert [(e.text, e.predict) for e in examples] == [("one two three. four five.", "six seven eight nine."),
                                                       ("six seven eight nine.", "")]
    assert remove_stop_words("The cell's gene, and (its) expression!") == "cell gene expression"


@pytest.fixture(scope="module")
def tiny_released(tmp_path_factory):
    """A tiny LLaMA with LLaRA's 16 tokens added, saved as a released-format LLaRA checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pyserini_llama.testing import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("llara"), task="causal-lm", style="llama")
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    add_prompt_tokens(tok, model, PROMPT_FORMATS["released"])
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    PROMPT_FORMATS["released"].checkpoint_config(tok.eos_token, dtype="float32", query_max_length=96,
                                                 passage_max_length=128).save(folder)
    return folder


def _model_and_tokenizer(folder):
    from transformers import AutoModelForCausalLM

    from pyserini_llama.models.load import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval(), load_tokenizer(folder, "left")


def test_collator_layout(tiny_released):
    model, tok = _model_and_tokenizer(tiny_released)
    batch = LlaraCollator(tok, PROMPT_FORMATS["released"], max_length=160)(
        [PretrainExample(t, t, TEXTS[0]) for t in TEXTS])
    ids = batch["input_ids"]
    new = tok.convert_tokens_to_ids([f"<s{i}>" for i in range(1, 17)])
    for r in range(len(TEXTS)):
        assert ids[r, batch["summarize_positions"][r]].tolist() == new[:8]
        assert ids[r, batch["predict_positions"][r]].tolist() == new[8:]
        text_ids = tok(TEXTS[r], add_special_tokens=False)["input_ids"]
        real = ids[r][batch["attention_mask"][r].bool()].tolist()
        assert real[:2 + len(text_ids)] == tok('"')["input_ids"] + text_ids  # BOS + '"', then the text
        labels = batch["lm_labels"][r][batch["lm_labels"][r] != -100].tolist()
        assert labels == text_ids
    assert batch["summarize_targets"][0, new].sum() == 0
    assert batch["predict_targets"][2].sum() > 0 and batch["summarize_targets"][2].sum() > 0


@pytest.mark.parametrize("side", ["left", "right"])
def test_one_pass_equals_two_separate_passes(tiny_released, side):
    """The masked EBAR suffix sees exactly [input | EBAR suffix], at the positions a separate pass gives it."""
    model, tok = _model_and_tokenizer(tiny_released)
    collate = LlaraCollator(tok, PROMPT_FORMATS["released"], max_length=160, padding_side=side)
    batch = collate([PretrainExample(t, t, t) for t in TEXTS])
    with torch.no_grad():
        hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_4d"],
                             position_ids=batch["position_ids"]).last_hidden_state
        for r, text in enumerate(TEXTS):
            body = tok(text, add_special_tokens=False)["input_ids"]
            for suffix, key in ((collate.ebae_ids, "summarize_positions"), (collate.ebar_ids, "predict_positions")):
                alone = torch.tensor([collate.prefix_ids + body + suffix])
                want = model.model(input_ids=alone).last_hidden_state[0, -8:]
                torch.testing.assert_close(hidden[r, batch[key][r]], want, atol=1e-5, rtol=1e-4)


def reference_embedding(model, tok, text, suffix):
    """The README's recipe for one text: BOS '"' + text + suffix, mean of the last 8 states, normalised."""
    prefix_ids = tok('"', return_tensors=None)["input_ids"]
    suffix_ids = tok(suffix, return_tensors=None)["input_ids"][1:]  # drop the BOS
    ids = prefix_ids + tok(text, add_special_tokens=False)["input_ids"] + suffix_ids
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return torch.nn.functional.normalize(out.hidden_states[-1][:, -8:, :].mean(1), dim=-1)[0]


def test_encoder_parity_with_reference_recipe(tiny_released):
    from transformers import AutoModel, AutoTokenizer

    enc = LlaraEncoder.from_checkpoint(str(tiny_released), device="cpu", dtype="float32")
    queries = enc.encode_queries(TEXTS, progress=False)
    passages = enc.encode_passages([("Title", TEXTS[0]), ("", TEXTS[1]), TEXTS[2]], progress=False)
    model, tok = AutoModel.from_pretrained(str(tiny_released)).eval(), AutoTokenizer.from_pretrained(str(tiny_released))
    cfg = enc.config
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(torch.from_numpy(queries[i]), reference_embedding(model, tok, text, cfg.query_suffix),
                                   atol=2e-5, rtol=1e-4)
    for i, text in enumerate(["Title " + TEXTS[0], TEXTS[1], TEXTS[2]]):
        torch.testing.assert_close(torch.from_numpy(passages[i]),
                                   reference_embedding(model, tok, text, cfg.passage_suffix), atol=2e-5, rtol=1e-4)


def _adapt(tiny_llama, corpus, out, *extra):
    from pyserini_llama.train.llara import main

    return main(["--model", str(tiny_llama), "--corpus", str(corpus), "--output", str(out), "--device", "cpu",
                 "--batch-size", "4", "--learning-rate", "3e-3", "--warmup-steps", "0",
                 "--chunk-words", "12", "--no-progress", "--no-gradient-checkpointing", "--dtype", "float32",
                 *extra])


def test_adaptation_loss_falls_and_checkpoint_encodes(tiny_llama, beir_folder, tmp_path):
    out = tmp_path / "adapted"
    _adapt(tiny_llama, beir_folder, out, "--format", "paper", "--max-length", "48", "--max-steps", "20",
           "--lm-weight", "0", "--bow-weight", "1")
    losses = [loss for _, loss in json.loads((out / "trainer_state.json").read_text())["loss_history"]]
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    enc = LlaraEncoder.from_checkpoint(str(out), dtype="float32")
    assert enc.config.kind == "llara" and enc.config.pooling_k == 1
    assert enc.config.passage_suffix == " The original sentence: </s>"
    vectors = enc.encode_passages(TEXTS, max_length=48, progress=False)
    assert vectors.shape == (3, 64)
    assert abs(float((vectors ** 2).sum(1).mean()) - 1) < 1e-5


def test_resume_continues_the_same_run(tiny_llama, beir_folder, tmp_path, monkeypatch):
    from pyserini_llama.train.loop import Trainer

    run = ("--max-steps", "4", "--save-steps", "2", "--max-length", "160", "--lora", "--lora-r", "4")
    _adapt(tiny_llama, beir_folder, tmp_path / "whole", *run)
    original = Trainer.step

    def interrupted(self, batches):
        if self.step_count == 3:
            raise KeyboardInterrupt
        return original(self, batches)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _adapt(tiny_llama, beir_folder, tmp_path / "cut", *run)
    monkeypatch.setattr(Trainer, "step", original)
    assert (tmp_path / "cut" / "checkpoint-2").is_dir()
    _adapt(tiny_llama, beir_folder, tmp_path / "cut", *run, "--resume")
    whole = json.loads((tmp_path / "whole" / "trainer_state.json").read_text())["loss_history"]
    cut = json.loads((tmp_path / "cut" / "trainer_state.json").read_text())["loss_history"]
    assert [s for s, _ in cut] == list(range(1, 5))
    assert [round(v, 5) for _, v in cut] == [round(v, 5) for _, v in whole]
    enc = LlaraEncoder.from_checkpoint(str(tmp_path / "cut"), dtype="float32")  # the merged LoRA model
    assert enc.config.extra["prompt_format"] == "released" and enc.config.pooling_k == 8
    assert enc.encode_queries(TEXTS[:1], max_length=96, progress=False).shape == (1, 64)


def test_pyserini_adapters_match_encoder(tiny_released):
    pytest.importorskip("pyserini.encode")
    from pyserini_llama.encoders.llara_adapters import LlaraDocumentEncoder, LlaraQueryEncoder

    enc = LlaraEncoder.from_checkpoint(str(tiny_released), dtype="float32")
    q = LlaraQueryEncoder(str(tiny_released), device="cpu")
    d = LlaraDocumentEncoder(str(tiny_released), device="cpu")
    torch.testing.assert_close(torch.from_numpy(q.encode(TEXTS[0])),
                               torch.from_numpy(enc.encode_queries(TEXTS[:1], progress=False)[0]))
    got = d.encode(texts=TEXTS[:2], titles=["Title", ""], max_length=128)
    want = enc.encode_passages([("Title", TEXTS[0]), ("", TEXTS[1])], progress=False)
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want))
