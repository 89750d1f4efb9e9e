"""The reproduction scripts' own logic: the development split and the choice made on it, the loss-curve check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=REPO)


def test_dev_split_partitions_train_queries_by_id(beir_folder, tmp_path):
    qrels = beir_folder / "qrels" / "train.tsv"
    out = tmp_path / "split"
    result = _run("dev_split.py", "--collection", str(beir_folder), "--output", str(out), "--dev-fraction", "0.5")
    assert result.returncode == 0, result.stderr
    rows = lambda p: [line for line in p.read_text().splitlines()[1:] if line]  # noqa: E731
    fit, dev = rows(out / "qrels" / "train-fit.tsv"), rows(out / "qrels" / "train-dev.tsv")
    assert sorted(fit + dev) == sorted(rows(qrels))  # every judgment lands in exactly one part
    assert not {r.split("\t")[0] for r in fit} & {r.split("\t")[0] for r in dev}  # whole queries move
    from dev_split import is_dev
    assert all(is_dev(r.split("\t")[0], 0.5) for r in dev)
    assert (out / "corpus.jsonl").read_text() == (beir_folder / "corpus.jsonl").read_text()
    refused = _run("dev_split.py", "--collection", str(beir_folder), "--output", str(tmp_path / "x"),
                   "--split", "test")
    assert refused.returncode == 2 and "test" in refused.stderr


def test_choose_on_dev_copies_the_best_reranker(tmp_path):
    dev = {"dev": {"bm25": {"nDCG@10": 0.6},
                   "a (reranks rrf top-100)": {"nDCG@10": 0.5}, "rrf(a, bm25+d (rrf))": {"nDCG@10": 0.62},
                   "b (reranks rrf top-100)": {"nDCG@10": 0.7}, "rrf(b, bm25+d (rrf))": {"nDCG@10": 0.65}}}
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    for name in ("a", "b"):
        (tmp_path / "ckpt" / name).mkdir(parents=True)
        (tmp_path / "ckpt" / name / "which").write_text(name)
    result = _run("choose_on_dev.py", "--dev", str(tmp_path / "dev.json"), "--collection", "dev", "--rerankers",
                  "a", "b", "--checkpoints", str(tmp_path / "ckpt"), "--link", "chosen", "--output",
                  str(tmp_path / "choice.json"))
    assert result.returncode == 0, result.stderr
    choice = json.loads((tmp_path / "choice.json").read_text())
    assert (choice["reranker"], choice["pipeline"]) == ("b", "rerank")
    assert (tmp_path / "ckpt" / "chosen" / "which").read_text() == "b"


@pytest.mark.parametrize("offset, within", [(0.001, True), (1.0, False)])
def test_compare_loss_curves_judges_against_the_seed_noise(tmp_path, offset, within):
    def state(name, losses, world):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(json.dumps(
            {"step": len(losses), "world_size": world, "tokens": 1000, "train_seconds": 1.0,
             "tokens_per_second": 1000.0 * world, "loss_history": [[i + 1, x] for i, x in enumerate(losses)]}))
    base = [3.0 - 0.1 * i for i in range(20)]
    state("ref", base, 1)
    state("cand", [x + offset for x in base], 2)
    state("noise", [x + (0.3 if i % 2 else -0.3) for i, x in enumerate(base)], 1)
    result = _run("compare_loss_curves.py", "--reference", str(tmp_path / "ref"), "--candidate",
                  str(tmp_path / "cand"), "--noise", str(tmp_path / "noise"), "--output", str(tmp_path / "o.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["within_noise"] is within and report["speedup"] == 2.0
