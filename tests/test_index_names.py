"""``--index NAME``: search and rerank take a prebuilt index name wherever they take an index path."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from pyserini_llama import search
from pyserini_llama.data.trec import load_run, write_run
from pyserini_llama.errors import UserError
from pyserini_llama.prebuilt_indexes import registry
from pyserini_llama.prebuilt_indexes.__main__ import main as indexes_cli
from pyserini_llama.rerank import main as rerank
from test_download import FileServer, md5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from pyserini_llama.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("models")
    return {"encoder": build_tiny_llama(root / "encoder", task="embedding"),
            "reranker": build_tiny_llama(root / "reranker", task="sequence-classification", seed=2)}


@pytest.fixture
def names(tmp_path, monkeypatch):
    """A registry of test entries in place of the packaged one, and an empty index cache."""
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "pyserini-cache"))
    folder = tmp_path / "registry"
    folder.mkdir()
    monkeypatch.setattr(registry, "PACKAGED", folder)

    def register(**entry) -> None:
        (folder / f"{entry['name']}.yaml").write_text(yaml.safe_dump(entry))
    return register


def search_run(index: str, beir_folder: Path, output: Path) -> dict:
    assert search.main(["--index", index, "--topics", str(beir_folder / "queries.jsonl"), "--output", str(output),
                        "--hits", "4", "--device", "cpu", "--dtype", "float32"]) == 0
    return load_run(output)


def test_search_a_downloaded_index_by_name(names, models, beir_folder, tmp_path):
    from pyserini_llama import encode

    built = tmp_path / "built" / "toy.dense"
    assert encode.main(["corpus", "--corpus", str(beir_folder), "--index", str(built), "--encoder",
                        str(models["encoder"]), "--device", "cpu", "--dtype", "float32"]) == 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(built, arcname="toy.dense")
    server = FileServer()
    try:
        names(name="toy.dense", type="faiss", collection=str(beir_folder), model="tiny", dimension=64,
              md5=md5(buf.getvalue()), urls=[server.add("/toy.dense.tar.gz", buf.getvalue())])
        by_name = search_run("toy.dense", beir_folder, tmp_path / "by-name.trec")
        assert len(server.requests) == 1  # downloaded (md5-verified) into the cache, then searched
    finally:
        server.close()
    assert by_name == search_run(str(built), beir_folder, tmp_path / "by-path.trec")
    assert search_run("toy.dense", beir_folder, tmp_path / "again.trec") == by_name  # from the cache now


def test_search_a_recipe_built_index_by_name(names, models, beir_folder, tmp_path):
    names(name="toy.recipe", type="faiss", collection=str(beir_folder), model="tiny", dimension=64,
          recipe={"kind": "dense", "checkpoint": str(models["encoder"]), "dtype": "float32"})
    with pytest.raises(UserError, match="--build toy.recipe"):  # never built behind the user's back
        search_run("toy.recipe", beir_folder, tmp_path / "x.trec")
    assert indexes_cli(["--build", "toy.recipe", "--device", "cpu"]) == 0
    path = registry.index_path("toy.recipe")
    assert search_run("toy.recipe", beir_folder, tmp_path / "name.trec") == \
        search_run(str(path), beir_folder, tmp_path / "path.trec")


@pytest.mark.integration
def test_rerank_with_text_from_a_lucene_index_by_name(names, models, beir_folder, tmp_path):
    names(name="toy.flat", type="lucene", collection=str(beir_folder), model="bm25", recipe={"kind": "lucene"})
    assert indexes_cli(["--build", "toy.flat"]) == 0
    run = tmp_path / "first.trec"
    write_run({"q3": [("d1", 3.0), ("d3", 2.0), ("d6", 1.0)], "q4": [("d2", 2.0), ("d4", 1.0)]}, run)
    args = ["--run", str(run), "--topics", str(beir_folder / "queries.jsonl"), "--reranker",
            str(models["reranker"]), "--device", "cpu"]
    assert rerank(args + ["--index", "toy.flat", "--output", str(tmp_path / "name.trec")]) == 0
    assert rerank(args + ["--index", str(beir_folder), "--output", str(tmp_path / "corpus.trec")]) == 0
    by_name, by_corpus = load_run(tmp_path / "name.trec"), load_run(tmp_path / "corpus.trec")
    assert [d for d, _ in by_name["q3"]] == [d for d, _ in by_corpus["q3"]]
    assert [s for _, s in by_name["q3"]] == pytest.approx([s for _, s in by_corpus["q3"]], abs=1e-4)


def test_rerank_refuses_a_dense_index_name(names, beir_folder, tmp_path):
    names(name="toy.dense", type="faiss", collection="toy", model="m", dimension=8, recipe={"kind": "dense"})
    run = tmp_path / "first.trec"
    write_run({"q3": [("d1", 1.0)]}, run)
    with pytest.raises(UserError, match="'toy.dense' is a faiss index: it holds no document text"):
        rerank(["--run", str(run), "--topics", str(beir_folder / "queries.jsonl"), "--index", "toy.dense",
                "--output", str(tmp_path / "out.trec")])


def test_unknown_names_fail_with_one_line_and_close_names(beir_folder, tmp_path):
    """Exit 2 and one ``error:`` line naming the closest registered indexes (the packaged registry)."""
    queries = str(beir_folder / "queries.jsonl")
    proc = run_cli("pyserini_llama.search", "--index", "beir-v1.0.0-scifact.flt", "--topics", queries,
                   "--output", str(tmp_path / "run.trec"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown index 'beir-v1.0.0-scifact.flt'")
    assert "close names: beir-v1.0.0-scifact.flat" in lines[0]

    run = tmp_path / "first.trec"
    write_run({"q3": [("d1", 1.0)]}, run)
    proc = run_cli("pyserini_llama.rerank", "--run", str(run), "--topics", queries, "--index",
                   "beir-v1.0.0-scifakt.flat", "--output", str(tmp_path / "out.trec"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown index 'beir-v1.0.0-scifakt.flat'" in lines[0]
    assert "beir-v1.0.0-scifact.flat" in lines[0] and "nor is it a collection name" in lines[0]
    assert not (tmp_path / "run.trec").exists() and not (tmp_path / "out.trec").exists()


def test_paths_and_collection_names_keep_working(tmp_path):
    from pyserini_llama.data.documents import resolve_documents

    assert registry.resolve_index(str(tmp_path)) == tmp_path
    (tmp_path / "corpus.jsonl").write_text("")
    assert resolve_documents(str(tmp_path / "corpus.jsonl")) == tmp_path / "corpus.jsonl"  # a file, as it is
    with pytest.raises(UserError, match="close names: beir-v1.0.0-nfcorpus.flat"):
        registry.resolve_index("beir-v1.0.0-nfcorpus")
