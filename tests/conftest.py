"""Shared fixtures: the source tree on PYTHONPATH for subprocesses, ../shared collections, tiny models."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_IR = REPO.parent / "shared" / "ir"

# The toy collection every fast test shares: (docid, title, text); d6 has no title.
TOY_DOCS = [("d1", "Protein folding", "Proteins fold into structures in the cell."),
            ("d2", "Gene expression", "Gene expression is increased in cancer cells."),
            ("d3", "Heat transfer", "Heat transfer in the boundary layer of a wing."),
            ("d4", "Shock waves", "Supersonic flow produces shock waves."),
            ("d5", "Mice study", "A study of disease risk in mice."),
            ("d6", "", "Pressure and velocity results of the model.")]


# The layers of the suite (``pytest -m unit``, ``-m cli``, ``-m reliability``, ``-m integration``): each test file
# belongs to one. unit: library functions on tiny models and toy data, in process; cli: our commands run as
# processes on toy data; integration: files about Pyserini, Java or the real collections of ../shared (every
# test there is marked ``integration``, as are the tests elsewhere that need them, so ``-m "not integration"``
# runs without Java); reliability: the failure matrix and its companions (tests/reliability).
LAYERS = {
    "unit": ["test_data", "test_download", "test_exact_search", "test_fp8", "test_llara", "test_mine_negatives",
             "test_models", "test_onnx", "test_permissions", "test_rankllama", "test_recipes",
             "test_reference_parity", "test_repllama", "test_train"],
    "cli": ["test_benchmarks", "test_doc_commands", "test_doctor", "test_encode_resume", "test_eval", "test_java",
            "test_packaging", "test_rerank_sharded", "test_scripts"],
    "integration": ["test_bm25", "test_dense", "test_docs", "test_fusion", "test_hub", "test_index_names",
                    "test_lucene_versions", "test_pipeline", "test_prebuilt", "test_pyserini_cli", "test_quiet",
                    "test_regressions", "test_rerank_cli", "test_topics"],
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def pytest_collection_modifyitems(config, items):
    """Mark each test with its file's layer; a test file that names no layer fails collection, so none is
    silently left out of ``-m unit`` / ``-m cli`` runs."""
    unlisted = set()
    for item in items:
        path = Path(str(item.fspath))
        layer = "reliability" if path.parent.name == "reliability" else LAYER_OF.get(path.stem)
        if layer is None:
            unlisted.add(path.name)
            continue
        item.add_marker(getattr(pytest.mark, layer))
    if unlisted:
        raise pytest.UsageError(f"tests/conftest.py LAYERS: no layer for {', '.join(sorted(unlisted))}")


def cli_env(**extra: str) -> dict:
    """Environment for CLI subprocesses: this source tree first on sys.path, no network to the hub."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env


def run_cli(*args: str, cwd=None, check: bool = False, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` and capture its output."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=cli_env(**env), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def shared_ir() -> Path:
    if not (SHARED_IR / "beir-scifact" / "corpus.jsonl").exists():
        pytest.skip(f"real collections not found at {SHARED_IR} (the project's shared data folder)")
    return SHARED_IR


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random LLaMA causal LM with a LLaMA-2-style tokenizer (BOS added, no pad token)."""
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), task="causal-lm", style="llama")


@pytest.fixture(scope="session")
def tiny_smollm(tmp_path_factory) -> Path:
    """A tiny random LLaMA with a SmolLM2-style tokenizer (no BOS, pad = EOS)."""
    from pyserini_llama.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-smollm"), task="causal-lm", style="smollm2", seed=1)


@pytest.fixture
def beir_folder(tmp_path) -> Path:
    """A toy BEIR folder: 6 documents, 4 queries, train and test qrels."""
    import json

    root = tmp_path / "toy"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for docid, title, text in TOY_DOCS:
            f.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    queries = {"q1": "protein structure in cells", "q2": "cancer gene expression",
               "q3": "boundary layer heat", "q4": "supersonic shock"}
    with open(root / "queries.jsonl", "w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td3\t1\nq4\td4\t1\nq4\td6\t0\n")
    return root
