"""Trainers on tiny random models and a toy BEIR folder: the loss falls, resume continues the exact
trajectory, checkpoints load through load_checkpoint and encode/score, and the distributed path runs."""
from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from pyserini_llama.errors import UserError
from pyserini_llama.testing import WORDS, build_tiny_llama

VOCAB = WORDS.split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls on a shared CPU run many times faster on one thread than on contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_beir(root: Path, n_docs: int = 48, n_queries: int = 24, seed: int = 0) -> Path:
    """Documents of random words; each query repeats words of its one relevant document."""
    rng = random.Random(seed)
    (root / "qrels").mkdir(parents=True)
    docs = []
    with open(root / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            words = rng.sample(VOCAB, 12)
            docs.append(words)
            f.write(json.dumps({"_id": f"d{i}", "title": " ".join(words[:2]), "text": " ".join(words)}) + "\n")
    with open(root / "queries.jsonl", "w") as f, open(root / "qrels" / "train.tsv", "w") as q, \
            open(root / "qrels" / "test.tsv", "w") as t:
        q.write("query-id\tcorpus-id\tscore\n")
        t.write("query-id\tcorpus-id\tscore\n")
        for i in range(n_queries + 2):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(docs[i][2:6])}) + "\n")
            (q if i < n_queries else t).write(f"q{i}\td{i}\t1\n")
    return root


def _write_negatives(root: Path, path: Path, n_queries: int = 24, per_query: int = 6) -> Path:
    with open(path, "w") as f:
        for i in range(n_queries):
            negs = [f"d{(i + k) % 48}" for k in range(1, per_query + 1)]
            f.write(json.dumps({"query_id": f"q{i}", "positives": [f"d{i}"], "negatives": negs}) + "\n")
    return path


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    root = _write_beir(tmp_path_factory.mktemp("beir") / "toy")
    _write_negatives(root, root / "negatives.jsonl")
    return root


@pytest.fixture(scope="module")
def base_embedding(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "emb", task="embedding", hidden_size=64)


@pytest.fixture(scope="module")
def base_causal(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "lm", task="causal-lm", hidden_size=64)


def _argv(base: Path, beir: Path, output: Path, *extra: str) -> list:
    return ["--model", str(base), "--collection", str(beir), "--negatives", str(beir / "negatives.jsonl"),
            "--output", str(output), "--dtype", "float32", "--device", "cpu", "--group-size", "4",
            "--batch-size", "4", "--query-max-length", "16", "--passage-max-length", "24",
            "--no-progress", *extra]


def _losses(output: Path) -> list:
    return [loss for _, loss in json.loads((output / "trainer_state.json").read_text())["loss_history"]]


def test_repllama_loss_falls_and_checkpoint_loads(base_embedding, beir, tmp_path):
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.train import repllama

    out = tmp_path / "ckpt"
    repllama.main(_argv(base_embedding, beir, out, "--learning-rate", "3e-3", "--epochs", "4",
                        "--save-steps", "0"))
    losses = _losses(out)
    assert len(losses) == 4 * (24 // 4)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    assert {"adapter_config.json", "adapter_model.safetensors", "pyserini_llama.json",
            "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("checkpoint-*"))
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base_embedding)
    assert adapter["r"] == 32 and adapter["lora_alpha"] == 64 and "k_proj" not in adapter["target_modules"]
    config = CheckpointConfig.load(out)
    assert (config.kind, config.query_max_length, config.passage_max_length) == ("repllama", 16, 24)

    # The trained model, loaded and merged like any published checkpoint, ranks the positive first more
    # often than the untrained base does.
    trained = RepLlamaEncoder.from_checkpoint(str(out))
    untrained = RepLlamaEncoder(*_load_plain(base_embedding), config)
    corpus = [json.loads(line) for line in open(beir / "corpus.jsonl")]
    queries = [json.loads(line)["text"] for line in open(beir / "queries.jsonl")][:24]
    docs = [(d["title"], d["text"]) for d in corpus]

    def hits_at_1(enc):
        scores = enc.encode_queries(queries, progress=False) @ enc.encode_passages(docs,
                                                                                        progress=False).T
        return int((scores.argmax(1) == range(24)).sum())

    assert hits_at_1(trained) > hits_at_1(untrained)


def _load_plain(folder: Path):
    from transformers import AutoModel

    from pyserini_llama.models.load import load_tokenizer
    return AutoModel.from_pretrained(str(folder)).eval(), load_tokenizer(folder)


def test_resume_continues_the_same_trajectory(base_embedding, beir, tmp_path, monkeypatch):
    from pyserini_llama.train import repllama
    from pyserini_llama.train.loop import Trainer

    straight = tmp_path / "straight"
    common = ("--learning-rate", "3e-3", "--max-steps", "6", "--save-steps", "3")
    repllama.main(_argv(base_embedding, beir, straight, *common))

    resumed = tmp_path / "resumed"
    real_step, calls = Trainer.step, []

    def interrupted(self, batches):  # a kill after the checkpoint of step 3
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(self, batches)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        repllama.main(_argv(base_embedding, beir, resumed, *common))
    monkeypatch.setattr(Trainer, "step", real_step)
    assert [p.name for p in resumed.glob("checkpoint-*")] == ["checkpoint-3"]
    assert not (resumed / "pyserini_llama.json").exists()  # an unfinished run never looks finished
    with pytest.raises(UserError, match="--resume"):
        repllama.main(_argv(base_embedding, beir, resumed, *common))
    repllama.main(_argv(base_embedding, beir, resumed, *common, "--resume"))

    assert torch.allclose(torch.tensor(_losses(straight)), torch.tensor(_losses(resumed)), atol=1e-6)
    from safetensors.torch import load_file
    a, b = load_file(straight / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="already holds"):
        repllama.main(_argv(base_embedding, beir, resumed, *common))


def test_rankllama_trains_and_scores(base_causal, beir, tmp_path):
    from safetensors.torch import load_file

    from pyserini_llama.rerankers.rankllama import RankLlamaReranker
    from pyserini_llama.train import rankllama

    out = tmp_path / "rank"
    rankllama.main(_argv(base_causal, beir, out, "--learning-rate", "3e-3", "--epochs", "3", "--save-steps",
                         "0", "--passage-max-length", "28"))
    losses = _losses(out)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    weights = load_file(out / "adapter_model.safetensors")
    assert any(k.endswith("score.weight") for k in weights), "the score head must ship with the adapter"
    reranker = RankLlamaReranker.from_checkpoint(str(out))
    assert reranker.config.kind == "rankllama" and reranker.config.append_eos is False
    scores = reranker.score("protein cell gene", [("", "protein cell gene expression"), ("", "wing shock")])
    assert scores.shape == (2,) and np.isfinite(scores).all() and scores[0] != scores[1]


def test_full_fine_tuning_writes_a_plain_model(base_embedding, beir, tmp_path):
    from pyserini_llama.models.load import load_checkpoint
    from pyserini_llama.train import repllama

    out = tmp_path / "full"
    repllama.main(_argv(base_embedding, beir, out, "--full", "--max-steps", "2", "--save-steps", "0"))
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    loaded = load_checkpoint(str(out), task="embedding")
    assert loaded.config.kind == "repllama"
    assert json.loads((out / "config.json").read_text())["_name_or_path"] == str(base_embedding)


def test_refuses_test_split_and_unknown_negatives(base_embedding, beir, tmp_path):
    from pyserini_llama.train import repllama

    with pytest.raises(UserError, match="test"):
        repllama.main(_argv(base_embedding, beir, tmp_path / "x", "--split", "test"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query_id": "q0", "positives": ["d0"], "negatives": ["nope"]}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: negative 'nope'"):
        repllama.main(_argv(base_embedding, beir, tmp_path / "y", "--negatives", str(bad)))


def test_groups_are_deterministic_and_shard_like_a_single_process(beir):
    from pyserini_llama.train.data import StepBatches, load_training_data

    data = load_training_data(str(beir), negatives=str(beir / "negatives.jsonl"), group_size=8, log=None)
    query, passages = data.group(0, epoch=0)
    assert len(passages) == 8 and passages[0].docid in data.queries[0].positives
    assert passages[0].docid not in {p.docid for p in passages[1:]}
    assert data.group(0, epoch=0) == (query, passages) and data.group(0, epoch=1) != (query, passages)
    one = StepBatches(data, batch_size=4, world_size=1)
    two = [StepBatches(data, batch_size=2, world_size=2, rank=r) for r in range(2)]
    for step in range(3):
        assert one(step)[0] == two[0](step)[0] + two[1](step)[0]


def test_other_positives_are_negatives_from_other_queries(beir):
    from pyserini_llama.train.data import load_training_data

    data = load_training_data(str(beir), negatives=str(beir / "negatives.jsonl"), group_size=8, log=None,
                              other_positives=3)
    pool = set(data.positive_pool)
    for index, query in enumerate(data.queries):
        _, passages = data.group(index, epoch=0)
        docids = [p.docid for p in passages]
        assert len(docids) == 8 and len(set(docids)) == 8 and docids[0] in query.positives
        others = [d for d in docids[1:] if d in pool]
        assert len(others) >= 3 and not set(others) & set(query.positives)  # mined ones may be too
    with pytest.raises(UserError, match="--other-positives"):
        load_training_data(str(beir), group_size=4, log=None, other_positives=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_path_with_one_gloo_rank(base_embedding, beir, tmp_path, monkeypatch):
    """The torchrun code path (process group, gathered negatives, gradient averaging) gives the same losses."""
    import torch.distributed as dist

    from pyserini_llama.train import repllama

    argv = ("--learning-rate", "3e-3", "--max-steps", "3", "--save-steps", "0")
    repllama.main(_argv(base_embedding, beir, tmp_path / "plain", *argv))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        repllama.main(_argv(base_embedding, beir, tmp_path / "dist", *argv))
    finally:
        dist.destroy_process_group()
    assert torch.allclose(torch.tensor(_losses(tmp_path / "plain")), torch.tensor(_losses(tmp_path / "dist")),
                          atol=1e-6)


def test_gather_with_grad_sums_gradients_across_ranks(tmp_path):
    """Two gloo processes: the gathered passages' gradients equal those of the global mean loss."""
    import torch.multiprocessing as mp

    port = _free_port()
    mp.spawn(_gather_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"grad{r}.pt") for r in range(2)]
    averaged = [torch.load(tmp_path / f"avg{r}.pt") for r in range(2)]
    x = torch.arange(8, dtype=torch.float32).view(4, 2).requires_grad_()
    q = torch.tensor([[1.0, 0.5], [0.2, -1.0]])
    # rank r holds rows 2r..2r+1 of x and query r; each loss is its query against all rows
    loss = sum(torch.logsumexp(q[r] @ x.T, 0) for r in range(2)) / 2
    loss.backward()
    assert torch.allclose(torch.cat(got), x.grad, atol=1e-6)
    mean_of_sums = sum(2 * g.sum(0) for g in got) / 2  # each rank's raw gradient is world x its share
    assert all(torch.allclose(a, mean_of_sums, atol=1e-6) for a in averaged)


def _gather_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from pyserini_llama.train.distributed import average_gradients, gather_with_grad

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x = torch.arange(8, dtype=torch.float32).view(4, 2)[2 * rank:2 * rank + 2].clone().requires_grad_()
    q = torch.tensor([[1.0, 0.5], [0.2, -1.0]])[rank]
    gathered, offset = gather_with_grad(x)
    assert offset == 2 * rank and gathered.shape == (4, 2)
    torch.logsumexp(q @ gathered.T, 0).backward()
    param = torch.nn.Parameter(torch.zeros(2))
    param.grad = x.grad.sum(0).clone()
    average_gradients([param])
    torch.save(x.grad / world, Path(out) / f"grad{rank}.pt")  # parameter averaging divides by the world size
    torch.save(param.grad, Path(out) / f"avg{rank}.pt")
    dist.destroy_process_group()


def test_benchmark_tiny_smoke_run(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train.py"
    spec = importlib.util.spec_from_file_location("benchmark_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--output", str(tmp_path / "b.json"), "--steps", "2"]) == 0
    (result,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert result["tokens_per_step"] == 2 * 8 + 2 * 4 * 16 and result["tokens_per_second"] > 0
    assert 0 < result["trainable_params"] < result["matmul_params"] < result["params"]


def test_arguments_are_checked_while_parsing_in_one_line(capsys):
    from pyserini_llama.train.arguments import parse_args

    base = ["--model", "m", "--collection", "c", "--output", "o"]
    args = parse_args(base, "train", "Train.")
    assert (args.model.trust_remote_code, args.training.device, args.data.max_queries) == (False, "auto", 0)
    assert parse_args(base + ["--trust-remote-code"], "train", "Train.").model.trust_remote_code is True
    for bad, message in ((["--group-size", "1"], "argument --group-size: must be at least 2, got 1"),
                         (["--learning-rate", "0"], "argument --learning-rate: must be positive, got 0"),
                         (["--max-queries", "-1"], "argument --max-queries: must be at least 0, got -1")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(base + bad, "train", "Train.")
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err


def test_trust_remote_code_reaches_the_loader(base_embedding, beir, tmp_path, monkeypatch):
    import pyserini_llama.models.load as load
    from pyserini_llama.train import repllama

    seen = {}

    def spy(name, **kwargs):
        seen.update(kwargs)
        raise UserError("stop here")

    monkeypatch.setattr(load, "load_checkpoint", spy)
    for extra, expected in (((), False), (("--trust-remote-code",), True)):
        with pytest.raises(UserError, match="stop here"):
            repllama.main(_argv(base_embedding, beir, tmp_path / f"x{expected}", *extra))
        assert seen["trust_remote_code"] is expected and seen["training"] is True


def test_max_queries_is_a_deterministic_subsample(beir):
    from pyserini_llama.train.data import load_training_data, subsample_queries

    qids = [f"q{i}" for i in range(24)]
    picked = subsample_queries(qids, 10)
    assert len(picked) == 10 and picked == [q for q in qids if q in set(picked)]  # kept in the given order
    assert set(subsample_queries(list(reversed(qids)), 10)) == set(picked)  # whatever the file order
    assert set(subsample_queries(qids[:20], 10)) <= set(picked) | set(qids[:20])
    assert subsample_queries(qids, 0) == qids and subsample_queries(qids, 99) == qids
    data = load_training_data(str(beir), group_size=4, log=None, max_queries=10)
    assert [q.qid for q in data.queries] == picked


@pytest.mark.parametrize("trainer", ["repllama", "rankllama"])
def test_bucketed_batches_give_the_same_losses(base_embedding, base_causal, beir, tmp_path, trainer):
    """Length-sorted chunks instead of one padded batch: a speed change only (no dropout, float32)."""
    import importlib

    module = importlib.import_module(f"pyserini_llama.train.{trainer}")
    base = base_embedding if trainer == "repllama" else base_causal
    run = ("--learning-rate", "3e-3", "--max-steps", "3", "--save-steps", "0", "--lora-dropout", "0")
    module.main(_argv(base, beir, tmp_path / "padded", *run))
    module.main(_argv(base, beir, tmp_path / "bucketed", *run, "--bucket-tokens", "48"))
    assert torch.allclose(torch.tensor(_losses(tmp_path / "padded")), torch.tensor(_losses(tmp_path / "bucketed")),
                          atol=1e-5)


def test_bucketed_collation_restores_row_order(base_embedding):
    from pyserini_llama.train.collator import map_chunks, pad_rows

    rows = [[5] * n for n in (3, 9, 1, 7, 7, 2)]
    batch = pad_rows(rows, 0, "right", 2, bucket_tokens=16)
    assert len(batch["chunks"]) > 1 and all(c["input_ids"].numel() <= 16 for c in batch["chunks"])
    lengths = map_chunks(lambda b: b["attention_mask"].sum(1), batch)
    assert lengths.tolist() == [3, 9, 1, 7, 7, 2]


def test_training_continues_from_a_trained_checkpoint(base_embedding, beir, tmp_path):
    """--model <checkpoint with an adapter>: its adapter is merged, a new one trains on top, and the result loads
    as base + first adapter + second adapter; a reranker can start from the dense model's weights."""
    from peft import PeftModel
    from transformers import AutoModel

    from pyserini_llama.models.load import load_checkpoint
    from pyserini_llama.train import rankllama, repllama

    run = ("--learning-rate", "1e-2", "--max-steps", "2", "--save-steps", "0")
    repllama.main(_argv(base_embedding, beir, tmp_path / "weak", *run))
    repllama.main(_argv(tmp_path / "weak", beir, tmp_path / "fine", *run))
    adapter = json.loads((tmp_path / "fine" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tmp_path / "weak")

    want = AutoModel.from_pretrained(str(base_embedding))
    for folder in ("weak", "fine"):
        want = PeftModel.from_pretrained(want, str(tmp_path / folder)).merge_and_unload()
    fine = load_checkpoint(str(tmp_path / "fine"), task="embedding")
    got = fine.model.state_dict()
    assert all(torch.allclose(got[k], v, atol=1e-6) for k, v in want.state_dict().items())
    assert fine.identity != load_checkpoint(str(tmp_path / "weak"), task="embedding").identity

    weak = load_checkpoint(str(tmp_path / "weak"), task="embedding").model.state_dict()
    as_reranker = load_checkpoint(str(tmp_path / "weak"), task="sequence-classification").model
    decoder = as_reranker.base_model.state_dict()
    assert all(torch.equal(decoder[k], v) for k, v in weak.items())  # the decoder carries the dense weights
    rankllama.main(_argv(tmp_path / "weak", beir, tmp_path / "rank", *run))
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker

    scores = RankLlamaReranker.from_checkpoint(str(tmp_path / "rank")).score("protein", [("", "cell"), ("", "x")])
    assert np.isfinite(scores).all()

    # One adapter for shipping: the chain flattened (exactly: rank 32 + 32), or approximated at rank 32.
    from pyserini_llama.train.flatten import flatten

    for name, task in (("fine", "embedding"), ("rank", "sequence-classification")):
        chained = load_checkpoint(str(tmp_path / name), task=task).model.state_dict()
        report = flatten(tmp_path / name, tmp_path / f"{name}-flat")
        assert report["rank"] == 64 and report["base_model"] == str(base_embedding) and report["exact"]
        flat = load_checkpoint(str(tmp_path / f"{name}-flat"), task=task)
        assert flat.config.base_model == str(base_embedding)
        assert flat.config.extra["lora"] == {"r": 64, "alpha": 64, "flattened": 2}  # what the adapter now is
        got = flat.model.state_dict()
        assert all(torch.allclose(got[k], v, atol=1e-5) for k, v in chained.items()), name
    approx = flatten(tmp_path / "fine", tmp_path / "fine-r8", rank=8)
    assert approx["rank"] == 8 and not approx["exact"] and 0 < approx["max_relative_error"] < 1


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_training_forward_gives_the_inference_states_without_the_padding_mask(base_embedding, base_causal,
                                                                               padding_side):
    """In training, right-padded rows skip the padding mask (the causal kernel alone): every pooled vector and
    every reranker score must equal what inference computes with the mask; left padding keeps the mask."""
    from pyserini_llama.batching import pad_batch
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.models.load import load_checkpoint
    from pyserini_llama.rerankers.rankllama import RankLlamaReranker

    rows = [[5, 9, 11, 2], [7, 2], [4, 8, 15, 16, 23, 42, 2], [3, 2]]
    encoder_model = load_checkpoint(str(base_embedding), task="embedding", device="cpu", dtype="float32").model
    encoder = RepLlamaEncoder(encoder_model, None, CheckpointConfig(padding_side=padding_side))
    batch = pad_batch(rows, 0, padding_side, None)
    scorer = load_checkpoint(str(base_causal), task="sequence-classification", device="cpu", dtype="float32")
    scorer_model = scorer.model
    reranker = RankLlamaReranker(scorer_model, scorer.tokenizer)
    pairs = pad_batch(rows, 0, "right", None)
    with torch.no_grad():
        inference = encoder.embed(batch), reranker.score_batch(pairs)
        encoder_model.train(), scorer_model.train()  # the tiny models have no dropout: only the mask changes
        training = encoder.embed(batch), reranker.score_batch(pairs)
    for want, got in zip(inference, training):
        assert torch.allclose(want, got, atol=1e-5)


def test_a_bidirectional_model_keeps_the_padding_mask_in_training():
    """Without a causal mask a real token would attend the pads: such a model trains with the mask."""
    from transformers import BertConfig, BertModel

    from pyserini_llama.batching import pad_batch
    from pyserini_llama.encoders.inputs import is_causal, last_hidden_states

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=100, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    batch = pad_batch([[5, 9, 11, 2], [7, 2]], 0, "right", None)
    assert not is_causal(model)
    with torch.no_grad():
        want = last_hidden_states(model.eval(), batch, "right")
        got = last_hidden_states(model.train(), batch, "right")
    real = batch["attention_mask"].bool()
    assert torch.allclose(want[real], got[real], atol=1e-5)


def test_eos_token_is_the_pooled_token_and_travels_with_the_checkpoint(base_embedding, beir, tmp_path):
    """--eos-token names the token rows end with; the checkpoint's tokenizer keeps it, a stage trained from that
    checkpoint inherits it, and the encoder appends it; a token outside the vocabulary is refused by name."""
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.train import repllama

    run = ("--max-steps", "1", "--save-steps", "0")
    repllama.main(_argv(base_embedding, beir, tmp_path / "weak", "--eos-token", "<s>", *run))
    repllama.main(_argv(tmp_path / "weak", beir, tmp_path / "fine", *run))
    for folder in ("weak", "fine"):
        assert json.loads((tmp_path / folder / "tokenizer_config.json").read_text())["eos_token"] == "<s>"
        encoder = RepLlamaEncoder.from_checkpoint(str(tmp_path / folder))
        (row,) = encoder.query_token_ids(["protein"])
        assert row[-1] == encoder.tokenizer.convert_tokens_to_ids("<s>") == 1

    with pytest.raises(UserError, match=r"argument --eos-token: '<\|im_end\|>' is not one entry"):
        repllama.main(_argv(base_embedding, beir, tmp_path / "bad", "--eos-token", "<|im_end|>", *run))


@pytest.mark.parametrize("out_features, in_features, r, rank", [(96, 40, 16, 4), (40, 96, 24, 8), (1, 40, 8, 1)])
def test_truncation_equals_the_full_svd_of_the_update(out_features, in_features, r, rank):
    """Flattening to a rank decomposes a small core, not the whole update: the same approximation and error as
    the SVD of ``B @ A`` itself."""
    from pyserini_llama.train.flatten import truncate

    generator = torch.Generator().manual_seed(out_features)
    b = torch.randn(out_features, r, generator=generator, dtype=torch.float64) * torch.logspace(0, -2, r,
                                                                                                 dtype=torch.float64)
    a = torch.randn(r, in_features, generator=generator, dtype=torch.float64)
    delta = b @ a
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    want = (u[:, :rank] * s[:rank]) @ vh[:rank]
    got_b, got_a, error = truncate(b, a, rank)
    assert got_b.shape == (out_features, min(rank, out_features)) and got_a.shape == (min(rank, out_features),
                                                                                        in_features)
    assert torch.allclose(got_b @ got_a, want, atol=1e-10)
    assert error == pytest.approx(float(torch.linalg.norm(delta - want) / torch.linalg.norm(delta)), abs=1e-9)
