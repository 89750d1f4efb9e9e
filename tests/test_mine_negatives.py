"""mine_negatives: positives never become negatives, depth/skip/num are respected, sampling is seeded."""
from __future__ import annotations

import json

import pytest

from pyserini_llama import mine_negatives as mn
from pyserini_llama.errors import UserError

RUN = {"q1": [(f"d{i}", 100.0 - i) for i in range(50)], "q2": [(f"d{i}", 10.0 - i) for i in range(5)],
       "q3": [("d0", 1.0)]}
QRELS = {"q1": {"d0": 1, "d3": 2, "d7": 0, "d60": 1}, "q2": {"d1": 1}}


def test_top_excludes_positives_and_respects_depth_and_skip():
    mined = mn.mine_negatives(RUN, QRELS, depth=10, num=30, skip_top=2, sample="top")
    assert set(mined) == {"q1", "q2"}  # q3 has no positive
    assert mined["q1"]["positives"] == ["d0", "d3", "d60"]
    # ranks 3..10, minus the positive d3; the judged-non-relevant d7 is a fine negative
    assert mined["q1"]["negatives"] == ["d2", "d4", "d5", "d6", "d7", "d8", "d9"]
    assert mined["q2"]["negatives"] == ["d2", "d3", "d4"]


def test_random_sampling_is_seeded_in_run_order_and_within_depth():
    a = mn.mine_negatives(RUN, QRELS, depth=40, num=5, seed=1)["q1"]["negatives"]
    assert a == mn.mine_negatives(RUN, QRELS, depth=40, num=5, seed=1)["q1"]["negatives"]
    assert a != mn.mine_negatives(RUN, QRELS, depth=40, num=5, seed=2)["q1"]["negatives"]
    ranks = [int(d[1:]) for d in a]
    assert len(a) == 5 and ranks == sorted(ranks) and max(ranks) < 40 and not {0, 3} & set(ranks)


def test_cli_writes_jsonl_atomically_and_refuses_bad_input(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("".join(f"{q} Q0 {d} {r + 1} {s} bm25\n" for q, hits in RUN.items()
                           for r, (d, s) in enumerate(hits)))
    qrels = tmp_path / "train.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, docs in QRELS.items()
                                                              for d, r in docs.items()))
    out = tmp_path / "neg.jsonl"
    assert mn.main(["--run", str(run), "--qrels", str(qrels), "--output", str(out), "--depth", "20",
                    "--num", "4", "--sample", "top"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"query_id": "q1", "positives": ["d0", "d3", "d60"], "negatives": ["d1", "d2", "d4", "d5"]}
    with pytest.raises(UserError, match="already exists"):
        mn.main(["--run", str(run), "--qrels", str(qrels), "--output", str(out)])
    with pytest.raises(UserError, match="skipping the top"):
        mn.main(["--run", str(run), "--qrels", str(qrels), "--output", str(tmp_path / "x"), "--depth", "5",
                 "--skip-top", "5"])
    test_qrels = tmp_path / "test.tsv"
    test_qrels.write_text(qrels.read_text())
    with pytest.raises(UserError, match="test judgments"):
        mn.main(["--run", str(run), "--qrels", str(test_qrels), "--output", str(tmp_path / "y")])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


TEXTS = {"foo": "A real-time strategy game of ancient warfare.",
         "foo-data": "A real-time strategy game of ancient warfare. This package contains the data files.",
         "tamil": "Office suite language package with Tamil translations.",
         "esperanto": "Office suite language package with Esperanto translations.",
         "other": "A tool to convert images between formats."}


def test_near_duplicates_are_text_copies_that_hold_the_query_words_of_the_positive():
    assert mn.containment(mn.word_set("a b c"), mn.word_set("A, b; c d e")) == 1.0  # the shorter is all inside
    assert mn.containment(mn.word_set(""), mn.word_set("a")) == 0.0
    text_only = mn.near_duplicate_filter(TEXTS, threshold=0.8)
    assert text_only("q", "foo-data", ["foo"]) and text_only("q", "foo", ["foo-data"])
    assert text_only("q", "esperanto", ["tamil"])  # 6 of 7 words shared: a near copy by text alone
    assert not text_only("q", "other", ["foo"]) and not mn.near_duplicate_filter(TEXTS, 0.9)("q", "esperanto",
                                                                                              ["tamil"])
    queries = {"q-tamil": "Tamil language package", "q-foo": "strategy game of ancient warfare"}
    guarded = mn.near_duplicate_filter(TEXTS, 0.8, queries)
    assert not guarded("q-tamil", "esperanto", ["tamil"])  # lacks "tamil", which the query and positive share
    assert guarded("q-foo", "foo-data", ["foo"])  # holds every query word the positive holds


def test_mining_drops_near_duplicates_before_sampling():
    run = {"q-foo": [("foo-data", 3.0), ("foo", 2.0), ("other", 1.0), ("tamil", 0.5)]}
    qrels = {"q-foo": {"foo": 1}}
    exclude = mn.near_duplicate_filter(TEXTS, 0.8, {"q-foo": "strategy game"})
    assert mn.mine_negatives(run, qrels, sample="top")["q-foo"]["negatives"] == ["foo-data", "other", "tamil"]
    assert mn.mine_negatives(run, qrels, sample="top", exclude=exclude)["q-foo"]["negatives"] == ["other", "tamil"]


def test_cli_near_duplicates_need_the_corpus_and_gzip_output(tmp_path, capsys):
    import gzip

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in TEXTS.items()))
    topics = tmp_path / "topics.tsv"
    topics.write_text("q-foo\tstrategy game of ancient warfare\n")
    run = tmp_path / "run.trec"
    run.write_text("q-foo Q0 foo-data 1 3 x\nq-foo Q0 foo 2 2 x\nq-foo Q0 other 3 1 x\n")
    qrels = tmp_path / "train.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq-foo\tfoo\t1\n")
    out = tmp_path / "neg.jsonl.gz"
    base = ["--run", str(run), "--qrels", str(qrels), "--output", str(out), "--sample", "top"]
    assert mn.main(base + ["--exclude-near-duplicates", "--corpus", str(corpus), "--topics", str(topics)]) == 0
    rows = [json.loads(line) for line in gzip.decompress(out.read_bytes()).decode().splitlines()]
    assert rows == [{"query_id": "q-foo", "positives": ["foo"], "negatives": ["other"]}]
    with pytest.raises(SystemExit):
        mn.main(base[:-2] + ["--output", str(tmp_path / "x.jsonl"), "--exclude-near-duplicates"])
    assert "needs --corpus" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
