"""``python -m pyserini_llama.rerank``: runs from any first stage, text from a corpus or a Lucene index."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli_env, run_cli
from pyserini_llama.data.trec import load_run, write_run
from pyserini_llama.errors import UserError
from pyserini_llama.rerank import main

RUN = {"q3": [("d1", 3.0), ("d3", 2.0), ("d6", 1.5), ("d4", 1.0)], "q4": [("d2", 2.0), ("d4", 1.0)]}


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("rankllama"), task="sequence-classification", seed=2)


@pytest.fixture
def run_file(tmp_path) -> Path:
    path = tmp_path / "first.trec"
    write_run(RUN, path, tag="bm25")
    return path


def rerank(reranker_dir, run_file, index, output, *extra) -> int:
    """Rerank with text from ``index`` (a BEIR folder or its corpus.jsonl) and that folder's queries."""
    folder = Path(index) if Path(index).is_dir() else Path(index).parent
    return main(["--run", str(run_file), "--topics", str(folder / "queries.jsonl"), "--index", str(index),
                 "--reranker", str(reranker_dir), "--output", str(output), *extra])


def test_rerank_corpus_folder(reranker_dir, run_file, beir_folder, tmp_path, capsys):
    from pyserini_llama.rerankers import RankLlamaReranker
    from pyserini_llama.data.beir import load_corpus, load_queries

    out = tmp_path / "out.trec"
    assert rerank(reranker_dir, run_file, beir_folder, out, "--hits", "3") == 0
    assert "(5 pairs)" in capsys.readouterr().out  # top-3 of q3 + both of q4
    got = load_run(out)
    expected = RankLlamaReranker.from_checkpoint(str(reranker_dir)).rerank(
        load_queries(beir_folder / "queries.jsonl"), RUN, load_corpus(beir_folder / "corpus.jsonl"), hits=3,
        progress=False)
    for qid in RUN:
        assert [d for d, _ in got[qid]] == [d for d, _ in expected[qid]]
        assert [s for _, s in got[qid]] == pytest.approx([s for _, s in expected[qid]], abs=1e-5)
    assert got["q3"][-1][0] == "d4"  # below --hits: kept, last
    assert out.read_text().split("\n")[0].split()[1::4] == ["Q0", "rankllama"]

    with pytest.raises(UserError, match="already exists"):
        rerank(reranker_dir, run_file, beir_folder, out)
    assert rerank(reranker_dir, run_file, beir_folder / "corpus.jsonl", out, "--overwrite",
                  "--max-length-passage", "8") == 0


def test_rerank_bad_input(reranker_dir, run_file, beir_folder, tmp_path, capsys):
    out = tmp_path / "out.trec"
    bad_run = tmp_path / "bad.trec"
    write_run({"q3": [("d1", 2.0), ("nope", 1.0), ("gone", 0.5)]}, bad_run)
    with pytest.raises(UserError, match=r"2 documents of the run are not in the corpus \(e.g. 'gone', 'nope'\)"):
        rerank(reranker_dir, bad_run, beir_folder, out)
    assert rerank(reranker_dir, bad_run, beir_folder, out, "--skip-missing") == 0
    assert [d for d, _ in load_run(out)["q3"]] == ["d1", "nope", "gone"]

    write_run({"q9": [("d1", 1.0)]}, bad_run)
    with pytest.raises(UserError, match="1 queries of the run are not in the topics"):
        rerank(reranker_dir, bad_run, beir_folder, tmp_path / "x.trec")
    bad_run.write_text("")
    with pytest.raises(UserError, match="run is empty"):
        rerank(reranker_dir, bad_run, beir_folder, tmp_path / "x.trec")
    with pytest.raises(SystemExit):  # argparse: "argument --hits: must be at least 1"
        rerank(reranker_dir, run_file, beir_folder, tmp_path / "x.trec", "--hits", "0")
    assert not (tmp_path / "x.trec").exists()


def test_cli_error_is_one_line(reranker_dir, run_file, beir_folder, tmp_path):
    proc = run_cli("pyserini_llama.rerank", "--run", str(run_file), "--topics", str(tmp_path / "missing.tsv"),
                   "--index", str(beir_folder), "--reranker", str(reranker_dir), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.tsv'}: topics file not found"]


def test_benchmark_tiny_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rerank.py"), "--tiny", "--queries", "2",
                           "--depth", "8", "--batch-tokens", "512", "--naive-batch", "4", "--output", str(out)],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    assert {(r["lengths"], r["method"]) for r in rows} == {(m, k) for m in ("realistic", "full")
                                                           for k in ("ours", "naive")}
    assert all(r["pairs"] == 16 and r["pairs_per_s"] > 0 for r in rows)
    assert next(r for r in rows if r["lengths"] == "full")["tokens"] == 16 * (2 + 32 + 161)


def test_length_ablation_tiny_smoke(beir_folder, run_file, tmp_path):
    out = tmp_path / "ablation"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "length_ablation.py"), "--collection",
                           str(beir_folder), "--run", str(run_file), "--tiny", "--hits", "3", "--lengths", "8", "64",
                           "--output-dir", str(out)], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "length_ablation.json").read_text())["rows"]
    assert [r["max_length"] for r in rows] == [8, 64]
    assert all(0.0 <= r["nDCG@10"] <= 1.0 and r["pairs"] == 5 for r in rows)
    assert (out / "length_ablation.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_rerank_from_lucene_index_matches_corpus(reranker_dir, run_file, beir_folder, tmp_path):
    """Pyserini's Lucene raw documents give the same text, hence the same scores, as the BEIR corpus."""
    from pyserini_llama.lucene import build_lucene_index
    from pyserini_llama.data.documents import LuceneDocuments
    from pyserini_llama.rerankers import RankLlamaReranker, rerank_hits

    index = build_lucene_index(beir_folder / "corpus.jsonl", tmp_path / "lucene")
    from_corpus, from_lucene = tmp_path / "corpus.trec", tmp_path / "lucene.trec"
    assert rerank(reranker_dir, run_file, beir_folder, from_corpus) == 0
    assert main(["--run", str(run_file), "--topics", str(beir_folder / "queries.jsonl"), "--index", str(index),
                 "--reranker", str(reranker_dir), "--output", str(from_lucene)]) == 0
    assert from_corpus.read_text() == from_lucene.read_text()

    docs = LuceneDocuments(str(index))
    assert docs["d1"].text == "Protein folding Proteins fold into structures in the cell."
    with pytest.raises(KeyError):
        docs["nope"]
    # the Python API on real Pyserini hits, text from each hit's stored raw document
    hits = docs.searcher.search("supersonic shock waves", k=3)
    reranker = RankLlamaReranker.from_checkpoint(str(reranker_dir))
    ranked = rerank_hits(reranker, "supersonic shock", hits)
    assert sorted(d for d, _ in ranked) == sorted(h.docid for h in hits)

    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q3 0 d3 1\nq4 0 d4 1\n")
    proc = run_cli("pyserini.eval.trec_eval", "-m", "ndcg_cut.10", str(qrels), str(from_lucene), check=True)
    assert "ndcg_cut_10" in proc.stdout
