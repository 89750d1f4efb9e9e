"""Fusion: Pyserini's RRF and dense+sparse hybrid formulas, checked against Pyserini's own code."""
from __future__ import annotations

import pytest

from pyserini_llama.data.trec import write_run
from pyserini_llama.errors import UserError
from pyserini_llama.fusion import hybrid_fusion, reciprocal_rank_fusion

BM25 = {"q1": [("a", 12.0), ("b", 10.0), ("c", 3.0)], "q2": [("x", 5.0), ("y", 4.0)]}
DENSE = {"q1": [("c", 0.9), ("a", 0.8), ("d", 0.1)], "q3": [("z", 0.5)]}


def test_rrf_values():
    fused = reciprocal_rank_fusion([BM25, DENSE], rrf_k=60)
    q1 = dict(fused["q1"])
    assert q1["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert q1["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert q1["b"] == pytest.approx(1 / 62) and q1["d"] == pytest.approx(1 / 63)
    assert [d for d, _ in fused["q1"]] == ["a", "c", "b", "d"]
    assert set(fused) == {"q1", "q2", "q3"}  # every query of any run
    assert [d for d, _ in reciprocal_rank_fusion([BM25, DENSE], depth=1, k=1)["q1"]] == ["a"]
    with pytest.raises(UserError, match="at least 2 runs"):
        reciprocal_rank_fusion([BM25])


def test_hybrid_values():
    fused = hybrid_fusion(DENSE, BM25, alpha=0.1)
    q1 = dict(fused["q1"])
    assert q1["a"] == pytest.approx(0.1 * 12.0 + 0.8)
    assert q1["b"] == pytest.approx(0.1 * 10.0 + 0.1)  # missing from dense: dense minimum
    assert q1["d"] == pytest.approx(0.1 * 3.0 + 0.1)  # missing from sparse: sparse minimum
    norm = dict(hybrid_fusion(DENSE, BM25, alpha=2.0, normalization=True, weight_on_dense=True)["q1"])
    assert norm["a"] == pytest.approx((12 - 7.5) / 9 + 2.0 * (0.8 - 0.5) / 0.8)
    # no sparse hits: Pyserini takes the sparse range as [0, 1], so the missing score centres to -0.5
    assert dict(hybrid_fusion(DENSE, BM25, normalization=True)["q3"])["z"] == pytest.approx(0.1 * -0.5)


def test_rrf_matches_pyserini_fusion(tmp_path):
    from pyserini.fusion import reciprocal_rank_fusion as pyserini_rrf
    from pyserini.trectools import TrecRun

    paths = []
    for i, run in enumerate([BM25, DENSE]):
        paths.append(tmp_path / f"run{i}.trec")
        write_run(run, paths[-1])
    theirs = pyserini_rrf([TrecRun(str(p)) for p in paths], rrf_k=60, depth=2, k=3)
    ours = reciprocal_rank_fusion([BM25, DENSE], rrf_k=60, depth=2, k=3)
    expected = {}
    for topic, docid, score in theirs.run_data[["topic", "docid", "score"]].itertuples(index=False):
        expected.setdefault(str(topic), []).append((docid, score))
    assert {q: [d for d, _ in h] for q, h in ours.items()} == {q: [d for d, _ in h] for q, h in expected.items()}
    for qid in ours:
        assert [s for _, s in ours[qid]] == pytest.approx([s for _, s in expected[qid]])


@pytest.mark.integration
def test_hybrid_matches_pyserini_hybrid_searcher():
    from pyserini_llama.java import ensure_java

    ensure_java()
    from pyserini.search.faiss import DenseSearchResult
    from pyserini.search.hybrid import HybridSearcher

    for normalization in (False, True):
        for weight_on_dense in (False, True):
            theirs = HybridSearcher._hybrid_results(
                [DenseSearchResult(d, s) for d, s in DENSE["q1"]], [DenseSearchResult(d, s) for d, s in BM25["q1"]],
                0.3, 3, normalization, weight_on_dense)
            ours = hybrid_fusion(DENSE, BM25, 0.3, normalization, weight_on_dense, k=3)["q1"]
            assert [d for d, _ in ours] == [h.docid for h in theirs]
            assert [s for _, s in ours] == pytest.approx([h.score for h in theirs])
