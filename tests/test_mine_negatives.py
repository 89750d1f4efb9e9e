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
