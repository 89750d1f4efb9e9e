"""Interruption: SIGKILL the real commands mid-run, rerun them, and get exactly what an uninterrupted run makes.

* ``python -m pyserini_llama.encode corpus`` is killed several times at seeded random points while it encodes
  (small shards, so a run has many); rerunning the same command resumes from the finished shards and the final
  index is byte-identical to an uninterrupted run's. After each kill, no index folder exists (nothing looks
  finished).
* ``python -m pyserini_llama.train.repllama`` is killed after a seeded random periodic checkpoint, twice;
  ``--resume`` continues, and the loss of every step (``trainer_state.json``) equals the uninterrupted run's.

The counts (kills, kills that landed mid-run, data lost) go to ``interrupt.json`` in the pytest tmp dir (printed)
and, with ``PYSERINI_LLAMA_RELIABILITY_REPORT`` set, to the reliability report.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import pytest

from conftest import cli_env
from pyserini_llama.testing import WORDS
from test_bad_input import write_report

SEED = 20240611
N_DOCS, SHARD = 400, 25  # 16 shards
KILLS = 3
COUNTS: dict = {}


def start(args: List[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], env=cli_env(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: int = 300) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-2000:]}\n{err[-3000:]}"


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], extra_delay: float, timeout: float = 300) -> bool:
    """SIGKILL the process (group) once ``ready()`` holds, plus ``extra_delay`` s; False if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the process made no progress"
        time.sleep(0.01)
    time.sleep(extra_delay)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return True


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("interrupt") / "model", task="embedding", hidden_size=64)
    CheckpointConfig(query_max_length=16, passage_max_length=96, dtype="float32").save(folder)
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    yield COUNTS
    path = tmp_path_factory.getbasetemp() / "interrupt.json"
    path.write_text(json.dumps(COUNTS, indent=2, sort_keys=True) + "\n")
    print(f"\ninterruption counts ({path}): {json.dumps(COUNTS, sort_keys=True)}")
    write_report("interrupt", COUNTS)


def test_killed_encoding_resumes_to_an_identical_index(model, tmp_path, report):
    rng = random.Random(SEED)
    words = WORDS.split()
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w") as f:
        for i in range(N_DOCS):
            text = " ".join(rng.choices(words, k=rng.randint(20, 90)))
            f.write(json.dumps({"_id": f"doc{i}", "title": rng.choice(words), "text": text}) + "\n")
    n_shards = -(-N_DOCS // SHARD)

    def command(index: Path) -> List[str]:
        return ["pyserini_llama.encode", "corpus", "--corpus", str(corpus), "--encoder", str(model), "--index",
                str(index), "--shard-size", str(SHARD), "--device", "cpu", "--max-tokens-per-batch", "192"]

    reference = tmp_path / "reference"
    finish(start(command(reference)))

    index = tmp_path / "index"
    work = index.parent / f".{index.name}.shards"

    def shards_done() -> int:
        return len(list(work.glob("shard-*.npz")))

    kills, landed, shards_at_kill = 0, 0, []
    for k in range(KILLS):
        # a target past the shards already done, short of the last one, so the kill lands mid-encoding
        target = rng.randint(min(shards_done() + 1, n_shards - 2), n_shards - 2)
        kills += 1
        if kill_when(start(command(index)), lambda: shards_done() >= target, rng.uniform(0, 0.15)):
            landed += 1
            shards_at_kill.append(shards_done())
            assert not index.exists(), "a killed run left an index that looks finished"
    assert landed >= 2, f"only {landed} of {kills} kills landed mid-run"
    finish(start(command(index)))
    assert not work.exists()
    for name in ("index", "docid", "index_info.json"):
        assert (index / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs"
    report.update(encode_kills=kills, encode_kills_mid_run=landed, encode_shards_at_kill=shards_at_kill,
                  encode_shards=n_shards, encode_data_lost=0, encode_index_identical=True)


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    from test_train import _write_beir, _write_negatives

    root = _write_beir(tmp_path_factory.mktemp("train") / "toy")
    _write_negatives(root, root / "negatives.jsonl")
    return root


def test_killed_training_resumes_the_same_loss_trajectory(model, beir, tmp_path, report):
    rng = random.Random(SEED + 1)
    steps, save = 18, 3  # 3 epochs of 6 steps; a checkpoint every 3

    def command(output: Path, *extra: str) -> List[str]:
        return ["pyserini_llama.train.repllama", "--model", str(model), "--collection", str(beir),
                "--negatives", str(beir / "negatives.jsonl"), "--output", str(output), "--dtype", "float32",
                "--device", "cpu", "--group-size", "4", "--batch-size", "4", "--query-max-length", "16",
                "--passage-max-length", "24", "--learning-rate", "1e-3", "--max-steps", str(steps),
                "--save-steps", str(save), "--no-progress", "--seed", "7", *extra]

    reference = tmp_path / "reference"
    finish(start(command(reference)))

    output = tmp_path / "ckpt"
    kills, landed, killed_after = 0, 0, []
    for k in range(2):
        done = max([int(p.name.split("-")[1]) for p in output.glob("checkpoint-*")] or [0])
        target = rng.choice([s for s in range(save, steps, save) if s > done][:2])
        kills += 1
        if kill_when(start(command(output, *(["--resume"] if k else []))),
                     lambda: (output / f"checkpoint-{target}" / "trainer_state.json").exists(),
                     rng.uniform(0, 0.2)):
            landed += 1
            killed_after.append(target)
            assert not (output / "pyserini_llama.json").exists(), "a killed run looks finished"
    assert landed >= 1
    finish(start(command(output, "--resume")))

    def losses(folder: Path) -> list:
        return json.loads((folder / "trainer_state.json").read_text())["loss_history"]

    got, want = losses(output), losses(reference)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, steps + 1))
    diff = max(abs(a - b) / max(abs(b), 1e-12) for (_, a), (_, b) in zip(got, want))
    assert diff < 1e-5, f"resumed losses drift from the uninterrupted run (max relative difference {diff:.2e})"
    assert not list(output.glob("checkpoint-*"))  # the export replaced the periodic checkpoints
    report.update(train_kills=kills, train_kills_mid_run=landed, train_killed_after_checkpoint=killed_after,
                  train_steps=steps, train_max_relative_loss_difference=diff, train_data_lost=0)
