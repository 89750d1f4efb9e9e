"""Nothing outside the project's own folders is ever deleted, and nothing is deleted through a link.

Every case puts someone's data where a careless command would delete it (a folder a registry name climbs to, a
link in the index cache, a folder passed with ``--overwrite``, a link in place of a shard folder) and checks the
data is still there after the command, which must refuse with one line.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import report
from pyserini_llama.errors import UserError

REFUSED: list = []


def victim(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "precious.txt").write_text("someone's data\n")
    return folder


def intact(folder: Path) -> bool:
    return (folder / "precious.txt").read_text() == "someone's data\n"


def refused(what: str) -> None:
    REFUSED.append(what)
    report.SUMMARY.setdefault("owned_paths", {})["refused"] = sorted(REFUSED)


@pytest.mark.parametrize("name", ["../../victim", "/ABSOLUTE/victim", "..", ".hidden", "a/b", "x\ny", ""])
def test_names_that_would_leave_the_folder_are_refused(name, tmp_path):
    from pyserini_llama.paths import safe_name

    name = name.replace("/ABSOLUTE", str(tmp_path))
    with pytest.raises(UserError, match="cannot name a folder"):
        safe_name(name, "index name")


def test_remove_tree_refuses_links_and_paths_outside_its_root(tmp_path):
    from pyserini_llama.paths import remove_tree

    root, data = tmp_path / "cache", victim(tmp_path / "data")
    root.mkdir()
    (root / "link").symlink_to(data)
    with pytest.raises(UserError, match="symbolic link; refusing to delete through it"):
        remove_tree(root / "link", root)
    with pytest.raises(UserError, match="refusing to delete a path outside"):
        remove_tree(data, root)
    with pytest.raises(UserError, match="refusing to delete a path outside"):
        remove_tree(root / ".." / "data", root)
    with pytest.raises(UserError, match="refusing to delete a path outside"):
        remove_tree(root, root)  # the root itself is not inside the root
    assert intact(data) and (root / "link").is_symlink()
    refused("remove_tree: links, paths outside the owned folder, the folder itself")


@pytest.mark.parametrize("action", ["--fetch", "--build"])
def test_a_cache_entry_that_is_a_link_is_not_deleted_through(action, world, tmp_path, monkeypatch):
    """A half-finished cache entry is discarded before a fetch or build; a link there points at someone's data."""
    from clis import good_registry
    from pyserini_llama.prebuilt_indexes.__main__ import main

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "cache"))
    registry = tmp_path / "in" / "registry"
    registry.mkdir(parents=True)
    world_beir = world.beir
    data = yaml.safe_load(yaml.safe_dump(good_registry(registry, world)))
    for entry in data["entries"]:
        entry["collection"] = str(world_beir)
        if "recipe" in entry:
            entry["recipe"]["collection"] = str(world_beir)
    (registry / "test.yaml").write_text(yaml.safe_dump(data))
    name = "toy.download" if action == "--fetch" else "toy.dense"
    (tmp_path / "cache" / "indexes").mkdir(parents=True)
    someone = victim(tmp_path / "someone")
    (tmp_path / "cache" / "indexes" / name).symlink_to(someone)
    with pytest.raises(UserError, match="symbolic link; refusing to delete through it|resolves outside"):
        main([action, name, "--registry", str(registry), "--overwrite", "--device", "cpu", "--quiet"]
             if action == "--fetch" else [action, name, "--registry", str(registry), "--overwrite", "--device",
                                          "cpu"])
    assert intact(someone)
    refused(f"prebuilt_indexes {action}: an entry that links elsewhere")


def test_a_shard_folder_that_is_a_link_is_not_deleted_through(world, tmp_path):
    from pyserini_llama.dense import build_index
    from pyserini_llama.dense.index import work_dir_for
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    someone = victim(tmp_path / "someone")
    index = tmp_path / "index"
    work_dir_for(index).symlink_to(someone)
    encoder = RepLlamaEncoder.from_checkpoint(str(world.model), device="cpu")
    with pytest.raises(UserError, match="is a link or a file"):
        build_index(encoder, world.beir / "corpus.jsonl", index, overwrite=True, progress=False)
    assert intact(someone) and not index.exists()
    refused("encode: a shard folder that links elsewhere")


@pytest.mark.parametrize("writer", ["dense index", "lucene index", "trainer output", "onnx export"])
def test_overwrite_never_replaces_a_folder_of_someone_elses_files(writer, tmp_path):
    """``--overwrite`` replaces what the command made before, not whatever folder it is given."""
    from pyserini_llama.data.atomic import check_output_dir

    owns = {"dense index": lambda: __import__("pyserini_llama.dense.index", fromlist=["x"]).INDEX_FILES,
            "lucene index": lambda: __import__("pyserini_llama.lucene", fromlist=["x"]).LUCENE_FILES,
            "trainer output": lambda: __import__("pyserini_llama.train.loop", fromlist=["x"]).OUTPUT_FILES,
            "onnx export": lambda: __import__("pyserini_llama.encoders.onnx", fromlist=["x"]).EXPORT_FILES}[writer]()
    home = victim(tmp_path / "home")
    with pytest.raises(UserError, match=r"holds files this program did not write \(precious\.txt\)"):
        check_output_dir(home, overwrite=True, owns=owns)
    assert intact(home)
    refused(f"--overwrite on someone's folder: {writer}")


def test_a_trainer_never_deletes_a_folder_it_did_not_make(world, tmp_path):
    from pyserini_llama.train.loop import prepare_output

    home = victim(tmp_path / "home")
    for resume, overwrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(UserError, match="precious.txt|already exists"):
            prepare_output(home, resume, overwrite)
    assert intact(home)
    refused("train: --output on someone's folder, with or without --overwrite/--resume")


def test_a_regression_cannot_create_or_delete_outside_its_work_folder(tmp_path):
    from pyserini_llama.errors import DataError
    from pyserini_llama.regressions.definitions import parse_regression

    base = {"name": "x", "description": "d", "reproduces": "r", "scale": "small", "stage": "bm25", "model": "m",
            "topics": "t", "qrels": "q", "metrics": {"nDCG@10": None}}
    for creates in ("{work}/../../victim", "/tmp/victim", "victim", "{work}/a/../../b"):
        with pytest.raises(DataError, match="creates must be a path under"):
            parse_regression({**base, "commands": [{"cmd": "python -c 1", "creates": creates}]}, tmp_path / "d.yaml")
    for group in ("../victim", "/tmp/victim", ".."):
        with pytest.raises(DataError, match="cannot name a folder"):
            parse_regression({**base, "group": group, "commands": ["python -c 1"]}, tmp_path / "d.yaml")
    refused("regressions: creates and group outside the work folder")


def test_a_collection_name_never_leaves_the_download_cache(tmp_path, monkeypatch):
    from pyserini_llama.data.collections import resolve_collection

    monkeypatch.setenv("PYSERINI_LLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYSERINI_LLAMA_OFFLINE", "1")
    someone = victim(tmp_path / "someone")
    for name in ("../../someone", "../someone", str(someone) + "/../x"):
        with pytest.raises(UserError):
            resolve_collection(name, data_dir=str(tmp_path / "data"))
    assert intact(someone) and os.listdir(someone) == ["precious.txt"]
