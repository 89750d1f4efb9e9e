"""Every command line, described once: what it reads, what it writes, and how a clean run is invoked.

A :class:`Slot` is an argument naming a file or folder: an input of some format (a key of
:mod:`formats`) or an output (``file`` or ``dir``). The matrix (:mod:`classes`) derives every case from these
descriptions: a new command, or a new input of a command, gets all the failure classes by adding a few lines
here.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import formats
import world as W


class Paths(dict):
    """Slot name -> path, also as attributes (``p.corpus``)."""

    def __getattr__(self, name: str) -> Path:
        try:
            return self[name.replace("_", "-")]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Slot:
    name: str
    kind: str  # an input format (formats.TEXT key, checkpoint, reranker, dense-index, beir, registry,
    #           definitions) or an output: file, dir
    file: str = ""  # outputs: the path under out/ (default: the slot name)
    members: Tuple[Tuple[str, str], ...] = ()  # beir folders: (relative path, format) of the files read
    exists_ok: bool = False  # an output folder that is reused by design (a work folder, a cache)
    replaceable: bool = False  # an output replaced by every run by design (a summary)
    resumable: Tuple[str, ...] = ()  # what a failed run may leave to resume from (regexes under out/)

    @property
    def output(self) -> bool:
        return self.kind in ("file", "dir")


@dataclass
class Cli:
    name: str
    module: str
    slots: List[Slot]
    argv: Callable[[Paths, "W.World"], List[str]]
    device: bool = False  # takes --device
    loads_model: bool = False
    java: bool = False  # runs Lucene (Java) once its inputs are checked: its clean runs are integration tests
    env: Callable[[Paths, Path], Dict[str, str]] = lambda p, tmp: {}
    observe: Optional[Callable[[Paths, str], object]] = None  # a clean run's result, to compare
    slow: bool = False  # a clean run takes seconds (trainers): its inputs get only the BOM success case
    overwrite: bool = True  # takes --overwrite
    subprocess_class: Optional[str] = None  # one case of this class runs as a real subprocess
    negative_ok: Tuple[str, ...] = ("--seed",)  # integer options where a negative value is meaningful

    @property
    def inputs(self) -> List[Slot]:
        return [s for s in self.slots if not s.output]

    @property
    def outputs(self) -> List[Slot]:
        return [s for s in self.slots if s.output]


# --- what a run produced, for comparing a run on a mutated input with the clean one -----------------------

def file_bytes(slot: str):
    return lambda p, stdout: p[slot].read_bytes()


def index_bytes(slot: str):
    return lambda p, stdout: {n: (p[slot] / n).read_bytes() for n in ("index", "docid")}


def embeddings(slot: str):
    def observe(p, stdout):
        import pandas as pd

        frame = pd.read_pickle(p[slot])
        return list(frame["id"]), list(frame["text"]), b"".join(v.tobytes() for v in frame["embedding"])
    return observe


def eval_table(p, stdout: str) -> str:
    return " ".join(stdout.replace(str(p["run"]), "RUN").split())


def saved_metrics(p, stdout):
    return {name: r["metrics"] for name, r in json.loads(p["save"].read_text()).items()}


def weights(slot: str):
    def observe(p, stdout):
        folder = p[slot]
        return {f.name: f.read_bytes() for f in sorted(folder.glob("*.safetensors"))}
    return observe


# --- the commands ------------------------------------------------------------------------------------------

CPU = ["--device", "cpu"]
BEIR_TEST = (("corpus.jsonl", "corpus"), ("queries.jsonl", "queries"), ("qrels/test.tsv", "qrels-test"))
BEIR_TRAIN = (("corpus.jsonl", "corpus"), ("queries.jsonl", "queries"), ("qrels/train.tsv", "qrels-train"))
TRAIN = ["--device", "cpu", "--dtype", "float32", "--group-size", "2", "--batch-size", "2", "--max-steps", "1",
         "--save-steps", "0", "--warmup-steps", "0", "--no-progress"]


def _train(module: str, name: str) -> Cli:
    return Cli(name, module, [Slot("model", "checkpoint"), Slot("collection", "beir", members=BEIR_TRAIN),
                              Slot("negatives", "negatives"), Slot("output", "dir")],
               lambda p, w: ["--model", p.model, "--collection", p.collection, "--negatives", p.negatives,
                             "--output", p.output, *TRAIN],
               device=True, loads_model=True, observe=weights("output"), slow=True)


CLIS: List[Cli] = [
    Cli("encode-corpus", "pyserini_llama.encode",
        [Slot("corpus", "corpus"), Slot("encoder", "checkpoint"),
         Slot("index", "dir", resumable=(r"\.index\.shards",))],
        lambda p, w: ["corpus", "--corpus", p.corpus, "--encoder", p.encoder, "--index", p.index, *CPU],
        device=True, loads_model=True, observe=index_bytes("index"), subprocess_class="bad-encoding"),
    Cli("encode-queries", "pyserini_llama.encode",
        [Slot("topics", "topics"), Slot("encoder", "checkpoint"), Slot("embeddings", "file",
                                                                        file="encoded/embedding.pkl")],
        lambda p, w: ["queries", "--topics", p.topics, "--encoder", p.encoder, "--output", p.embeddings.parent,
                      *CPU],
        device=True, loads_model=True, observe=embeddings("embeddings")),
    Cli("search", "pyserini_llama.search",
        [Slot("index", "dense-index"), Slot("topics", "queries"), Slot("run", "file", file="run.trec")],
        lambda p, w: ["--index", p.index, "--topics", p.topics, "--output", p.run, *CPU],
        device=True, loads_model=True, observe=file_bytes("run")),
    Cli("rerank", "pyserini_llama.rerank",
        [Slot("run", "run"), Slot("topics", "topics"), Slot("corpus", "corpus"), Slot("reranker", "reranker"),
         Slot("output", "file", file="reranked.trec")],
        lambda p, w: ["--run", p.run, "--topics", p.topics, "--index", p.corpus, "--reranker", p.reranker,
                      "--output", p.output, "--hits", "3", *CPU],
        device=True, loads_model=True, observe=file_bytes("output")),
    Cli("pipeline", "pyserini_llama.pipeline",
        [Slot("collection", "beir", members=BEIR_TEST), Slot("work", "dir", exists_ok=True, replaceable=True)],
        lambda p, w: ["--collection", p.collection, "--dense", w.model, "--reranker", w.reranker, "--work-dir",
                      p.work, "--max-queries", "2", "--rerank-depth", "2", *CPU],
        device=True, loads_model=True, java=True, slow=True),
    Cli("bm25", "pyserini_llama.bm25",
        [Slot("collection", "beir", members=BEIR_TEST), Slot("index", "dir", file="lucene"),
         Slot("run", "file", file="bm25.trec")],
        lambda p, w: ["--collection", p.collection, "--index", p.index, "--output", p.run],
        java=True, observe=file_bytes("run"), slow=True),
    Cli("eval", "pyserini_llama.eval", [Slot("run", "run"), Slot("qrels", "qrels-trec")],
        lambda p, w: ["--run", p.run, "--qrels", p.qrels], observe=eval_table, overwrite=False,
        subprocess_class="bad-shape"),
    Cli("fusion", "pyserini_llama.fusion",
        [Slot("run-a", "run"), Slot("run-b", "run"), Slot("output", "file", file="fused.trec")],
        lambda p, w: ["--runs", p.run_a, p.run_b, "--output", p.output], observe=file_bytes("output"),
        subprocess_class="concurrent-writer"),
    Cli("convert", "pyserini_llama.convert", [Slot("corpus", "corpus"), Slot("output", "file", file="docs.jsonl")],
        lambda p, w: [p.corpus, p.output], observe=file_bytes("output")),
    Cli("mine-negatives", "pyserini_llama.mine_negatives",
        [Slot("run", "run"), Slot("qrels", "qrels-train"), Slot("output", "file", file="negatives.jsonl")],
        lambda p, w: ["--run", p.run, "--qrels", p.qrels, "--output", p.output, "--num", "2"],
        observe=file_bytes("output")),
    Cli("prebuilt-build", "pyserini_llama.prebuilt_indexes",
        [Slot("registry", "registry"), Slot("collection", "beir", members=(("corpus.jsonl", "corpus"),)),
         Slot("entry", "dir", file="cache/indexes/toy.dense", exists_ok=True, replaceable=True)],
        lambda p, w: ["--build", "toy.dense", "--registry", p.registry, *CPU],
        env=lambda p, tmp: {"PYSERINI_CACHE": str(p.entry.parent.parent)},
        device=True, loads_model=True, observe=index_bytes("entry"), overwrite=True),
    Cli("prebuilt-fetch", "pyserini_llama.prebuilt_indexes",
        [Slot("registry", "registry"), Slot("collection", "beir", members=()),
         Slot("entry", "dir", file="cache/indexes/toy.download", exists_ok=True, replaceable=True,
              resumable=(r"cache/indexes/[^/]*\.part",))],
        lambda p, w: ["--fetch", "toy.download", "--registry", p.registry, "--quiet", "--device", "cpu"],
        env=lambda p, tmp: {"PYSERINI_CACHE": str(p.entry.parent.parent)}, observe=index_bytes("entry"), device=True),
    Cli("regressions", "pyserini_llama.regressions",  # the corpus is read by the commands, not by the runner
        [Slot("definitions", "definitions"), Slot("collection", "beir", members=BEIR_TEST[1:]),
         Slot("qrels", "qrels-trec"), Slot("run", "run"), Slot("work", "dir", exists_ok=True, replaceable=True),
         Slot("save", "file", file="results.json", replaceable=True)],
        lambda p, w: ["--definitions", p.definitions, "--regression", "toy.fusion", "--work-dir", p.work,
                      "--save", p.save, *CPU],
        device=True, observe=saved_metrics, overwrite=False, slow=True),
    _train("pyserini_llama.train.repllama", "train-repllama"),
    _train("pyserini_llama.train.rankllama", "train-rankllama"),
    Cli("train-llara", "pyserini_llama.train.llara",
        [Slot("model", "checkpoint"), Slot("corpus", "corpus"), Slot("output", "dir")],
        lambda p, w: ["--model", p.model, "--corpus", p.corpus, "--output", p.output, "--device", "cpu",
                      "--dtype", "float32", "--batch-size", "2", "--max-steps", "1", "--save-steps", "0",
                      "--warmup-steps", "0", "--no-progress"],
        device=True, loads_model=True, observe=weights("output"), slow=True),
    Cli("onnx-export", "pyserini_llama.encoders.onnx", [Slot("checkpoint", "checkpoint"), Slot("output", "dir")],
        lambda p, w: ["--checkpoint", p.checkpoint, "--output", p.output], loads_model=True, slow=True),
    Cli("doctor", "pyserini_llama.doctor", [], lambda p, w: [], overwrite=False),
]

BY_NAME = {c.name: c for c in CLIS}


# --- laying out a case's folder ----------------------------------------------------------------------------

def default_path(slot: Slot, tmp: Path, w: "W.World") -> Path:
    """Where a slot's file or folder is for a clean run: inputs under in/, outputs under out/; models and the
    index are the world's own (read-only by contract: the matrix checks they are unchanged)."""
    if slot.output:
        return tmp / "out" / (slot.file or slot.name)
    if slot.kind in formats.TEXT:
        return tmp / "in" / f"{slot.name}{Path(formats.TEXT[slot.kind][0]).suffix}"
    if slot.kind in ("checkpoint", "onnx"):
        return w.model
    if slot.kind == "reranker":
        return w.reranker
    if slot.kind == "dense-index":
        return w.index
    return tmp / "in" / slot.name


def layout(cli: Cli, tmp: Path, w: "W.World") -> Paths:
    """Write the clean inputs of ``cli`` under ``tmp/in`` and return every slot's path."""
    (tmp / "in").mkdir(parents=True, exist_ok=True)
    (tmp / "out").mkdir(parents=True, exist_ok=True)
    p = Paths({s.name: default_path(s, tmp, w) for s in cli.slots})
    for slot in cli.inputs:
        if slot.kind in formats.TEXT:
            formats.write_text_kind(slot.kind, p[slot.name])
        elif slot.kind == "beir":
            W.write_beir(p[slot.name])
    for slot in cli.inputs:  # these name the others' paths
        if slot.kind == "registry":
            write_registry(p[slot.name], w)
        elif slot.kind == "definitions":
            write_definitions(p[slot.name], w)
    return p


def good_registry(path: Path, w: "W.World") -> dict:
    return w.registry_yaml(path.parent / "collection")


def good_definitions(path: Path, w: "W.World") -> dict:
    return w.regression_yaml(path.parent / "collection", path.parent / "qrels.txt", path.parent / "run.trec")


def write_registry(path: Path, w: "W.World") -> None:
    import yaml

    path.mkdir(parents=True, exist_ok=True)
    (path / "test.yaml").write_text(yaml.safe_dump(good_registry(path, w)))


def write_definitions(path: Path, w: "W.World") -> None:
    import yaml

    path.mkdir(parents=True, exist_ok=True)
    (path / "toy.yaml").write_text(yaml.safe_dump(good_definitions(path, w)))


def argv_of(cli: Cli, p: Paths, w: "W.World") -> List[str]:
    return [str(a) for a in cli.argv(p, w)]


def parse_options(cli: Cli) -> List[Tuple[str, str]]:
    """``(flag, "int"|"float")`` for every numeric option of the command, read from its own argparse parser
    (captured when ``main`` parses), so a new option is tested without being listed anywhere."""
    import argparse
    import importlib

    class Captured(Exception):
        pass

    seen: List[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise Captured

    module = importlib.import_module(cli.module)
    main = getattr(module, "main", None) or importlib.import_module(f"{cli.module}.__main__").main
    argparse.ArgumentParser.parse_args = capture
    try:
        main(["corpus"] if cli.name.startswith("encode") else [])
    except Captured:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    options = []
    for parser in seen[:1]:
        actions = list(parser._actions)
        for sub in [a for a in actions if isinstance(a, argparse._SubParsersAction)]:
            name = "queries" if cli.name == "encode-queries" else "corpus"
            actions += list(sub.choices[name]._actions)
        for action in actions:
            flags = [f for f in action.option_strings if f.startswith("--")]
            if not flags or action.nargs == 0 or action.choices:
                continue
            kind = _numeric_kind(action.type)
            if kind:
                options.append((flags[0], kind))
    return sorted(set(options))


def _numeric_kind(type_) -> Optional[str]:
    """``int``, ``int>=N`` (cli.int_at_least), ``float``, or None for other options."""
    name = getattr(type_, "__name__", "")
    floor = re.fullmatch(r"integer >= (\d+)", name)
    if floor:
        return f"int>={floor.group(1)}"
    if type_ is int or name.startswith("integer") or name == "non_negative_int":
        return "int"
    if type_ is float or "float" in name:
        return "float"
    return None
