"""Runs, indexes and topics files are readable by others as Pyserini's are: 0644 files and 0755 folders under the
usual umask 022, and never more open than the umask allows (0640/0750 under 027)."""
from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from pyserini_llama.data.atomic import atomic_dir, atomic_write
from pyserini_llama.data.trec import write_run


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict:
    paths = [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode) for p in paths}


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        with atomic_write(tmp_path / "run.trec") as f:
            f.write("q Q0 d 1 1.0 x\n")
        write_run({"q": [("d", 1.0)]}, tmp_path / "run2.trec")
        with atomic_dir(tmp_path / "index") as out:
            (out / "docid").write_text("d\n")
            (out / "model").mkdir(mode=0o700)  # as libraries write through mkstemp/mkdtemp
            (out / "model" / "weights").write_bytes(b"")
            os.chmod(out / "model" / "weights", 0o600)
    assert modes(tmp_path / "run.trec") == {"run.trec": file_mode}
    assert modes(tmp_path / "run2.trec") == {"run2.trec": file_mode}
    assert modes(tmp_path / "index") == {"index": dir_mode, "index/docid": file_mode, "index/model": dir_mode,
                                         "index/model/weights": file_mode}


def test_dense_index_and_topics_are_readable(tmp_path, beir_folder):
    from pyserini_llama.dense.index import build_index
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama
    from pyserini_llama.topics import main as topics_main

    model = build_tiny_llama(tmp_path / "model", task="embedding", style="smollm2")
    CheckpointConfig(dtype="float32").save(model)
    encoder = RepLlamaEncoder.from_checkpoint(str(model))
    out = tmp_path / "out"
    with umask(0o022):
        build_index(encoder, beir_folder / "corpus.jsonl", out / "index", shard_size=4, progress=False)
        topics_main(["--topics", str(beir_folder), "--output", str(out / "topics.tsv")])
    found = modes(out / "index") | modes(out / "topics.tsv")
    assert found == {"index": 0o755, "index/docid": 0o644, "index/index": 0o644, "index/index_info.json": 0o644,
                     "topics.tsv": 0o644}
    assert sorted(p.name for p in out.iterdir()) == ["index", "topics.tsv"]  # no shards or temp files left
