"""Regression runner: --list / --dry-run over every definition, OK/FAIL comparison, --limit, docs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pyserini_llama.errors import UserError
from pyserini_llama.regressions.__main__ import main
from pyserini_llama.regressions.definitions import load_definitions
from pyserini_llama.regressions.docs import render

REPO = Path(__file__).resolve().parents[1]

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


def toy_definitions(tmp_path: Path, beir_folder: Path, expected: float, **extra) -> Path:
    script = tmp_path / "ranker.py"
    script.write_text(RANKER)
    folder = tmp_path / "defs"
    folder.mkdir(exist_ok=True)
    definition = dict(
        name="toy.rank", description="a fixed ranking of the toy collection", reproduces="nothing",
        scale="small", stage="bm25", model="toy", collection=str(beir_folder),
        topics={"collection": str(beir_folder), "split": "test"}, qrels=f"{beir_folder}/qrels/test.tsv",
        commands=[{"cmd": f"python {script} {{topics}} {{out}}", "creates": "{work}/toy.trec"}],
        run="{work}/toy.trec",
        metrics={"nDCG@10": {"expected": expected, "tolerance": 0.001}, "R@100": {"expected": None}},
        pending="R@100 not measured yet", **extra)
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
    for name in ("repllama-smollm2", "rankllama-smollm2", "llara-smollm2"):
        for coll in ("beir-scifact", "cranfield"):
            small = d[f"{name}.{coll}"]
            assert small.pending and all(m.expected is None for m in small.metrics)  # never invented


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
    measured = yaml.safe_load((defs / "toy.yaml").read_text())["measured"]
    assert measured["metrics"] == {"nDCG@10": 1.0, "R@100": 1.0} and measured["hardware"]
    (tmp_path / "w" / "toy.rank" / "toy.trec").write_text("q3 Q0 d1 1 1.0 x\n")  # the step is skipped now
    assert main(args) == 1


def test_limit_runs_a_subset_and_does_not_compare(tmp_path, beir_folder, capsys):
    defs = toy_definitions(tmp_path, beir_folder, expected=0.5)
    assert main(["--definitions", str(defs), "--regression", "toy.rank", "--limit", "1",
                 "--work-dir", str(tmp_path / "w")]) == 0
    assert "not compared (--limit)" in capsys.readouterr().out
    work = tmp_path / "w" / "toy.rank.limit-1"
    assert (work / "topics.tsv").read_text() == "q3\tboundary layer heat\n"
    docs = [l.split('"_id": "')[1].split('"')[0] for l in (work / "corpus-subset" / "corpus.jsonl").open()]
    assert docs == ["d1", "d2", "d3", "d4", "d5", "d6"]  # judged d3 + the first 20 others (all six here)


def test_missing_requirements_are_explained(tmp_path, beir_folder, capsys):
    defs = toy_definitions(tmp_path, beir_folder, expected=1.0,
                           requires=[{"checkpoint": "no-such-checkpoint", "how": "train it first"},
                                     {"module": "pyserini_llama.not_a_module"}])
    with pytest.raises(UserError, match="2 requirement"):
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
