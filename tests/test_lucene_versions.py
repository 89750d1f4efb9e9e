"""Lucene versions of indexes: recorded, checked against the installed Pyserini, refused or rebuilt.

Pyserini 1.x (Lucene 9) cannot read an index written by Pyserini 2.x (Lucene 10), and index folders and the
prebuilt-index cache are shared between the two. An index from the future is simulated by rewriting the
version numbers in its ``segments_N`` header (what Lucene checks first); the real cross-version case is
exercised by CI, which runs the Pyserini tests under both release lines.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml

from pyserini_llama import lucene
from pyserini_llama.errors import UserError


def segments_header(written: int, created: int, generation: str = "1") -> bytes:
    """The start of a ``segments_N`` file: codec header, index id, commit suffix, versions."""
    return (b"\x3f\xd7\x6c\x17" + bytes([8]) + b"segments" + struct.pack(">i", 10) + bytes(range(16)) +
            bytes([len(generation)]) + generation.encode() + bytes([written, 4, 0, created]) + b"\x00" * 40)


def set_versions(index_dir: Path, written: int, created: int) -> None:
    """Rewrite the newest commit's version numbers (single-byte vInts, as for any Lucene below 128)."""
    path = max(Path(index_dir).glob("segments_*"), key=lucene._generation)
    data = bytearray(path.read_bytes())
    pos = 4 + 1 + 8 + 4 + 16
    pos += 1 + data[pos]
    data[pos], data[pos + 3] = written, created
    path.write_bytes(bytes(data))


def test_segments_header_is_read(tmp_path):
    (tmp_path / "segments_2").write_bytes(segments_header(9, 8, "2"))
    (tmp_path / "segments_a").write_bytes(segments_header(10, 9, "a"))  # generation 10: the newest
    assert lucene.index_lucene_versions(tmp_path) == (10, 9)
    (tmp_path / "segments_a").write_bytes(b"not a lucene file")
    assert lucene.index_lucene_versions(tmp_path) is None
    assert lucene.index_lucene_versions(tmp_path / "missing") is None


@pytest.mark.parametrize("written,created,readable", [(9, 9, True), (9, 8, True), (10, 10, False),
                                                       (10, 9, False), (9, 7, False)])
def test_lucene_reads_its_own_and_the_previous_major(tmp_path, monkeypatch, written, created, readable):
    monkeypatch.setattr(lucene, "_installed", ((9, 9, 1),))
    (tmp_path / "segments_1").write_bytes(segments_header(written, created))
    reason = lucene.unreadable_reason(tmp_path)
    assert (reason is None) == readable, reason
    if not readable:
        assert "Lucene 9.9.1" in reason and ("written by Lucene 10" in reason or "created by Lucene 7" in reason)


def test_installed_lucene_version_matches_the_pyserini_line():
    import importlib.metadata as md

    pytest.importorskip("pyserini")
    installed = lucene.installed_lucene_version()
    assert installed is not None
    assert installed[0] == (10 if int(md.version("pyserini").split(".")[0]) >= 2 else 9)


@pytest.mark.integration
def test_index_from_a_newer_lucene_is_refused_or_rebuilt(beir_folder, tmp_path, caplog):
    major = lucene.installed_lucene_version()[0]
    index = lucene.build_lucene_index(beir_folder / "corpus.jsonl", tmp_path / "index")
    assert lucene.index_lucene_versions(index) == (major, major)
    assert json.loads((index / lucene.SOURCE_NAME).read_text())["lucene_major"] == major

    set_versions(index, major + 1, major + 1)  # as if a newer Pyserini had rebuilt it in this shared folder
    with pytest.raises(UserError, match=f"written by Lucene {major + 1}") as e:
        lucene.open_searcher(index)
    assert "\n" not in str(e.value)
    with caplog.at_level("WARNING"):
        lucene.ensure_lucene_index(beir_folder / "corpus.jsonl", index)
    assert f"rebuilding {index}: it was written by Lucene {major + 1}" in caplog.text
    assert lucene.index_lucene_versions(index) == (major, major)
    assert lucene.bm25_search(index, {"q3": "boundary layer heat"}, k=1)["q3"][0][0] == "d3"

    if major >= 10:  # an index of the previous Lucene major (what Pyserini 1.x writes) is read as it is
        set_versions(index, major - 1, major - 1)
        assert lucene.unreadable_reason(index) is None


@pytest.mark.integration
def test_cached_prebuilt_index_records_and_checks_its_lucene(beir_folder, tmp_path, monkeypatch, caplog):
    from pyserini_llama.prebuilt_indexes import registry

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "cache"))
    extra = tmp_path / "registry"
    extra.mkdir()
    (extra / "toy.yaml").write_text(yaml.safe_dump({"entries": [dict(
        name="toy.flat", type="lucene", collection=str(beir_folder), model="bm25", recipe={"kind": "lucene"})]}))
    major = lucene.installed_lucene_version()[0]
    path = registry.resolve_index("toy.flat", build=True, extra_dirs=[extra])
    manifest = json.loads(registry.manifest_path("toy.flat").read_text())
    assert (manifest["lucene_written"], manifest["lucene_created"]) == (major, major)

    set_versions(path, major + 1, major + 1)
    with pytest.raises(UserError, match="--build toy.flat --overwrite"):
        registry.resolve_index("toy.flat", extra_dirs=[extra])
    with caplog.at_level("WARNING"):
        assert registry.resolve_index("toy.flat", build=True, extra_dirs=[extra]) == path
    assert "rebuilding index 'toy.flat'" in caplog.text
    assert lucene.index_lucene_versions(path) == (major, major)
