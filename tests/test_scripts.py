"""The reproduction scripts' own logic: the development split and the choice made on it, the loss-curve check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=REPO)


def test_dev_split_partitions_train_queries_by_id(beir_folder, tmp_path):
    qrels = beir_folder / "qrels" / "train.tsv"
    out = tmp_path / "split"
    result = _run("dev_split.py", "--collection", str(beir_folder), "--output", str(out), "--dev-fraction", "0.5")
    assert result.returncode == 0, result.stderr
    rows = lambda p: [line for line in p.read_text().splitlines()[1:] if line]  # noqa: E731
    fit, dev = rows(out / "qrels" / "train-fit.tsv"), rows(out / "qrels" / "train-dev.tsv")
    assert sorted(fit + dev) == sorted(rows(qrels))  # every judgment lands in exactly one part
    assert not {r.split("\t")[0] for r in fit} & {r.split("\t")[0] for r in dev}  # whole queries move
    from dev_split import is_dev
    assert all(is_dev(r.split("\t")[0], 0.5) for r in dev)
    assert (out / "corpus.jsonl").read_text() == (beir_folder / "corpus.jsonl").read_text()
    refused = _run("dev_split.py", "--collection", str(beir_folder), "--output", str(tmp_path / "x"),
                   "--split", "test")
    assert refused.returncode == 2 and "test" in refused.stderr


def test_choose_on_dev_copies_the_best_reranker(tmp_path):
    dev = {"dev": {"bm25": {"nDCG@10": 0.6},
                   "a (reranks rrf top-100)": {"nDCG@10": 0.5}, "rrf(a, bm25+d (rrf))": {"nDCG@10": 0.62},
                   "b (reranks rrf top-100)": {"nDCG@10": 0.7}, "rrf(b, bm25+d (rrf))": {"nDCG@10": 0.65}}}
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    for name in ("a", "b"):
        (tmp_path / "ckpt" / name).mkdir(parents=True)
        (tmp_path / "ckpt" / name / "which").write_text(name)
    result = _run("choose_on_dev.py", "--dev", str(tmp_path / "dev.json"), "--collection", "dev", "--rerankers",
                  "a", "b", "--checkpoints", str(tmp_path / "ckpt"), "--link", "chosen", "--output",
                  str(tmp_path / "choice.json"))
    assert result.returncode == 0, result.stderr
    choice = json.loads((tmp_path / "choice.json").read_text())
    assert (choice["reranker"], choice["pipeline"]) == ("b", "rerank")
    assert (tmp_path / "ckpt" / "chosen" / "which").read_text() == "b"


@pytest.mark.parametrize("offset, within", [(0.001, True), (1.0, False)])
def test_compare_loss_curves_judges_against_the_seed_noise(tmp_path, offset, within):
    def state(name, losses, world):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(json.dumps(
            {"step": len(losses), "world_size": world, "tokens": 1000, "train_seconds": 1.0,
             "tokens_per_second": 1000.0 * world, "loss_history": [[i + 1, x] for i, x in enumerate(losses)]}))
    base = [3.0 - 0.1 * i for i in range(20)]
    state("ref", base, 1)
    state("cand", [x + offset for x in base], 2)
    state("noise", [x + (0.3 if i % 2 else -0.3) for i, x in enumerate(base)], 1)
    result = _run("compare_loss_curves.py", "--reference", str(tmp_path / "ref"), "--candidate",
                  str(tmp_path / "cand"), "--noise", str(tmp_path / "noise"), "--output", str(tmp_path / "o.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["within_noise"] is within and report["speedup"] == 2.0


# --- the reproduction script, end to end on tiny models (no Java: the CPU part's outputs are made here) --------

def _toy_collection(root: Path, name: str, n_docs: int, splits: dict, seed: int, gz: bool = False) -> Path:
    """A BEIR folder of random-word documents; query i repeats words of document i, judged in its split."""
    import gzip
    import random

    from pyserini_llama.testing import WORDS

    rng, vocab = random.Random(seed), WORDS.split()
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    docs = [rng.sample(vocab, 10) for _ in range(n_docs)]
    corpus = "".join(json.dumps({"_id": f"{name[:3]}{i}", "title": "", "text": " ".join(d)}) + "\n"
                     for i, d in enumerate(docs))
    queries = "".join(json.dumps({"_id": f"q{i}", "text": " ".join(d[:4])}) + "\n" for i, d in enumerate(docs))
    for file, text in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        if gz:
            (folder / f"{file}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (folder / file).write_text(text)
    for split, ids in splits.items():
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{name[:3]}{i}\t1\n" for i in ids))
    return folder


def _overlap_run(folder: Path, split: str, hits: int) -> dict:
    """A stand-in for BM25 (which needs Java): documents ranked by words shared with the query."""
    from pyserini_llama.data.beir import BeirFolder

    beir = BeirFolder(folder)
    docs = {d: set(doc.text.split()) for d, doc in beir.corpus().items()}
    return {q: sorted(((d, float(len(set(text.split()) & words) + 1 / (1 + k))) for k, (d, words) in
                       enumerate(docs.items())), key=lambda h: -h[1])[:hits] for q, text in beir.queries(split).items()}


@pytest.mark.slow
def test_reproduce_small_gpu_part_smoke_run(tmp_path, tiny_llama):
    """Every step of scripts/reproduce_small.sh gpu on tiny models on a CPU: trainers chained through checkpoints,
    dense negatives, the development choice, the test evaluation, the timings."""
    import gzip

    from pyserini_llama.data.trec import write_run
    from pyserini_llama.mine_negatives import mine_negatives, write_negatives
    from conftest import cli_env

    data, work = tmp_path / "data", tmp_path / "work"
    scifact = _toy_collection(data, "beir-scifact", 60, {"train": range(40), "test": range(40, 50)}, seed=1)
    cranfield = _toy_collection(data, "cranfield", 20, {"test": range(10)}, seed=2)
    debian = _toy_collection(data, "debian-descriptions", 40, {"train": range(30), "dev": range(30, 36)}, seed=3,
                             gz=True)
    from dev_split import main as dev_split

    assert dev_split(["--collection", str(scifact), "--output", str(work / "beir-scifact-dev")]) == 0
    carry = work / "carry"
    (carry / "bm25").mkdir(parents=True)
    for folder, split, out, name in ((work / "beir-scifact-dev", "train-fit", "scifact", None),
                                     (debian, "train", "debian", None)):
        from pyserini_llama.data.beir import BeirFolder

        write_negatives(mine_negatives(_overlap_run(folder, split, 20), BeirFolder(folder).qrels(split), 20, 8),
                        str(carry / f"{out}.bm25.negatives.jsonl.gz"))
    for folder, split, name in ((scifact, "test", "beir-scifact"), (cranfield, "test", "cranfield"),
                                (work / "beir-scifact-dev", "train-dev", "beir-scifact-dev"),
                                (debian, "dev", "debian-descriptions")):
        path = carry / "bm25" / f"{name}.{split}.bm25.trec"
        write_run(_overlap_run(folder, split, 30), path, tag="bm25")
        (path.parent / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    (carry / "bm25" / ".complete").touch()

    env = cli_env(SMOKE="1", BASE=str(tiny_llama), DATA_DIR=str(data), WORK=str(work), RESULTS=str(tmp_path / "results"),
                  PYTHON=sys.executable, PARALLEL="1")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce_small.sh"), "gpu"], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = tmp_path / "results"
    test = json.loads((results / "evaluate_small.json").read_text())
    assert set(test) == {"beir-scifact", "cranfield", "_meta"} and test["_meta"]["splits"]["beir-scifact"] == "test"
    assert {"bm25", "repllama-smollm2", "repllama-scifact", "repllama-llara-scifact", "bm25+repllama-smollm2 (rrf)",
            "rankllama-smollm2 (reranks rrf top-5)", "rankllama-chain (reranks rrf top-5)"} <= set(test["beir-scifact"])
    choice = json.loads((results / "dev_choice.json").read_text())
    assert choice["split"] == "beir-scifact-dev" and choice["reranker"] in ("rankllama-scifact", "rankllama-debian")
    ckpt = work / "checkpoints"
    chain = json.loads((ckpt / "rankllama-scifact" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert chain == str(ckpt / "rankllama-debian")  # each stage starts from the one before
    for name in ("repllama-smollm2", "rankllama-smollm2"):  # what ships: one adapter over the base model
        shipped = json.loads((work / "package" / name / "adapter_config.json").read_text())
        assert shipped["base_model_name_or_path"] == str(tiny_llama) and shipped["r"] == 32
        assert json.loads((results / f"flatten.{name}.json").read_text())["rank"] == 32
    timings = json.loads((results / "reproduce_timings.json").read_text())
    assert {s["step"] for s in timings["steps"]} >= {"g1-repllama-debian", "g2-llara-adaptation", "g9-test"}
    from collect_results import collect

    collect(results, tmp_path / "rendered")
    rendered = json.loads((tmp_path / "rendered" / "small-scale.json").read_text())
    assert sum("(full pipeline)" in s for s in rendered["beir-scifact"]) == 1  # the dev split's choice, marked
    rerun = subprocess.run(["bash", str(REPO / "scripts" / "reproduce_small.sh"), "gpu"], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=300)
    assert rerun.returncode == 0 and "g3-dense-negatives-scifact: done" in rerun.stderr  # finished steps skipped
    assert "g1-repllama-debian: done" in (work / "g1-repllama-debian.log").read_text()  # (PARALLEL=1: in its log)


def test_evaluate_small_reads_bm25_runs_made_elsewhere(beir_folder, tmp_path):
    """Without Java: the BM25 stage comes from a run file (gzipped here), restricted to the evaluated split."""
    import gzip

    from pyserini_llama.eval import evaluate

    runs = tmp_path / "bm25"
    runs.mkdir()
    lines = "q3 Q0 d3 1 9 bm25\nq3 Q0 d1 2 8 bm25\nq4 Q0 d1 1 9 bm25\nq4 Q0 d4 2 8 bm25\nq1 Q0 d1 1 9 bm25\n"
    (runs / "toy.test.bm25.trec.gz").write_bytes(gzip.compress(lines.encode()))
    out = tmp_path / "eval.json"
    result = _run("evaluate_small.py", "--data-dir", str(beir_folder.parent), "--collections", "toy:test",
                  "--bm25-runs", str(runs), "--runs", str(tmp_path / "work"), "--device", "cpu", "--output", str(out))
    assert result.returncode == 0, result.stderr
    table = json.loads(out.read_text())
    run = {"q3": [("d3", 9.0), ("d1", 8.0)], "q4": [("d1", 9.0), ("d4", 8.0)]}
    qrels = {"q3": {"d3": 1}, "q4": {"d4": 1, "d6": 0}}
    want = evaluate(run, qrels, ("nDCG@10", "R@100", "MRR@10"))
    assert table["toy"]["bm25"] == {m: round(v, 4) for m, v in want.items()}
    assert table["_meta"]["splits"] == {"toy": "test"}
    again = _run("evaluate_small.py", "--data-dir", str(beir_folder.parent), "--collections", "toy:train",
                 "--bm25-runs", str(runs), "--runs", str(tmp_path / "work"), "--device", "cpu", "--output", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr  # results are replaced only on --overwrite


def test_step_times_sum_the_gpu_steps_and_mark_borrowed_ones(tmp_path):
    """A run cut before its last steps is completed from an earlier run's times, each borrowed step named as such;
    a malformed line is one error naming the file and line."""
    tsv = tmp_path / "timings.tsv"
    tsv.write_text("cpu\tc2 negatives\t40\ngpu\tg1-repllama-debian\t200\ngpu\tg1-repllama-debian\t210\n"
                   "gpu\tg2-llara-adaptation\t50\n")
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"steps": [{"part": "gpu", "step": "g1-repllama-debian", "seconds": 389},
                                             {"part": "gpu", "step": "g9-test", "seconds": 130}]}))
    out = tmp_path / "times.json"
    result = _run("step_times.py", "--timings", str(tsv), "--fill", str(earlier), "--output", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [(s["step"], s["seconds"], "from" in s) for s in report["steps"]] == [
        ("c2 negatives", 40, False), ("g1-repllama-debian", 210, False), ("g2-llara-adaptation", 50, False),
        ("g9-test", 130, True)]
    assert (report["gpu_seconds_sum_of_steps"], report["measured_gpu_seconds"], report["borrowed_gpu_seconds"]) == \
        (390, 260, 130)
    tsv.write_text("gpu\tg1\t12\ngpu\tg2 12 s\n")
    result = _run("step_times.py", "--timings", str(tsv), "--output", str(out))
    assert result.returncode == 1 and result.stderr.strip() == \
        f"error: {tsv}:2: expected 'part<TAB>step<TAB>seconds', got 'gpu\\tg2 12 s'"
