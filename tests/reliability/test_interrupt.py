"""Interruption and a second writer, with real processes and real signals: every run afterwards makes exactly
what an uninterrupted run makes.

* ``python -m pyserini_llama.encode corpus`` is killed (SIGKILL) several times at seeded random points while it
  encodes (small shards, so a run has many); rerunning the same command resumes from the finished shards and the
  final index is byte-identical to an uninterrupted run's. After each kill, no index folder exists.
* The same command gets Ctrl-C (SIGINT) mid-run: exit 130, one last line ``error: interrupted; ...`` saying the
  rerun continues, no traceback; the rerun's index is byte-identical.
* Two runs of the same command start together: one builds the index, the other stops with one line (the index
  is being written by another process, or already exists), never a mixed or half-deleted index.
* ``python -m pyserini_llama.train.repllama`` is killed after a seeded random periodic checkpoint, twice;
  ``--resume`` continues, and the loss of every step (``trainer_state.json``) equals the uninterrupted run's.

The counts (kills, kills that landed mid-run, data lost) go to the reliability report.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import pytest

import report
from conftest import cli_env
from pyserini_llama.testing import WORDS
from runner import TRACEBACK

SEED = 20240611
N_DOCS, SHARD = 240, 20  # 12 shards
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


class Counts(dict):
    """What this file measured; every update goes to the reliability report."""

    def update(self, **figures) -> None:  # type: ignore[override]
        super().update(figures)
        report.record("interrupt", **figures)


@pytest.fixture(scope="module")
def counts():
    return Counts()


@pytest.fixture(scope="module")
def encoding(model, tmp_path_factory):
    """A corpus, the encode command for any index folder, and an uninterrupted run's index."""
    tmp = tmp_path_factory.mktemp("encoding")
    rng = random.Random(SEED)
    words = WORDS.split()
    corpus = tmp / "corpus.jsonl"
    with open(corpus, "w") as f:
        for i in range(N_DOCS):
            text = " ".join(rng.choices(words, k=rng.randint(20, 90)))
            f.write(json.dumps({"_id": f"doc{i}", "title": rng.choice(words), "text": text}) + "\n")

    def command(index: Path) -> List[str]:
        return ["pyserini_llama.encode", "corpus", "--corpus", str(corpus), "--encoder", str(model), "--index",
                str(index), "--shard-size", str(SHARD), "--device", "cpu", "--max-tokens-per-batch", "192"]

    reference = tmp / "reference"
    finish(start(command(reference)))
    return command, reference


def same_index(index: Path, reference: Path) -> None:
    for name in ("index", "docid"):
        assert (index / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs"


def shards_of(index: Path) -> Callable[[], int]:
    return lambda: len(list((index.parent / f".{index.name}.shards").glob("shard-*.npz")))


def test_killed_encoding_resumes_to_an_identical_index(encoding, tmp_path, counts):
    command, reference = encoding
    rng = random.Random(SEED)
    n_shards = -(-N_DOCS // SHARD)
    index = tmp_path / "index"
    work = index.parent / f".{index.name}.shards"
    shards_done = shards_of(index)

    kills, landed, shards_at_kill = 0, 0, []
    for k in range(KILLS):
        # a target past the shards already done, short of the last one, so the kill lands mid-encoding
        target = rng.randint(min(shards_done() + 1, n_shards - 2), n_shards - 2)
        kills += 1
        if kill_when(start(command(index)), lambda: shards_done() >= target, rng.uniform(0, 0.15)):
            landed += 1
            shards_at_kill.append(shards_done())
            if index.exists():  # killed after the index was renamed into place: it is complete, not partial
                same_index(index, reference)
                break
    assert landed >= 2 or index.exists(), f"only {landed} of {kills} kills landed mid-run"
    if not index.exists():
        finish(start(command(index)))
        assert not work.exists()
    same_index(index, reference)
    counts.update(encode_kills=kills, encode_kills_mid_run=landed, encode_shards_at_kill=shards_at_kill,
                  encode_shards=n_shards, encode_data_lost=0, encode_index_identical=True)


def test_ctrl_c_is_one_line_and_the_rerun_continues(encoding, tmp_path, counts):
    command, reference = encoding
    index = tmp_path / "index"
    proc = start(command(index))
    deadline = time.monotonic() + 300
    while shards_of(index)() < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended or made no progress"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert proc.returncode == 130 and TRACEBACK not in err, err[-2000:]
    assert last.startswith("error: interrupted;") and "continues from its finished shards" in last, last
    assert not index.exists() and shards_of(index)() >= 2
    finish(start(command(index)))
    same_index(index, reference)
    counts.update(encode_ctrl_c=1, encode_ctrl_c_exit=proc.returncode, encode_ctrl_c_line=last)


def test_two_runs_at_once_make_one_index(encoding, tmp_path, counts):
    command, reference = encoding
    index = tmp_path / "index"
    first, second = start(command(index)), start(command(index))
    results = [(p.returncode, err) for p in (first, second) for _, err in [p.communicate(timeout=600)]]
    statuses = sorted(code for code, _ in results)
    assert statuses == [0, 2], [err[-1500:] for _, err in results]
    refused = next(err for code, err in results if code == 2)
    last = [line for line in refused.splitlines() if line.strip()][-1]
    assert re.search(r"is being written by another process|already exists", last) and TRACEBACK not in refused, last
    same_index(index, reference)
    assert not (index.parent / f".{index.name}.shards").exists()
    counts.update(concurrent_encode_runs=2, concurrent_second_run=last.replace(str(tmp_path), "<tmp>"))


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    from test_train import _write_beir, _write_negatives

    root = _write_beir(tmp_path_factory.mktemp("train") / "toy")
    _write_negatives(root, root / "negatives.jsonl")
    return root


def test_killed_training_resumes_the_same_loss_trajectory(model, beir, tmp_path, counts):
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
    counts.update(train_kills=kills, train_kills_mid_run=landed, train_killed_after_checkpoint=killed_after,
                  train_steps=steps, train_max_relative_loss_difference=diff, train_data_lost=0)
