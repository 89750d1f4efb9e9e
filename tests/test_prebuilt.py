"""Prebuilt index registry: downloads into Pyserini's cache (md5, safe extraction) and recipe builds."""
from __future__ import annotations

import json

import pytest
import yaml

from pyserini_llama.download import directory_md5
from pyserini_llama.errors import UserError
from pyserini_llama.prebuilt_indexes import registry
from pyserini_llama.prebuilt_indexes.__main__ import main as cli
from test_download import FileServer, evil_tar, index_tarball, md5


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "pyserini-cache"))
    return tmp_path / "pyserini-cache" / "indexes"


def write_registry(folder, entries):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.yaml").write_text(yaml.safe_dump({"entries": entries}))
    return folder


def test_packaged_descriptors_are_complete():
    reg = registry.load_registry()
    assert {"beir-v1.0.0-scifact.flat", "msmarco-v1-passage", "beir-scifact.repllama-smollm2",
            "msmarco-v1-passage.repllama-v1-7b"} <= set(reg)
    assert not [n for n in reg if "llara" in n]  # no LLaRA checkpoint is packaged: nothing to build them from
    scifact = reg["beir-v1.0.0-scifact.flat"]
    assert scifact.md5 == "59777038fe0539e600658591e322ea57" and scifact.documents == 5183
    assert scifact.urls[0].endswith("lucene-inverted.beir-v1.0.0-scifact.flat.20221116.505594.tar.gz")
    for d in reg.values():
        assert d.urls or d.recipe, d.name
        assert not d.urls or len(d.md5) == 32, d.name
        assert d.type in ("lucene", "faiss") and (d.type == "lucene") == (d.dimension is None), d.name


def test_fetch_into_pyserini_cache_with_md5(server, cache, tmp_path):
    data = index_tarball(tmp_path)
    extra = write_registry(tmp_path / "reg", [dict(
        name="toy.repllama", type="faiss", collection="toy", model="repllama", dimension=8, dtype="float32",
        documents=5, size=len(data), md5=md5(data), urls=[server.add("/toy.tar.gz", data)])])
    path = registry.resolve_index("toy.repllama", extra_dirs=[extra])
    assert path == cache / "toy.repllama" and (path / "index").exists() and (path / "docid").exists()
    manifest = json.loads((cache / "toy.repllama.json").read_text())
    assert manifest["archive_md5"] == md5(data) and manifest["origin"] == "download"
    assert registry.resolve_index("toy.repllama", extra_dirs=[extra]) == path
    assert len(server.requests) == 1  # cached: no second download
    assert registry.resolve_index(str(path)) == path  # a path works wherever a name does


def test_corrupted_and_traversal_archives_are_refused(server, cache, tmp_path):
    data = index_tarball(tmp_path)
    evil = evil_tar("traversal")
    extra = write_registry(tmp_path / "reg", [
        dict(name="corrupt", type="faiss", collection="toy", model="m", dimension=8, md5=md5(data),
             urls=[server.add("/corrupt.tar.gz", data[:-5] + b"xxxxx")]),
        dict(name="evil", type="lucene", collection="toy", model="bm25", md5=md5(evil),
             urls=[server.add("/evil.tar.gz", evil)])])
    with pytest.raises(UserError, match="md5 mismatch"):
        registry.resolve_index("corrupt", extra_dirs=[extra])
    with pytest.raises(UserError, match="leaves the target folder"):
        registry.resolve_index("evil", extra_dirs=[extra])
    assert sorted(p.name for p in cache.iterdir()) == []  # no index, no manifest, no archive, no temp folder
    assert not (cache.parent / "evil").exists()


def test_recipe_build_records_checksum(cache, tmp_path, beir_folder):
    def toy_recipe(descriptor, options, corpus, output, device):
        output.mkdir()
        (output / "docid").write_text("".join(json.loads(l)["_id"] + "\n" for l in corpus.open()))
        (output / "options.json").write_text(json.dumps(options))

    registry.register_recipe("toy", toy_recipe)
    try:
        extra = write_registry(tmp_path / "reg", [dict(
            name="toy.built", type="faiss", collection=str(beir_folder), model="m", dimension=8,
            recipe={"kind": "toy", "scale": 2})])
        with pytest.raises(UserError, match="--build toy.built"):
            registry.resolve_index("toy.built", extra_dirs=[extra])
        assert cli(["--build", "toy.built", "--registry", str(extra)]) == 0
        path = cache / "toy.built"
        assert (path / "docid").read_text().split() == ["d1", "d2", "d3", "d4", "d5", "d6"]
        assert json.loads((path / "options.json").read_text()) == {"scale": 2}
        manifest = json.loads((cache / "toy.built.json").read_text())
        assert manifest["origin"] == "recipe" and manifest["index_md5"] == directory_md5(path)
        assert manifest["recipe"] == {"kind": "toy", "scale": 2}
        assert registry.verify_index("toy.built")
        (path / "docid").write_text("tampered\n")
        assert not registry.verify_index("toy.built")
        assert cli(["--verify", "toy.built"]) == 1
    finally:
        registry.RECIPES.pop("toy")


def test_bad_descriptors_are_reported(tmp_path):
    extra = write_registry(tmp_path / "reg", [dict(name="x", type="faiss", collection="c", model="m",
                                                   urls=["http://127.0.0.1/x.tar.gz"])])
    with pytest.raises(UserError, match="download urls need an md5"):
        registry.load_registry([extra])
    with pytest.raises(UserError, match="unknown index 'nope'"):
        registry.resolve_index("nope")


def test_cli_list(cache, capsys):
    assert cli(["--list"]) == 0
    out = capsys.readouterr().out
    assert "beir-v1.0.0-scifact.flat" in out and "download+recipe" in out and str(cache) in out


@pytest.mark.integration
def test_lucene_recipe_builds_a_searchable_index(cache, tmp_path, beir_folder):
    extra = write_registry(tmp_path / "reg", [dict(name="toy.flat", type="lucene", collection=str(beir_folder),
                                                   model="bm25", recipe={"kind": "lucene"})])
    path = registry.build_index_from_recipe(registry.get_descriptor("toy.flat", [extra]))
    from pyserini_llama.lucene import bm25_search

    run = bm25_search(path, {"q3": "boundary layer heat"}, k=3)
    assert run["q3"][0][0] == "d3"
    assert json.loads((cache / "toy.flat.json").read_text())["index_md5"] == directory_md5(path)
