"""The benchmarks' CPU smoke modes (CI has no GPU: speed is claimed only from GPU runs of the same scripts),
their metrics against the project's evaluator, and the README rendered from their JSON."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cli_env

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))


def bench(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], env=cli_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def test_encode_smoke_times_bf16_and_fp8(results):
    out = results / "encode-fp8-h200.json"
    bench("encode.py", "--tiny", "--dtypes", "float32", "fp8", "--docs", "24", "--baseline-docs", "16",
          "--output", str(out))
    report = json.loads(out.read_text())
    rows = {(r["dtype"], r["method"]): r for r in report["results"]}
    assert set(rows) == {("float32", "ours"), ("float32", "naive-hf"), ("fp8", "ours")}
    assert rows["fp8", "ours"]["docs"] == 24 and rows["fp8", "ours"]["speedup_vs_best_bf16"] > 0
    assert report["peaks"]["bf16"] > 0 and report["peaks"]["fp8"] is None  # no FP8 tensor cores on a CPU
    assert all(r["mfu_bf16_peak"] > 0 and r["mfu_fp8_peak"] is None for r in report["results"])
    assert report["command"].startswith("python benchmarks/encode.py --tiny") and str(results) not in \
        report["command"]


def test_rerank_smoke_times_bf16_and_fp8(results):
    out = results / "rerank-fp8-h200.json"
    bench("rerank.py", "--tiny", "--queries", "2", "--depth", "4", "--batch-tokens", "512", "--naive-batch", "0",
          "--dtypes", "float32", "fp8", "--output", str(out))
    rows = json.loads(out.read_text())["results"]
    assert {(r["dtype"], r["lengths"]) for r in rows} == {(d, m) for d in ("float32", "fp8")
                                                         for m in ("realistic", "full")}
    assert all(r["method"] == "ours" and r["pairs"] == 8 and r["ms_per_query"] > 0 for r in rows)


def test_search_smoke_streamed_equals_resident(results):
    out = results / "search-h200.json"
    bench("search.py", "--tiny", "--output", str(out))
    report = json.loads(out.read_text())
    assert report["identical"] is True and report["rows"] == 20_000 and report["k"] == 100
    assert report["streamed"]["seconds"] > 0 and report["resident"]["queries_per_s"] > 0


def test_rerank_scaling_smoke_two_ranks(results):
    if shutil.which("torchrun", path=str(sys.executable.rsplit("/", 1)[0])) is None:
        pytest.skip("torchrun not installed next to this Python")
    out = results / "rerank-scaling-2xh200.json"
    bench("rerank_scaling.py", "--tiny", "--device", "cpu", "--gpus", "1", "2", "--queries", "4", "--depth", "6",
          "--batch-tokens", "2048", "--master-port", "29571", "--output", str(out))
    rows = json.loads(out.read_text())["results"]
    assert [r["gpus"] for r in rows] == [1, 2] and all(r["pairs"] == 24 for r in rows)
    assert rows[1]["max_score_difference"] < 1e-4  # the same run, reranked by two ranks


def test_fidelity_smoke_and_metrics(results, tmp_path, beir_folder):
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama

    encoder = build_tiny_llama(tmp_path / "enc", task="embedding")
    CheckpointConfig(passage_max_length=32, dtype="float32").save(encoder)
    reranker = build_tiny_llama(tmp_path / "rr", task="sequence-classification", seed=2)
    out = results / "fp8-fidelity-h200.json"
    bench("fp8_fidelity.py", "--encoder", str(encoder), "--reranker", str(reranker), "--collections",
          str(beir_folder), "--output", str(out))
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert report["reference"] == "float32" and result["documents"] == 6
    assert 0.99 < result["encoder"]["cosine_all"]["mean"] < 1.0  # FP8 is close, and not identical
    assert -1.0 <= result["reranker"]["kendall_tau_min"] <= result["reranker"]["kendall_tau_mean"] <= 1.0
    assert isinstance(report["within_budget"], bool)


def test_fidelity_metrics_match_the_evaluator_and_scipy():
    pytest.importorskip("ir_measures")
    from scipy.stats import kendalltau

    from fp8_fidelity import kendall_tau_b, mean_metric, ndcg_at, recall_at
    from pyserini_llama.eval import evaluate

    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(300)]
    qrels = {f"q{q}": {d: int(rng.integers(0, 3)) for d in rng.choice(docs, 20, replace=False)} for q in range(30)}
    run = {q: [(d, float(150 - r)) for r, d in enumerate(rng.choice(docs, 150, replace=False))] for q in qrels}
    ranked = {q: [d for d, _ in hits] for q, hits in run.items()}
    want = evaluate(run, qrels, ["nDCG@10", "R@100"])
    assert mean_metric(ranked, qrels, ndcg_at, 10) == pytest.approx(want["nDCG@10"], abs=1e-9)
    assert mean_metric(ranked, qrels, recall_at, 100) == pytest.approx(want["R@100"], abs=1e-9)
    x, y = rng.integers(0, 5, 100).astype(float), rng.integers(0, 5, 100).astype(float)  # many ties
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)


def test_readme_renders_the_h200_sections(results, tmp_path):
    for name in ("encode-h100.json", "rerank-h100.json", "rerank-h100-eager.json", "train-h100.json"):
        shutil.copy(BENCH / "results" / name, results / name)
    needed = ["fp8-fidelity-h200.json", "encode-fp8-h200.json", "rerank-fp8-h200.json", "search-h200.json",
              "rerank-scaling-2xh200.json"]
    missing = [n for n in needed if not (results / n).exists()]
    if missing:
        pytest.skip(f"needs the smoke runs above ({', '.join(missing)})")
    bench("render_readme.py", "--results", str(results), "--output", str(tmp_path / "README.md"))
    text = (tmp_path / "README.md").read_text()
    for heading in ("## FP8 fidelity on real weights", "## FP8 encoding at 7B shape", "## FP8 reranking at 7B shape",
                    "## Exact search at MS MARCO scale", "## Reranking on several GPUs"):
        assert heading in text
    assert "same hits as streamed: yes" in text


def test_recipe_speed_compares_trainer_states_run_against_run(tmp_path):
    """Real tokens over train seconds per trainer, in both runs, and their ratio; only trainers both runs have."""
    for run, (tokens, seconds) in {"before": (1000, 10.0), "after": (3000, 10.0)}.items():
        (tmp_path / run).mkdir()
        for name in ("repllama-debian", "rankllama-debian"):
            (tmp_path / run / f"{name}.json").write_text(json.dumps({"step": 5, "tokens": tokens,
                                                                     "train_seconds": seconds}))
    (tmp_path / "after" / "llara-adapted.json").write_text(json.dumps({"step": 1, "tokens": 1, "train_seconds": 1}))
    out = tmp_path / "speed.json"
    bench("recipe_speed.py", "--before", str(tmp_path / "before"), "--after", str(tmp_path / "after"),
          "--output", str(out))
    report = json.loads(out.read_text())
    assert [r["trainer"] for r in report["rows"]] == ["rankllama-debian", "repllama-debian"]
    assert report["rows"][0]["tokens_per_second"] == [100.0, 300.0] and report["rows"][0]["speedup"] == 3.0
    assert report["all_trainers"]["speedup"] == 3.0 and report["command"].startswith("python benchmarks/")


def test_cpu_batching_smoke_same_vectors_fewer_padded_tokens(tmp_path, beir_folder):
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama

    encoder = build_tiny_llama(tmp_path / "enc", task="embedding")
    CheckpointConfig(passage_max_length=32, dtype="float32").save(encoder)
    reranker = build_tiny_llama(tmp_path / "rr", task="sequence-classification", seed=2)
    out = tmp_path / "cpu-batching.json"
    bench("cpu_batching.py", "--checkpoint", str(encoder), "--collection", str(beir_folder), "--docs", "6",
          "--batch-size", "3", "--max-length", "32", "--rounds", "1", "--pairs", "10", "--reranker", str(reranker),
          "--rerank-backend", "torch", "--output", str(out))
    report = json.loads(out.read_text())
    assert [r["path"] for r in report["results"]] == ["pyserini.encode batches", "whole corpus",
                                                      "rerank pairs (torch)"]
    assert report["pairs"] == 10 and report["reranker"] == str(reranker)
    for r in report["results"]:
        assert r["padded_tokens_on"] <= r["padded_tokens_off"] and r["max_abs_difference"] < 1e-5
