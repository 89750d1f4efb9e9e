"""python -m pyserini_llama.topics: Pyserini-format topics from a BEIR folder, a queries file or a collection."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env, run_cli
from pyserini_llama.data.trec import load_topics
from pyserini_llama.topics import format_topics, integer_id_warning, main


def test_split_of_a_beir_folder(beir_folder, tmp_path, capsys):
    out = tmp_path / "out" / "test.tsv"
    assert main(["--topics", str(beir_folder), "--split", "test", "--output", str(out)]) == 0
    assert out.read_text() == "q3\tboundary layer heat\nq4\tsupersonic shock\n"
    assert "wrote 2 queries" in capsys.readouterr().out
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_every_query_gzipped_and_to_stdout(beir_folder, tmp_path, capsys):
    out = tmp_path / "all.tsv.gz"
    assert main(["--collection", str(beir_folder), "--output", str(out)]) == 0
    assert load_topics(out) == {"q1": "protein structure in cells", "q2": "cancer gene expression",
                                "q3": "boundary layer heat", "q4": "supersonic shock"}
    first = out.read_bytes()
    out.unlink()
    main(["--collection", str(beir_folder), "--output", str(out)])
    assert out.read_bytes() == first  # the same topics give the same bytes (no timestamp in the gzip header)
    capsys.readouterr()
    assert main(["--topics", str(beir_folder / "queries.jsonl"), "--output", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "q1\tprotein structure in cells"


def test_a_collection_name_under_the_data_dir(beir_folder, tmp_path):
    out = tmp_path / "t.tsv"
    assert main(["--collection", beir_folder.name, "--data-dir", str(beir_folder.parent), "--split", "train",
                 "--output", str(out)]) == 0
    assert out.read_text().splitlines() == ["q1\tprotein structure in cells", "q2\tcancer gene expression"]


def test_tabs_and_line_breaks_become_spaces(tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "a", "text": "one\ttwo\nthree"}) + "\n")
    assert format_topics({"a": "one\ttwo\nthree"}) == "a\tone two three\n"
    proc = run_cli("pyserini_llama.topics", "--topics", str(queries), "--output", str(tmp_path / "t.tsv"),
                   check=True)
    assert "1 with tabs or line breaks made spaces" in proc.stdout
    assert load_topics(tmp_path / "t.tsv") == {"a": "one two three"}


def test_ids_pyserini_would_read_as_integers():
    assert integer_id_warning({"1": "a", "2": "b"}) is None
    assert integer_id_warning({"q1": "a", "007": "b"}) is None  # not all integers: Pyserini reads strings
    assert "'007'" in integer_id_warning({"1": "a", "007": "b"})


@pytest.mark.parametrize("args, message", [
    (["--topics", "{folder}/queries.jsonl", "--split", "test", "--overwrite"],
     "a split selects queries of a BEIR folder"),
    (["--topics", "{folder}", "--split", "dev", "--overwrite"], "no qrels for split 'dev' (have: test, train)"),
    (["--topics", "{folder}/missing.tsv", "--overwrite"], "topics file not found"),
    (["--topics", "{folder}"], "already exists; pass --overwrite"),
])
def test_bad_input_is_one_line(beir_folder, tmp_path, args, message):
    (tmp_path / "out.tsv").write_text("keep me\n")
    args = [a.format(folder=beir_folder) for a in args]
    proc = run_cli("pyserini_llama.topics", *args, "--output", str(tmp_path / "out.tsv"))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "out.tsv").read_text() == "keep me\n"


@pytest.mark.integration
def test_pyserini_reads_the_file(beir_folder, tmp_path):
    """Anserini's own TSV topic reader (what pyserini.search.* use for a .tsv) gets the same queries."""
    out = tmp_path / "beir-test.tsv.gz"
    main(["--topics", str(beir_folder), "--split", "test", "--output", str(out)])
    code = ("import sys, json; from pyserini.search import get_topics_with_reader as g; "
            "t = g('io.anserini.search.topicreader.TsvStringTopicReader', sys.argv[1]); "
            "print(json.dumps({str(k): v['title'] for k, v in t.items()}))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=cli_env(), capture_output=True, text=True,
                          timeout=600, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"q3": "boundary layer heat",
                                                                "q4": "supersonic shock"}
    with gzip.open(out, "rt") as f:
        assert f.read().count("\n") == 2
