import json

import pytest

from pyserini_llama.eval import evaluate, format_table
from pyserini_llama.errors import UserError
from tests.conftest import run_cli

QRELS = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}


def test_evaluate_values_by_hand():
    run = {"q1": [("d2", 2.0), ("d1", 1.0)], "q2": [("d3", 5.0)]}
    res = evaluate(run, QRELS, ["MRR@10", "R@100", "MAP", "nDCG@10"])
    assert res["MRR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert res["R@100"] == pytest.approx(1.0)
    assert res["MAP"] == pytest.approx((0.5 + 1.0) / 2)


def test_unretrieved_judged_queries_count_as_zero_and_unjudged_are_ignored():
    res = evaluate({"q1": [("d1", 1.0)], "q9": [("d1", 1.0)]}, QRELS, ["MRR@10"], per_query=True)
    assert res["MRR@10"] == pytest.approx(0.5)
    assert res["per_query"] == {"q1": {"MRR@10": 1.0}, "q2": {"MRR@10": 0.0}}


def test_unknown_metric():
    with pytest.raises(UserError, match="unknown metric 'nope'"):
        evaluate({"q1": [("d1", 1.0)]}, QRELS, ["nope"])


def test_format_table():
    table = format_table({"bm25": {"nDCG@10": 0.5, "R@100": 1.0}})
    assert table.splitlines() == ["system   nDCG@10     R@100", "bm25      0.5000    1.0000"]


def test_eval_cli_table_json_and_errors(tmp_path):
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d3 1\n")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 t\nq2 Q0 d9 1 1.0 t\n")
    out = run_cli("pyserini_llama.eval", "--qrels", str(tmp_path / "qrels.txt"), "--run",
                  str(tmp_path / "run.trec"), "--metrics", "MRR@10", "--json", check=True)
    assert json.loads(out.stdout)[str(tmp_path / "run.trec")]["MRR@10"] == pytest.approx(0.5)
    out = run_cli("pyserini_llama.eval", "--qrels", str(tmp_path / "qrels.txt"), "--run",
                  str(tmp_path / "run.trec"), "--per-query", check=True)
    assert "MRR@10\tq1\t1.0000" in out.stdout
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1\n")
    bad = run_cli("pyserini_llama.eval", "--qrels", str(tmp_path / "qrels.txt"), "--run", str(tmp_path / "bad.trec"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'bad.trec'}:1: expected 6 columns (TREC) "
                                               f"or 3 columns (MS MARCO), got 4"]
