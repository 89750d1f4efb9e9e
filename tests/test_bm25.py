"""BM25 through Pyserini itself reproduces the published BEIR SciFact numbers."""
import pytest

from pyserini_llama.lucene import build_lucene_index, bm25_search, convert_to_jsoncollection
from pyserini_llama.data.collections import resolve_collection
from pyserini_llama.eval import evaluate
from tests.conftest import run_cli


def test_convert_to_jsoncollection(beir_folder, tmp_path):
    import json

    n = convert_to_jsoncollection(beir_folder / "corpus.jsonl", tmp_path / "docs.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "docs.jsonl").read_text().splitlines()]
    assert n == 6 and lines[0] == {"id": "d1", "contents": "Protein folding Proteins fold into structures in the cell."}


@pytest.mark.integration
def test_scifact_bm25_matches_published(shared_ir, tmp_path_factory):
    collection = resolve_collection("beir-scifact", str(shared_ir))
    index = build_lucene_index(collection.corpus_path, tmp_path_factory.mktemp("idx") / "scifact")
    run = bm25_search(index, collection.queries("test"), k=1000)
    scores = evaluate(run, collection.qrels("test"), ["nDCG@10", "R@100"])
    assert scores["nDCG@10"] == pytest.approx(0.6789, abs=5e-5)
    assert scores["R@100"] == pytest.approx(0.9253, abs=5e-5)


@pytest.mark.integration
def test_bm25_cli_on_toy_collection(beir_folder, tmp_path):
    out = run_cli("pyserini_llama.bm25", "--collection", str(beir_folder), "--split", "test", "--index",
                  str(tmp_path / "idx"), "--output", str(tmp_path / "run.trec"), cwd=tmp_path, check=True)
    assert "bm25 (k1=0.9, b=0.4)" in out.stdout
    first = (tmp_path / "run.trec").read_text().splitlines()[0].split()
    assert first[:3] == ["q3", "Q0", "d3"]
    again = run_cli("pyserini_llama.bm25", "--collection", str(beir_folder), "--index", str(tmp_path / "idx"),
                    "--output", str(tmp_path / "run.trec"), cwd=tmp_path)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr


def test_doctor_reports_every_part():
    out = run_cli("pyserini_llama.doctor")
    for part in ("Java >= 21", "pyserini", "pyserini hook", "torch", "faiss", "onnxruntime", "collections"):
        assert part in out.stdout
    assert out.returncode == (0 if "all required parts found" in out.stdout else 1)


def test_convert_cli_refuses_bad_corpus_without_output(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    out = run_cli("pyserini_llama.convert", str(tmp_path / "corpus.jsonl"), str(tmp_path / "docs.jsonl"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {tmp_path / 'corpus.jsonl'}:2: duplicate document id 'a' (first seen on line 1)"
    assert not (tmp_path / "docs.jsonl").exists() and [p.name for p in tmp_path.iterdir()] == ["corpus.jsonl"]
