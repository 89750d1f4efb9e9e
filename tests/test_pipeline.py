"""``python -m pyserini_llama.pipeline``: BM25 -> dense -> fusion -> RankLLaMA, cached stages, one table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyserini_llama import pipeline
from pyserini_llama.data.trec import load_run

CPU_DEPTH = pipeline.CPU_DEFAULTS["rerank_depth"]
STAGES = ["BM25", "RepLLaMA", "BM25+RepLLaMA (RRF)", "BM25+RepLLaMA (hybrid)",
          f"RankLLaMA on BM25+RepLLaMA (RRF) top-{CPU_DEPTH}", "RankLLaMA+its input (RRF)"]
RERANKED, FUSED = STAGES[4], STAGES[2]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    """A packaged-checkpoints folder holding tiny stand-ins for the default dense and reranker models."""
    from pyserini_llama.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("checkpoints")
    build_tiny_llama(root / pipeline.DEFAULT_DENSE, task="embedding", seed=4)
    build_tiny_llama(root / pipeline.DEFAULT_RERANKER, task="sequence-classification", seed=5)
    return root


def fake_bm25(monkeypatch):
    """Term-overlap ranking in place of Lucene, so the pipeline logic is tested without Java."""
    import json

    from pyserini_llama import lucene
    from pyserini_llama.data.beir import load_corpus

    def build(corpus, index_dir, **kwargs):
        Path(index_dir).mkdir(parents=True, exist_ok=True)
        (Path(index_dir) / "corpus").write_text(str(corpus))
        (Path(index_dir) / "segments_1").write_text("")
        (Path(index_dir) / lucene.SOURCE_NAME).write_text(json.dumps(lucene.index_source(corpus)))
        return Path(index_dir)

    def search(index_dir, queries, k=1000, **kwargs):
        corpus = load_corpus((Path(index_dir) / "corpus").read_text())
        run = {}
        for qid, text in queries.items():
            terms = set(text.lower().split())
            scores = {d: float(len(terms & set(doc.contents.lower().split()))) for d, doc in corpus.items()}
            run[qid] = sorted(((d, s) for d, s in scores.items() if s > 0), key=lambda h: (-h[1], h[0]))[:k]
        return run

    monkeypatch.setattr(lucene, "build_lucene_index", build)
    monkeypatch.setattr(lucene, "bm25_search", search)


def use_packaged(monkeypatch, folder: Path) -> None:
    """Packaged checkpoints from ``folder`` (both the name check and the loader), exports in a fresh cache."""
    from pyserini_llama.models import load, presets

    monkeypatch.setattr(presets, "PACKAGED_DIR", folder)
    monkeypatch.setattr(load, "PACKAGED_DIR", folder)
    monkeypatch.setenv("PYSERINI_LLAMA_CACHE", str(folder.parent / "cache"))


def test_pipeline_all_stages_then_cached(beir_folder, packaged, tmp_path, monkeypatch, capsys):
    use_packaged(monkeypatch, packaged)
    fake_bm25(monkeypatch)
    work = tmp_path / "work"
    assert pipeline.main(["--collection", str(beir_folder), "--work-dir", str(work), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device: cpu (no GPU found); models run on onnxruntime" in out  # the CPU default backend
    assert "dense: repllama-smollm2, every document of the corpus encoded" in out
    assert f"reranking the top {CPU_DEPTH} of BM25+RepLLaMA (RRF) for 2 queries with rankllama-smollm2" in out
    table = out[out.index("system"):].splitlines()
    assert table[0].split() == ["system", "nDCG@10", "R@100", "MRR@10", "time"]
    assert [line[:len(name)] for line, name in zip(table[1:7], STAGES)] == STAGES

    result = json.loads((work / "pipeline.json").read_text())
    assert list(result["stages"]) == STAGES and result["queries"] == 2 and result["rerank_depth"] == CPU_DEPTH
    assert result["backend"] == "onnx"
    for path in result["runs"].values():
        run = load_run(path)
        assert set(run) <= {"q1", "q2", "q3", "q4"}
    reranked = load_run(result["runs"][RERANKED])
    fused = load_run(result["runs"][FUSED])
    assert set(reranked) == {"q3", "q4"}  # the test split's queries
    for qid in reranked:
        assert sorted(d for d, _ in reranked[qid]) == sorted(d for d, _ in fused[qid])
    # the rerank stage's R@100 equals its input's: reranking only reorders
    assert result["stages"][RERANKED]["R@100"] == pytest.approx(result["stages"][FUSED]["R@100"])
    assert (work / "pipeline.png").read_bytes()[:4] == b"\x89PNG"

    assert pipeline.main(["--collection", str(beir_folder), "--work-dir", str(work), "--device", "cpu"]) == 0
    again = capsys.readouterr().out
    assert "* reused from the work dir" in again
    cached = json.loads((work / "pipeline.json").read_text())["stages"]
    assert all(row["cached"] for row in cached.values())
    assert {k: dict(v, cached=True) for k, v in result["stages"].items()} == cached


def test_pipeline_says_missing_checkpoints_are_skipped(beir_folder, tmp_path, monkeypatch, capsys):
    use_packaged(monkeypatch, tmp_path / "none")
    fake_bm25(monkeypatch)
    assert pipeline.main(["--collection", str(beir_folder), "--work-dir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert f"dense stage skipped: the packaged checkpoint '{pipeline.DEFAULT_DENSE}' is missing" in out
    assert f"reranker stage skipped: the packaged checkpoint '{pipeline.DEFAULT_RERANKER}' is missing" in out
    assert [line.split()[0] for line in out[out.index("system"):].splitlines()[1:2]] == ["BM25"]


def test_pipeline_bad_arguments(beir_folder, tmp_path, capsys):
    from pyserini_llama.errors import UserError

    with pytest.raises(SystemExit) as exit_info:
        pipeline.main(["--collection", str(beir_folder), "--rerank-depth", "0"])
    assert exit_info.value.code == 2
    assert "argument --rerank-depth: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(UserError, match="--rerank-input dense: no such stage"):
        pipeline.main(["--collection", str(beir_folder), "--work-dir", str(tmp_path), "--dense", "none",
                       "--reranker", "x", "--rerank-input", "dense"])


@pytest.mark.integration
def test_pipeline_end_to_end_with_lucene(beir_folder, packaged, tmp_path, monkeypatch):
    """The real CLI: Pyserini BM25 (Java), tiny dense and reranker checkpoints, table and chart."""
    from conftest import run_cli

    proc = run_cli("pyserini_llama.pipeline", "--collection", str(beir_folder), "--work-dir", str(tmp_path / "w"),
                   "--dense", str(packaged / pipeline.DEFAULT_DENSE), "--reranker",
                   str(packaged / pipeline.DEFAULT_RERANKER), "--max-queries", "0", check=True,
                   PYSERINI_LLAMA_CACHE=str(tmp_path / "cache"))  # the CPU default backend exports here
    table = proc.stdout[proc.stdout.index("system"):].splitlines()
    assert [line[:len(name)] for line, name in zip(table[1:7], STAGES)] == STAGES
    bm25 = dict(zip(table[0].split(), table[1].split()))
    assert float(bm25["nDCG@10"]) == pytest.approx(1.0)  # toy queries name their document's words
    assert (tmp_path / "w" / "pipeline.png").exists()
