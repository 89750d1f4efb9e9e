"""Resumed and cached work is reused only when everything that determines it is unchanged; otherwise it is
refused (hours of finished shards are never discarded silently) or made again. A reused result is
byte-identical to a fresh one.

Each test reproduces a way the old code reused stale work: a corpus edited without changing its size, shards
without a record of their inputs (even under ``--overwrite``), pipeline stages keyed by folder name and query
count (another split, another model in a folder of the same name, another collection in the same work folder),
regression steps skipped because their output existed, and the cut-down corpus of a ``--limit`` run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import report
from world import corpus_lines, write_lines



def reused(what: str, how: str) -> None:
    """What this file showed, for the reliability report."""
    report.SUMMARY.setdefault("resume_and_caches", {})[what] = how


class Killed(BaseException):
    pass


@pytest.fixture(scope="module")
def encoder(world):
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    return RepLlamaEncoder.from_checkpoint(str(world.model), device="cpu")


def _corpus(path: Path, edit: str = "") -> Path:
    lines = corpus_lines()
    if edit:  # the same number of bytes, another first word: a path-and-size key cannot see it
        assert len(edit) == len("Pressure")
        lines[-1] = lines[-1].replace("Pressure", edit)
    return write_lines(path, lines)


def _killed_after_one_shard(encoder, corpus: Path, index: Path, monkeypatch) -> None:
    from pyserini_llama.dense import build_index
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    original, calls = RepLlamaEncoder.encode_passages, []

    def dies_on_second(self, docs, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return original(self, docs, **kwargs)

    monkeypatch.setattr(RepLlamaEncoder, "encode_passages", dies_on_second)
    with pytest.raises(Killed):
        build_index(encoder, corpus, index, shard_size=2, progress=False)
    monkeypatch.setattr(RepLlamaEncoder, "encode_passages", original)


def _same_index(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in ("index", "docid"))


def test_a_same_size_edit_of_the_corpus_is_not_resumed(encoder, tmp_path, monkeypatch):
    """The old key (path, size) resumed stale vectors; the content hash refuses, --overwrite starts over."""
    from pyserini_llama.dense import build_index
    from pyserini_llama.errors import UserError

    corpus = _corpus(tmp_path / "corpus.jsonl")
    index = tmp_path / "index"
    _killed_after_one_shard(encoder, corpus, index, monkeypatch)
    size = corpus.stat().st_size
    _corpus(corpus, edit="Pleasure")
    assert corpus.stat().st_size == size
    with pytest.raises(UserError, match=r"1 finished shard\(s\) of an unfinished run with other inputs or settings "
                                        r"\(corpus_sha256\); pass --overwrite"):
        build_index(encoder, corpus, index, shard_size=2, progress=False)
    build_index(encoder, corpus, index, shard_size=2, overwrite=True, progress=False)
    fresh = build_index(encoder, corpus, tmp_path / "fresh", shard_size=2, progress=False)
    assert _same_index(index, fresh)
    reused("same-size corpus edit", "refused, then rebuilt identical to a fresh index with --overwrite")


def test_shards_without_a_record_of_their_inputs_are_refused_and_overwrite_discards_them(encoder, tmp_path,
                                                                                       monkeypatch):
    from pyserini_llama.dense import build_index
    from pyserini_llama.dense.index import MANIFEST_NAME, work_dir_for
    from pyserini_llama.errors import UserError

    corpus = _corpus(tmp_path / "corpus.jsonl")
    index = tmp_path / "index"
    _killed_after_one_shard(encoder, corpus, index, monkeypatch)
    (work_dir_for(index) / MANIFEST_NAME).unlink()
    with pytest.raises(UserError, match="no record of its inputs; pass --overwrite to discard them"):
        build_index(encoder, corpus, index, shard_size=2, progress=False)
    calls = []
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    original = RepLlamaEncoder.encode_passages
    monkeypatch.setattr(RepLlamaEncoder, "encode_passages",
                        lambda self, docs, **kw: calls.append(len(docs)) or original(self, docs, **kw))
    build_index(encoder, corpus, index, shard_size=2, overwrite=True, progress=False)
    assert sum(calls) == len(corpus_lines())  # every shard encoded again: none of the unrecorded ones reused
    assert _same_index(index, build_index(encoder, corpus, tmp_path / "fresh", shard_size=2, progress=False))
    reused("shards without manifest", "refused; --overwrite re-encodes every shard")


def test_a_resumed_index_equals_a_fresh_one(encoder, tmp_path, monkeypatch):
    from pyserini_llama.dense import build_index

    corpus = _corpus(tmp_path / "corpus.jsonl")
    index = tmp_path / "index"
    _killed_after_one_shard(encoder, corpus, index, monkeypatch)
    build_index(encoder, corpus, index, shard_size=2, progress=False)
    assert _same_index(index, build_index(encoder, corpus, tmp_path / "fresh", shard_size=2, progress=False))


# --- pipeline stages ---------------------------------------------------------------------------------------

def _stage(cache, checkpoint, corpus, queries, candidates):
    from pyserini_llama.stages import dense_stage

    return dense_stage(cache, str(checkpoint), corpus, queries, k=3, device="cpu", candidates=candidates)


@pytest.fixture
def stage_inputs(world, tmp_path):
    from world import QUERIES, RUN

    corpus = _corpus(tmp_path / "collection" / "corpus.jsonl")
    return corpus, dict(QUERIES), {q: hits for q, hits in RUN.items()}


def test_cached_stages_are_keyed_by_what_determines_them(world, tmp_path, stage_inputs):
    """Another split, another model in a folder of the same name, another collection in the same work folder:
    each is computed, never served from the cache of the other; the same inputs are served, identical."""
    from pyserini_llama.stages import StageCache
    from pyserini_llama.testing import build_tiny_llama
    from pyserini_llama.models.config import CheckpointConfig

    corpus, queries, candidates = stage_inputs
    cache = StageCache(tmp_path / "work")
    first = _stage(cache, world.model, corpus, queries, candidates)
    assert not first.cached
    again = _stage(cache, world.model, corpus, queries, candidates)
    assert again.cached and again.run == first.run
    assert again.path.read_bytes() == first.path.read_bytes()

    split = {q: queries[q] for q in ("q3", "q4")}  # another split: other queries, same count as... any
    other_split = _stage(cache, world.model, corpus, split, candidates)
    assert not other_split.cached and set(other_split.run) == {"q3", "q4"}

    twin = tmp_path / "elsewhere" / world.model.name  # another model, in a folder of the same name
    build_tiny_llama(twin, task="embedding", seed=7)
    CheckpointConfig(query_max_length=16, passage_max_length=32, dtype="float32").save(twin)
    other_model = _stage(cache, twin, corpus, queries, candidates)
    assert not other_model.cached and other_model.run != first.run

    other_corpus = _corpus(tmp_path / "other" / "collection" / "corpus.jsonl", edit="Pleasure")
    other_collection = _stage(cache, world.model, other_corpus, queries, candidates)
    assert not other_collection.cached

    fresh = _stage(StageCache(tmp_path / "fresh"), world.model, corpus, queries, candidates)
    assert fresh.path.read_bytes() == again.path.read_bytes()  # cached = fresh, byte for byte
    assert _stage(StageCache(tmp_path / "work", overwrite=True), world.model, corpus, queries,
                  candidates).cached is False  # --overwrite recomputes
    reused("pipeline stages", "another split, model (same folder name) or collection: recomputed; same: reused")


def test_a_cached_stage_with_a_garbled_record_is_recomputed(world, tmp_path, stage_inputs):
    from pyserini_llama.stages import StageCache

    corpus, queries, candidates = stage_inputs
    cache = StageCache(tmp_path / "work")
    first = _stage(cache, world.model, corpus, queries, candidates)
    meta = first.path.with_name(first.path.name + ".json")
    meta.write_text("{garbled")
    again = _stage(cache, world.model, corpus, queries, candidates)
    assert not again.cached and again.run == first.run


# --- regression steps ------------------------------------------------------------------------------------

COPY = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"


def _regression(tmp_path: Path, source: Path):
    from pyserini_llama.regressions.definitions import parse_regression

    entry = {"name": "toy.copy", "description": "d", "reproduces": "r", "scale": "small", "stage": "bm25",
             "model": "m", "topics": "t", "qrels": "q", "metrics": {"nDCG@10": None},
             "commands": [{"cmd": f'python -c "{COPY}" {source} {{out}}', "creates": "{work}/copy.txt"}]}
    return parse_regression(entry, tmp_path / "defs.yaml")


def test_a_regression_step_is_skipped_only_while_its_inputs_are_unchanged(tmp_path):
    from pyserini_llama.regressions.steps import run_steps

    source = tmp_path / "input.txt"
    source.write_text("first\n")
    work = tmp_path / "work"
    work.mkdir()
    regression, log = _regression(tmp_path, source), []
    values = {"work": str(work)}
    assert len(run_steps(regression, values, log.append)) == 1
    assert (work / "copy.txt").read_text() == "first\n"
    assert run_steps(regression, values, log.append) == [] and "inputs are unchanged" in log[-1]
    source.write_text("other\n")  # same size, other content
    assert len(run_steps(regression, values, log.append)) == 1
    assert "was made from other inputs" in " ".join(log) and (work / "copy.txt").read_text() == "other\n"
    reused("regression steps", "skipped only when the command and the content of what it names are unchanged")


def test_an_output_put_there_by_hand_is_used_and_said_so(tmp_path):
    from pyserini_llama.regressions.steps import run_steps

    source = tmp_path / "input.txt"
    source.write_text("first\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "copy.txt").write_text("made on another machine\n")
    log: list = []
    assert run_steps(_regression(tmp_path, source), {"work": str(work)}, log.append) == []
    assert "put there by hand" in log[-1] and (work / "copy.txt").read_text() == "made on another machine\n"


def test_the_limited_corpus_follows_its_source(tmp_path):
    from pyserini_llama.regressions.inputs import _subset_corpus_once

    source = _corpus(tmp_path / "corpus.jsonl")
    subset = tmp_path / "work" / "corpus-subset" / "toy" / "corpus.jsonl"
    _subset_corpus_once(source, {"d6"}, 1, subset)
    first = subset.read_bytes()
    mtime = subset.stat().st_mtime_ns
    _subset_corpus_once(source, {"d6"}, 1, subset)
    assert subset.stat().st_mtime_ns == mtime  # unchanged inputs: kept (the group's indexes stay valid)
    _corpus(source, edit="Pleasure")
    _subset_corpus_once(source, {"d6"}, 1, subset)
    assert subset.read_bytes() != first and b"Pleasure" in subset.read_bytes()



# --- the prebuilt-index cache ------------------------------------------------------------------------------

def _registry(tmp_path: Path, entries: list) -> Path:
    import yaml

    folder = tmp_path / "registry"
    folder.mkdir(exist_ok=True)
    (folder / "test.yaml").write_text(yaml.safe_dump({"entries": entries}))
    return folder


def test_a_recipe_index_is_rebuilt_when_its_corpus_changes(world, tmp_path, monkeypatch):
    from pyserini_llama.prebuilt_indexes.registry import build_index_from_recipe, get_descriptor
    from world import write_beir

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "cache"))
    collection = write_beir(tmp_path / "collection")
    registry = _registry(tmp_path, world.registry_yaml(collection)["entries"][:1])
    built = build_index_from_recipe(get_descriptor("toy.dense", [registry]), device="cpu")
    first, mtime = (built / "index").read_bytes(), (built / "index").stat().st_mtime_ns
    build_index_from_recipe(get_descriptor("toy.dense", [registry]), device="cpu")
    assert (built / "index").stat().st_mtime_ns == mtime  # same inputs: the cached index is kept
    _corpus(collection / "corpus.jsonl", edit="Pleasure")
    build_index_from_recipe(get_descriptor("toy.dense", [registry]), device="cpu")
    assert (built / "index").read_bytes() != first  # the corpus changed: built again, never served stale
    fresh = build_index_from_recipe(get_descriptor("toy.dense", [registry]), device="cpu", overwrite=True)
    assert (fresh / "index").read_bytes() == (built / "index").read_bytes()
    reused("prebuilt recipe index", "kept while its recipe, corpus bytes and model are unchanged; else rebuilt")


def test_a_downloaded_index_is_fetched_again_when_the_registry_names_another_archive(world, tmp_path, monkeypatch):
    from pyserini_llama.prebuilt_indexes.registry import fetch_index, get_descriptor, read_manifest
    from test_download import index_tarball, md5

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "cache"))
    entry = world.registry_yaml(world.beir)["entries"][1]
    first = fetch_index(get_descriptor("toy.download", [_registry(tmp_path, [entry])]), progress=False)
    assert read_manifest("toy.download")["archive_md5"] == world.tarball_md5
    newer = index_tarball(tmp_path / "newer", name="newer-index")
    url = world.server.add("/newer-index.tar.gz", newer)
    registry = _registry(tmp_path, [dict(entry, md5=md5(newer), urls=[url])])
    again = fetch_index(get_descriptor("toy.download", [registry]), progress=False)
    assert again == first and read_manifest("toy.download")["archive_md5"] == md5(newer)
    reused("prebuilt download", "kept while the registry names the same archive (md5); else fetched again")
