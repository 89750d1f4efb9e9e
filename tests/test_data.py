import gzip
import json

import pytest

from pyserini_llama.data.atomic import atomic_write
from pyserini_llama.data.beir import BeirFolder, iter_corpus, load_corpus, load_qrels, load_queries
from pyserini_llama.data.trec import load_run, load_topics, write_run
from pyserini_llama.errors import DataError, UserError


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


def test_beir_folder_reads_corpus_queries_and_split(beir_folder):
    folder = BeirFolder(beir_folder)
    corpus = folder.corpus()
    assert list(corpus) == ["d1", "d2", "d3", "d4", "d5", "d6"]
    assert corpus["d1"].contents == "Protein folding Proteins fold into structures in the cell."
    assert corpus["d6"].contents == "Pressure and velocity results of the model."
    assert folder.queries("test") == {"q3": "boundary layer heat", "q4": "supersonic shock"}
    assert folder.qrels("test") == {"q3": {"d3": 1}, "q4": {"d4": 1, "d6": 0}}
    assert folder.splits() == ["test", "train"]


def test_jsoncollection_corpus_and_gzip(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"id": 7, "contents": "seven"}) + "\n")
    assert [(d.docid, d.contents) for d in iter_corpus(path)] == [("7", "seven")]


@pytest.mark.parametrize("content, message, line", [
    ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', "malformed JSON", 2),
    ('{"_id": "a", "text": "x"}\n{"title": "t", "text": "y"}\n', "missing id field", 2),
    ('{"_id": "a", "body": "x"}\n', "missing field 'text'", 1),
    ('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', "duplicate document id 'a'", 2),
    ('["a", "b"]\n', "expected a JSON object", 1),
    ('{"_id": "a", "text": 5}\n', "must be a string", 1),
])
def test_corpus_errors_name_file_and_line(tmp_path, content, message, line):
    path = write(tmp_path / "corpus.jsonl", content)
    with pytest.raises(DataError, match=message) as err:
        load_corpus(path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_empty_documents_are_kept_with_one_warning(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "title": "", "text": " "}\n'
                                        '{"_id": "c", "text": ""}\n')
    with pytest.warns(UserWarning, match=r"c.jsonl:2: 2 document\(s\) have no text"):
        assert [d.docid for d in iter_corpus(path)] == ["a", "b", "c"]


def test_empty_corpus_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match="corpus is empty"):
        load_corpus(write(tmp_path / "empty.jsonl", "\n"))
    bad = write(tmp_path / "bad.jsonl", b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff"}\n', "wb")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid UTF-8"):
        load_corpus(bad)
    with pytest.raises(UserError, match="no such file"):
        load_corpus(tmp_path / "missing.jsonl")


def test_qrels_formats_and_errors(tmp_path):
    beir = write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n")
    trec = write(tmp_path / "q.txt", "1 0 d1 2\n1 0 d2 0\n")
    assert load_qrels(beir) == load_qrels(trec) == {"1": {"d1": 2, "d2": 0}}
    with pytest.raises(DataError, match=r"q2.tsv:2: relevance 'x' is not a number"):
        load_qrels(write(tmp_path / "q2.tsv", "query-id\tcorpus-id\tscore\n1\td1\tx\n"))


def test_qrels_for_unknown_queries_are_an_error(beir_folder):
    (beir_folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(DataError, match="1 judged queries are not in the topics"):
        BeirFolder(beir_folder).queries("test")


def test_topics_tsv(tmp_path):
    assert load_topics(write(tmp_path / "t.tsv", "1\tfirst query\n2\tsecond\n")) == {"1": "first query", "2": "second"}
    assert load_queries(tmp_path / "t.tsv") == {"1": "first query", "2": "second"}
    with pytest.raises(DataError, match=r"u.tsv:2: expected 'qid<TAB>query text'"):
        load_topics(write(tmp_path / "u.tsv", "1\tok\nno tab here\n"))


def test_run_round_trip_both_formats(tmp_path):
    run = {"q1": [("d2", 3.5), ("d1", 1.25)], "q2": [("d3", 0.5)]}
    write_run(run, tmp_path / "r.trec", tag="t")
    assert (tmp_path / "r.trec").read_text().splitlines()[0] == "q1 Q0 d2 1 3.500000 t"
    assert load_run(tmp_path / "r.trec") == run
    write_run(run, tmp_path / "r.tsv", fmt="msmarco")
    assert (tmp_path / "r.tsv").read_text().splitlines()[:2] == ["q1\td2\t1", "q1\td1\t2"]
    assert [d for d, _ in load_run(tmp_path / "r.tsv")["q1"]] == ["d2", "d1"]


@pytest.mark.parametrize("content, message", [
    ("", "run is empty"),
    ("q1 Q0 d1 1 1.0\n", "expected 6 columns"),
    ("q1 Q0 d1 1 high tag\n", "score 'high' is not a number"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", "listed twice"),
])
def test_run_errors(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_run(write(tmp_path / "run.trec", content))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as f:
        f.write("done")
    assert target.read_text() == "done"
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        with atomic_write(target, overwrite=False):
            pass
