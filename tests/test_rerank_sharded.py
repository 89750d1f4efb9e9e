"""Reranking under torchrun: queries split across ranks, the parts joined by rank 0 into the same file a single
process writes; a run that dies leaves no output, and the next run clears its leftovers."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env
from pyserini_llama.data.trec import write_run
from pyserini_llama.errors import UserError
from pyserini_llama.rerank import main
from pyserini_llama.rerankers.sharding import clear_parts, parts_dir, shard_run, write_sharded_run

RUN = {"q1": [("d1", 3.0), ("d3", 2.0), ("d6", 1.5)], "q2": [("d2", 2.0), ("d4", 1.0), ("d5", 0.5)],
       "q3": [("d3", 2.0), ("d1", 1.0)], "q4": [("d4", 9.0), ("d5", 1.0), ("d6", 0.0)]}


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("rankllama"), task="sequence-classification", seed=3)


def torchrun(*args, port: int) -> subprocess.CompletedProcess:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("torchrun not installed next to this Python")
    return subprocess.run([exe, "--nproc_per_node", "2", "--master_port", str(port), "-m", "pyserini_llama.rerank",
                           *args], env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)


def test_shards_and_parts(tmp_path):
    assert list(shard_run(RUN, 0, 2)) == ["q1", "q3"] and list(shard_run(RUN, 1, 2)) == ["q2", "q4"]
    assert shard_run(RUN, 0, 1) == RUN
    out = tmp_path / "run.trec"
    assert write_sharded_run({"q2": RUN["q2"], "q1": RUN["q1"]}, ["q1", "q2", "q3"], out, "t", rank=0, world_size=1)
    assert [line.split()[0] for line in out.read_text().splitlines()] == ["q1"] * 3 + ["q2"] * 3
    work = parts_dir(out)
    work.mkdir()
    (work / "part-00001-of-00002.trec").write_text("stale\n")
    clear_parts(work)
    assert not work.exists()
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="did not write"):
        clear_parts(work)


def test_two_ranks_write_what_one_process_writes(tmp_path, reranker_dir, beir_folder):
    write_run(RUN, tmp_path / "first.trec", tag="bm25")
    args = ["--input-run", str(tmp_path / "first.trec"), "--topics", str(beir_folder / "queries.jsonl"), "--index",
            str(beir_folder), "--reranker", str(reranker_dir), "--device", "cpu", "--hits", "2"]
    assert main([*args, "--output", str(tmp_path / "single.trec")]) == 0
    proc = torchrun(*args, "--output", str(tmp_path / "sharded.trec"), port=29541)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "sharded.trec").read_text() == (tmp_path / "single.trec").read_text()
    assert not parts_dir(tmp_path / "sharded.trec").exists()
    assert "rank 1 of 2: reranking top-2 of 2 queries (4 pairs)" in proc.stdout

    # q4 (rank 1's) names a document the corpus lacks: rank 1 fails before its model loads, the run stops,
    # nothing looks finished
    write_run({**RUN, "q4": [("missing", 9.0), ("d5", 1.0)]}, tmp_path / "bad.trec", tag="bm25")
    args[1] = str(tmp_path / "bad.trec")
    proc = torchrun(*args, "--output", str(tmp_path / "out.trec"), port=29542)
    assert proc.returncode != 0 and "not in the corpus" in proc.stderr
    assert not (tmp_path / "out.trec").exists()
    parts = parts_dir(tmp_path / "out.trec")
    assert not parts.exists() or not list(parts.glob("part-*"))  # rank 0 stopped at the barrier, before scoring
    proc = torchrun(*args, "--output", str(tmp_path / "out.trec"), "--skip-missing", port=29543)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not parts_dir(tmp_path / "out.trec").exists()
    lines = (tmp_path / "out.trec").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 2 + ["q4"] * 2
    assert lines[-2].split()[2] == "d5" and lines[-1].split()[2] == "missing"  # unscored, kept below
