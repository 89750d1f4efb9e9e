"""Fuzzing the input parsers: whatever bytes a topics, qrels, run or JSONL file holds, the parser returns a valid
result or raises a DataError/UserError (a one-line message naming the file), never any other exception.

Inputs are arbitrary bytes, and text assembled from the pieces these formats are made of (ids, ``Q0``, numbers
including ``nan``/``inf``, tabs, JSON fragments, invalid UTF-8), so that examples get past the first checks.
``derandomize=True`` makes every run try the same examples. With ``PYSERINI_LLAMA_RELIABILITY_REPORT`` set, the
number of examples tried per parser is written there.
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

from pyserini_llama.data import beir, trec
from pyserini_llama.errors import UserError
from test_bad_input import write_report

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
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
file_bytes = st.one_of(structured, raw_bytes, with_bad_bytes)

KEYS = ["_id", "id", "docid", "qid", "title", "text", "contents", "query_id", "negatives", "positives"]
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


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def parse(name: str, path: Path, data: bytes, parser, names_file: bool = True):
    """Write ``data`` to ``path`` and parse it; clear errors are fine, anything else fails the test.

    A clear error is one line; a parser's error names the file (``names_file``).
    """
    path.write_bytes(data)
    TRIED[name] += 1
    try:
        return parser(path)
    except UserError as e:
        REJECTED[name] += 1
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
    if docs is not None:
        assert len({d.docid for d in docs}) == len(docs) and all(d.contents for d in docs)


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


def test_fuzz_summary():
    assert sum(TRIED.values()) >= 1000
    write_report("fuzz", {"examples": sum(TRIED.values()), "per_parser": dict(sorted(TRIED.items())),
                          "rejected_with_a_clear_error": sum(REJECTED.values()), "other_exceptions": 0})
