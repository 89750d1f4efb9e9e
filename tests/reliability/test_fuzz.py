"""Fuzzing every reader: whatever bytes a file holds, its reader returns a valid result or raises a
DataError/UserError (a one-line message naming the file), never any other exception.

The readers: runs (plain and ``.gz``), topics TSV, TREC qrels, BEIR qrels, queries and corpus, negatives JSONL,
the faiss index header, the docid file, ``index_info.json``, ``pyserini_llama.json``, ``adapter_config.json``,
the prebuilt-index registry YAML and the regression YAML; and the ``mine_negatives`` command. Inputs are
arbitrary bytes, and text assembled from the pieces each format is made of (ids, ``Q0``, numbers including
``nan``/``inf``, tabs, JSON objects with the format's own keys and values of every type, YAML of the right and
wrong shapes, invalid UTF-8, a byte-order mark), so that examples get past the first checks.
``derandomize=True`` makes every run try the same examples; the counts go to the reliability report.
"""
from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import report
from pyserini_llama.data import beir, trec
from pyserini_llama.errors import UserError

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FEWER = settings(SETTINGS, max_examples=80)  # the YAML readers parse every packaged definition per example
TRIED: Counter = Counter()
REJECTED: Counter = Counter()

PIECES = ["q1", "q2", "d1", "d2", "Q0", "0", "1", "2", "-1", "1.5", "3e2", "nan", "NaN", "inf", "-inf", "1e999",
          "run", "query-id", "corpus-id", "score", "é", "\u2028", "\x00", "\x0b", "\x85", "#", '"', "{", "}"]
SEPARATORS = [" ", "\t", "  ", "\t\t", "\n", "\r\n", ""]

line_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=8).flatmap(
    lambda parts: st.lists(st.sampled_from(SEPARATORS), min_size=len(parts), max_size=len(parts)).map(
        lambda seps: "".join(p + s for p, s in zip(parts, seps))))
structured = st.lists(line_text, max_size=8).map(lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass"))
raw_bytes = st.binary(max_size=300)
with_bad_bytes = st.tuples(structured, st.binary(max_size=4)).map(lambda p: p[0] + p[1])
BOM = b"\xef\xbb\xbf"
file_bytes = st.one_of(structured, raw_bytes, with_bad_bytes, structured.map(lambda b: BOM + b))

KEYS = ["_id", "id", "docid", "qid", "title", "text", "contents", "query_id", "negatives", "positives", "input"]
json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                    st.text(max_size=10), st.sampled_from(["", " ", "d1", "q1"])),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                          max_leaves=8)
json_row = st.one_of(st.dictionaries(st.sampled_from(KEYS), json_value, max_size=4).map(json.dumps),
                     json_value.map(json.dumps), line_text)
jsonl_bytes = st.one_of(st.lists(json_row, max_size=6).map(lambda rows: "\n".join(rows).encode("utf-8",
                                                                                               "surrogatepass")),
                        raw_bytes, with_bad_bytes)


def json_file(keys, values=json_value):
    """A JSON file of the format's own keys with values of every type, or anything else."""
    objects = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys)).map(
        lambda d: json.dumps(d).encode("utf-8", "surrogatepass"))
    cut = st.tuples(objects, st.binary(max_size=3)).map(lambda p: p[0][:-1] + p[1])
    return st.one_of(objects, objects.map(lambda b: BOM + b),
                     json_value.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")), raw_bytes, cut)


def yaml_file(keys, values):
    """A YAML file: one entry, ``entries: [...]``, ``template`` + ``each``, or any other shape or bytes."""
    import yaml

    entry = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))
    shaped = st.one_of(entry, st.lists(entry, max_size=3).map(lambda e: {"entries": e}),
                       st.tuples(entry, st.lists(st.dictionaries(st.sampled_from(["vars"] + keys), values,
                                                                 max_size=3), max_size=3)).map(
                           lambda t: {"template": t[0], "each": t[1]}), json_value)
    dumped = shaped.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8", "surrogatepass"))
    broken = st.tuples(dumped, st.sampled_from([b"[", b"{", b": :", b"\t", b"\xff"])).map(lambda p: p[0] + p[1])
    return st.one_of(dumped, dumped.map(lambda b: BOM + b), raw_bytes, with_bad_bytes, broken)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def parse(name: str, path: Path, data: bytes, parser, names_file: bool = True):
    """Write ``data`` to ``path`` and parse it; clear errors are fine, anything else fails the test.

    A clear error is one line; a parser's error names the file (``names_file``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    TRIED[name] += 1
    report.record("fuzz", examples=sum(TRIED.values()), per_reader=dict(sorted(TRIED.items())),
                  rejected_with_a_clear_error=sum(REJECTED.values()), other_exceptions=0)
    try:
        return parser(path)
    except UserError as e:
        REJECTED[name] += 1
        report.record("fuzz", rejected_with_a_clear_error=sum(REJECTED.values()))
        message = str(e)
        assert "\n" not in message and (str(path) in message or not names_file), message
        return None


@SETTINGS
@given(data=file_bytes)
def test_load_run(folder, data):
    run = parse("load_run", folder / "run.trec", data, trec.load_run)
    if run is not None:
        for hits in run.values():
            scores = [s for _, s in hits]
            assert all(not math.isnan(s) for s in scores) and scores == sorted(scores, reverse=True)


@SETTINGS
@given(data=file_bytes)
def test_load_run_gzipped(folder, data):
    """A ``.gz`` name with bytes that are not gzip (or a gzip of anything) is a clear error too."""
    parse("load_run (.gz, raw bytes)", folder / "run.trec.gz", data, trec.load_run)
    parse("load_run (.gz, compressed)", folder / "run2.trec.gz", gzip.compress(data)[:max(10, len(data) // 2)],
          trec.load_run)


@SETTINGS
@given(data=file_bytes)
def test_load_topics(folder, data):
    topics = parse("load_topics", folder / "topics.tsv", data, trec.load_topics)
    if topics is not None:
        assert all(q.strip() and t.strip() for q, t in topics.items())


@SETTINGS
@given(data=file_bytes)
def test_load_trec_qrels(folder, data):
    qrels = parse("load_trec_qrels", folder / "qrels.txt", data, trec.load_trec_qrels)
    if qrels is not None:
        assert all(isinstance(rel, int) for judged in qrels.values() for rel in judged.values())


@SETTINGS
@given(data=file_bytes)
def test_beir_load_qrels(folder, data):
    qrels = parse("beir.load_qrels", folder / "qrels.tsv", data, beir.load_qrels)
    if qrels is not None:
        assert all(isinstance(rel, int) for judged in qrels.values() for rel in judged.values())


@SETTINGS
@given(data=jsonl_bytes)
def test_beir_load_queries(folder, data):
    queries = parse("beir.load_queries", folder / "queries.jsonl", data, beir.load_queries)
    if queries is not None:
        assert queries and all(isinstance(t, str) and t.strip() for t in queries.values())


@SETTINGS
@given(data=jsonl_bytes)
def test_beir_iter_corpus(folder, data):
    docs = parse("beir.iter_corpus", folder / "corpus.jsonl", data, lambda p: list(beir.iter_corpus(p)))
    if docs is not None:  # documents without text are kept (as Anserini keeps them), ids are unique
        assert len({d.docid for d in docs}) == len(docs) and all(d.docid.strip() == d.docid for d in docs)


@SETTINGS
@given(run=file_bytes, qrels=file_bytes, negatives=st.integers(1, 5))  # bad counts: argparse, test_bad_input
def test_mine_negatives_input(folder, run, qrels, negatives):
    """The mine_negatives CLI on fuzzed run and qrels files: exit 0 with a JSONL file, or a clear error."""
    from pyserini_llama.mine_negatives import main

    (folder / "train-qrels.tsv").write_bytes(qrels)
    output = folder / "negatives.jsonl"
    argv = ["--run", str(folder / "run.trec"), "--qrels", str(folder / "train-qrels.tsv"), "--output", str(output),
            "--num", str(negatives), "--overwrite"]
    status = parse("mine_negatives", folder / "run.trec", run, lambda p: main(argv), names_file=False)
    if status is not None:
        assert status == 0
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert rows and all(set(r) == {"query_id", "positives", "negatives"} for r in rows)
        output.unlink()


# --- index folders ---------------------------------------------------------------------------------------

@st.composite
def faiss_file(draw):
    """A flat index header with fuzzed fields (fourcc, d, ntotal, metric, float count) and a payload of any
    length, or arbitrary bytes."""
    from pyserini_llama.dense.faiss_format import _COMMON, _FLAT_TAIL

    if draw(st.booleans()):
        return draw(raw_bytes)
    d, n = draw(st.integers(-2, 6)), draw(st.integers(-2, 6))
    floats = draw(st.one_of(st.just(max(d, 0) * max(n, 0)), st.integers(0, 50)))
    head = _COMMON.pack(draw(st.sampled_from([b"IxFI", b"IxF2", b"IxSQ", b"IHNf", b"\0\0\0\0"])), d, n, 1 << 20,
                        1 << 20, 1, draw(st.integers(-1, 2))) + _FLAT_TAIL.pack(floats)
    body = draw(st.one_of(st.just(b"\0" * 4 * floats), st.binary(max_size=200)))
    return head[:draw(st.integers(0, len(head)))] if draw(st.booleans()) and not body else head + body


@SETTINGS
@given(data=faiss_file())
def test_faiss_index_header(folder, data):
    from pyserini_llama.dense.faiss_format import read_flat_index

    flat = parse("faiss index header", folder / "index", data, read_flat_index)
    if flat is not None:
        assert flat.vectors.ndim == 2 and flat.vectors.shape[1] > 0 and flat.metric in ("ip", "l2")


docid_lines = st.lists(st.one_of(st.sampled_from(["d1", "d2", "d 3", "", " ", "d\t4", "é", "\x00"]),
                                 st.text(max_size=5)), max_size=8)
docid_bytes = st.one_of(docid_lines.map(lambda ids: "".join(i + "\n" for i in ids).encode("utf-8", "surrogatepass")),
                        docid_lines.map(lambda ids: BOM + "\n".join(ids).encode("utf-8", "surrogatepass")), raw_bytes,
                        with_bad_bytes)


@SETTINGS
@given(data=docid_bytes)
def test_docid_file(folder, data):
    from pyserini_llama.dense.faiss_format import read_docids
    from pyserini_llama.dense.index import _checked_docids

    checked = parse("docid (index check)", folder / "docid", data, _checked_docids)
    if checked is not None:
        assert all(d and not any(c.isspace() for c in d) for d in checked)
        assert read_docids(folder / "docid") == checked  # the searcher reads the ids the check passed
    parse("docid (searcher)", folder / "docid", data, read_docids)


INFO_KEYS = ["encoder", "dimension", "count", "config", "max_length", "corpus", "corpus_sha256", "shard_size"]


@SETTINGS
@given(data=json_file(INFO_KEYS))
def test_index_info_json(folder, data):
    from pyserini_llama.dense.index import INFO_TYPES, read_index_info

    info = parse("index_info.json", folder / "info" / "index_info.json", data, lambda p: read_index_info(p.parent))
    if info is not None:
        assert all(isinstance(info[k], t) for k, t in INFO_TYPES.items() if k in info)


# --- checkpoint folders -------------------------------------------------------------------------------------

CONFIG_KEYS = ["kind", "base_model", "query_prefix", "passage_prefix", "query_max_length", "passage_max_length",
               "pooling", "pooling_k", "normalize", "append_eos", "dtype", "padding_side", "extra", "colour"]
config_values = st.one_of(json_value, st.sampled_from(["repllama", "rankllama", "llara", "eos", "mean_last_k",
                                                       "left", "right", "bfloat16", 0, 1, 32, -1]))


@SETTINGS
@given(data=json_file(CONFIG_KEYS, config_values))
def test_pyserini_llama_json(folder, data):
    from pyserini_llama.models.config import CheckpointConfig

    config = parse("pyserini_llama.json", folder / "ckpt" / "pyserini_llama.json", data,
                   lambda p: CheckpointConfig.load(p.parent))
    if config is not None:
        config.validate()  # whatever was accepted is a valid config


ADAPTER_KEYS = ["peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                "base_model_name_or_path", "inference_mode"]


@SETTINGS
@given(data=json_file(ADAPTER_KEYS))
def test_adapter_config_json(folder, data):
    from pyserini_llama.models.load import adapter_base_model

    (folder / "adapter").mkdir(exist_ok=True)
    base = parse("adapter_config.json", folder / "adapter" / "adapter_config.json", data,
                 lambda p: adapter_base_model(p.parent, None))
    if base is not None:
        assert isinstance(base, str) and base


# --- definitions -----------------------------------------------------------------------------------------

REGISTRY_KEYS = ["name", "type", "collection", "model", "dimension", "dtype", "documents", "size", "md5", "urls",
                 "recipe", "description"]
registry_values = st.one_of(json_value, st.sampled_from(["toy", "../x", "/abs", "faiss", "lucene", 64,
                                                         "0" * 32, ["http://x"], {"kind": "dense"},
                                                         {"kind": "dense", "max_length": "long"}]))


@pytest.fixture(scope="module")
def no_packaged(tmp_path_factory):
    """The fuzzed folder alone: the packaged definitions are parsed by their own tests."""
    from pyserini_llama.prebuilt_indexes import registry
    from pyserini_llama.regressions import definitions

    empty = tmp_path_factory.mktemp("empty")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "PACKAGED", empty)
        mp.setattr(definitions, "PACKAGED", empty)
        yield


@FEWER
@given(data=yaml_file(REGISTRY_KEYS, registry_values))
def test_prebuilt_registry_yaml(folder, no_packaged, data):
    from pyserini_llama.paths import SAFE_NAME
    from pyserini_llama.prebuilt_indexes.registry import load_registry

    (folder / "registry").mkdir(exist_ok=True)
    found = parse("registry YAML", folder / "registry" / "x.yaml", data, lambda p: load_registry([p.parent]))
    if found is not None:
        assert all(SAFE_NAME.fullmatch(name) for name in found)  # every name can only name a cache folder


REGRESSION_KEYS = ["name", "description", "reproduces", "scale", "stage", "model", "collection", "topics", "qrels",
                   "requires", "group", "commands", "run", "metrics", "limited", "pending"]
regression_values = st.one_of(json_value, st.sampled_from([
    "x", "small", "bm25", {"collection": "c", "split": "test"}, ["python -m x"],
    [{"cmd": "python -m x {out}", "creates": "{work}/a"}], [{"cmd": "c", "creates": "../a"}],
    {"nDCG@10": {"expected": 0.5, "tolerance": "tight"}}, {"nDCG@10": 0.5}, "../group",
    {"limit": 2, "device": "cpu", "metrics": {"nDCG@10": 0.5}}]))


@FEWER
@given(data=yaml_file(REGRESSION_KEYS, regression_values))
def test_regression_yaml(folder, no_packaged, data):
    from pyserini_llama.paths import SAFE_NAME
    from pyserini_llama.regressions.definitions import load_definitions

    (folder / "defs").mkdir(exist_ok=True)
    found = parse("regression YAML", folder / "defs" / "x.yaml", data, lambda p: load_definitions([p.parent]))
    if found is not None:
        for d in found.values():
            assert SAFE_NAME.fullmatch(d.group or d.name)  # the work folder it names stays in the work root
            assert all(s.creates is None or s.creates.startswith("{work}/") for s in d.commands)


@SETTINGS
@given(data=jsonl_bytes)
def test_negatives_jsonl(folder, data):
    from pyserini_llama.data.beir import Document
    from pyserini_llama.train.data import load_negatives

    corpus = {d: Document(d, "", "text") for d in ("d1", "d2", "q1")}
    negatives = parse("negatives JSONL", folder / "negatives.jsonl", data, lambda p: load_negatives(str(p), corpus))
    if negatives is not None:
        assert negatives and all(all(d in corpus for d in docs) for docs in negatives.values())
