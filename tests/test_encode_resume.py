"""Corpus encoding: a killed run resumes from its last finished shard and yields the same index; torchrun ranks."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pyserini_llama.dense import build_index, read_docids, read_flat_index
from pyserini_llama.dense.index import INFO_NAME, work_dir_for
from pyserini_llama.encoders.repllama import RepLlamaEncoder
from pyserini_llama.errors import UserError
from pyserini_llama.testing import WORDS

from conftest import cli_env

N_DOCS, SHARD = 23, 5  # 5 shards, the last one short


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", task="embedding")
    CheckpointConfig(passage_max_length=32, dtype="float32").save(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    words = WORDS.split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with open(path, "w") as f:
        for i in range(N_DOCS):
            text = " ".join(rng.choices(words, k=rng.randint(1, 30)))
            f.write(json.dumps({"_id": f"d{i}", "title": rng.choice(words), "text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def encoder(model):
    return RepLlamaEncoder.from_checkpoint(str(model), max_tokens_per_batch=64)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, encoder, corpus):
    """An uninterrupted run."""
    return build_index(encoder, corpus, tmp_path_factory.mktemp("ref") / "idx", shard_size=SHARD,
                       progress=False)


def same_index(a, b):
    return (a / "index").read_bytes() == (b / "index").read_bytes() and \
        (a / "docid").read_bytes() == (b / "docid").read_bytes()


class Killed(BaseException):
    pass


def test_reference_index(reference, encoder, corpus):
    from pyserini_llama.data.beir import load_corpus

    docs = load_corpus(corpus)
    flat = read_flat_index(reference / "index")
    assert read_docids(reference / "docid") == list(docs)
    direct = encoder.encode_passages(list(docs.values()), progress=False)
    np.testing.assert_allclose(np.asarray(flat.vectors), direct, atol=1e-5)
    info = json.loads((reference / INFO_NAME).read_text())
    assert info["count"] == N_DOCS and info["dimension"] == encoder.dimension
    assert not work_dir_for(reference).exists()  # shards are removed once merged


def test_killed_run_resumes_from_last_shard(tmp_path, encoder, corpus, reference, monkeypatch):
    calls = []
    original = RepLlamaEncoder.encode_passages

    def dies_on_third_shard(self, docs, **kwargs):
        calls.append(docs[0].docid)
        if len(calls) == 3:
            raise Killed()
        return original(self, docs, **kwargs)

    monkeypatch.setattr(RepLlamaEncoder, "encode_passages", dies_on_third_shard)
    index = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index(encoder, corpus, index, shard_size=SHARD, progress=False)
    assert not index.exists()  # nothing that looks finished
    assert sorted(p.name for p in work_dir_for(index).glob("shard-*")) == ["shard-00000.npz", "shard-00001.npz"]

    calls.clear()
    monkeypatch.setattr(RepLlamaEncoder, "encode_passages", original)
    resumed_calls = []
    monkeypatch.setattr(RepLlamaEncoder, "encode_passages",
                        lambda self, docs, **kw: resumed_calls.append(docs[0].docid) or original(self, docs, **kw))
    build_index(encoder, corpus, index, shard_size=SHARD, progress=False)
    assert resumed_calls == ["d10", "d15", "d20"]  # only the unfinished shards
    assert same_index(index, reference)


def test_changed_settings_and_existing_index(tmp_path, encoder, corpus, monkeypatch):
    index = tmp_path / "idx"
    original = RepLlamaEncoder.encode_passages
    calls = []

    def dies_on_second_shard(self, docs, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed()
        return original(self, docs, **kwargs)

    monkeypatch.setattr(RepLlamaEncoder, "encode_passages", dies_on_second_shard)
    with pytest.raises(Killed):
        build_index(encoder, corpus, index, shard_size=SHARD, progress=False)
    monkeypatch.undo()
    with pytest.raises(UserError, match="1 finished shard.*other inputs or settings.*shard_size"):
        build_index(encoder, corpus, index, shard_size=SHARD + 1, progress=False)
    build_index(encoder, corpus, index, shard_size=SHARD + 1, overwrite=True, progress=False)
    with pytest.raises(UserError, match="already exists"):
        build_index(encoder, corpus, index, shard_size=SHARD + 1, progress=False)


def test_torchrun_two_ranks_make_the_same_index(tmp_path, model, corpus, reference):
    torchrun = shutil.which("torchrun", path=str(sys.executable.rsplit("/", 1)[0]))
    if torchrun is None:
        pytest.skip("torchrun not installed next to this Python")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m", "pyserini_llama.encode", "corpus",
           "--corpus", str(corpus), "--encoder", str(model), "--index", str(tmp_path / "idx"),
           "--shard-size", str(SHARD), "--device", "cpu", "--max-tokens-per-batch", "64"]
    proc = subprocess.run(cmd, env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {tmp_path / 'idx'}: {N_DOCS} documents" in proc.stdout
    assert same_index(tmp_path / "idx", reference)
