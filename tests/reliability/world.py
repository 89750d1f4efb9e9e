"""The shared world of the reliability matrix: tiny models, a toy collection, an index, a run, a registry and a
regression definition, built once per session; every case copies what it changes."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import TOY_DOCS

QUERIES = {"q1": "protein structure in cells", "q2": "cancer gene expression", "q3": "boundary layer heat",
           "q4": "supersonic shock"}
TRAIN_QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}}
TEST_QRELS = {"q3": {"d3": 1}, "q4": {"d4": 1, "d6": 0}}
RUN = {"q1": [("d1", 3.0), ("d2", 2.0), ("d3", 1.0), ("d4", 0.5)], "q2": [("d5", 3.0), ("d2", 2.0), ("d6", 1.0)],
       "q3": [("d3", 2.0), ("d1", 1.0), ("d5", 0.5)], "q4": [("d4", 1.0), ("d2", 0.5), ("d6", 0.25)]}
NEGATIVES = [{"query_id": "q1", "negatives": ["d2", "d3"]}, {"query_id": "q2", "negatives": ["d4", "d5"]}]


def corpus_lines() -> list:
    return [json.dumps({"_id": d, "title": t, "text": x}) for d, t, x in TOY_DOCS]


def queries_lines() -> list:
    return [json.dumps({"_id": q, "text": t}) for q, t in QUERIES.items()]


def topics_lines() -> list:
    return [f"{q}\t{t}" for q, t in QUERIES.items()]


def beir_qrels_lines(qrels: dict) -> list:
    return ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q, docs in qrels.items() for d, r in docs.items()]


def trec_qrels_lines(qrels: dict) -> list:
    return [f"{q} 0 {d} {r}" for q, docs in qrels.items() for d, r in docs.items()]


def run_lines(run: dict = RUN) -> list:
    return [f"{q} Q0 {d} {i} {s:.6f} toy" for q, hits in run.items() for i, (d, s) in enumerate(hits, 1)]


def negatives_lines() -> list:
    return [json.dumps(row) for row in NEGATIVES]


def write_lines(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def write_beir(root: Path) -> Path:
    write_lines(root / "corpus.jsonl", corpus_lines())
    write_lines(root / "queries.jsonl", queries_lines())
    write_lines(root / "qrels" / "train.tsv", beir_qrels_lines(TRAIN_QRELS))
    write_lines(root / "qrels" / "test.tsv", beir_qrels_lines(TEST_QRELS))
    return root


@dataclass
class World:
    root: Path
    model: Path  # tiny embedding model (hidden 64) with pyserini_llama.json
    reranker: Path  # tiny sequence-classification model
    adapter: Path  # a LoRA adapter over `model`
    reranker_adapter: Path  # a LoRA adapter over `reranker`
    other_base: Path  # an embedding model of another size (hidden 32): adapters of `model` do not fit it
    index32: Path  # a dense index of 32-dimensional vectors, with the same docids
    beir: Path
    index: Path  # a dense index of the toy corpus made with `model`
    server: object
    tarball_url: str
    tarball_md5: str

    def registry_yaml(self, collection: Path) -> dict:
        """A registry of two toy indexes: one built by a recipe (the tiny model over ``collection``), one
        downloaded from the test's HTTP server."""
        return {"entries": [
            dict(name="toy.dense", type="faiss", collection=str(collection), model=str(self.model), dimension=64,
                 recipe=dict(kind="dense", checkpoint=str(self.model), collection=str(collection))),
            dict(name="toy.download", type="faiss", collection="toy", model="m", dimension=8, md5=self.tarball_md5,
                 urls=[self.tarball_url])]}

    def regression_yaml(self, collection: Path, qrels: Path, run: Path) -> dict:
        """A regression over the toy collection whose one step fuses a run with itself (cheap, no model)."""
        return {"name": "toy.fusion", "description": "RRF of a toy run with itself", "reproduces": "the tests",
                "scale": "small", "stage": "fusion", "model": "toy", "collection": str(collection),
                "topics": {"collection": str(collection), "split": "test"}, "qrels": str(qrels),
                "commands": [{"cmd": f"python -m pyserini_llama.fusion --runs {run} {run} --output {{out}}",
                              "creates": "{work}/fused.trec"}],
                "run": "{work}/fused.trec",
                "metrics": {"nDCG@10": {"expected": None, "tolerance": 0.0005}}}


def build_world(root: Path) -> World:
    from transformers import AutoModel, AutoModelForSequenceClassification

    from pyserini_llama.dense import build_index
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama
    from test_download import FileServer, index_tarball, md5

    model = build_tiny_llama(root / "model", task="embedding")
    CheckpointConfig(query_max_length=16, passage_max_length=32, dtype="float32").save(model)
    reranker = build_tiny_llama(root / "reranker", task="sequence-classification", seed=2)
    CheckpointConfig(kind="rankllama", query_max_length=16, passage_max_length=32, append_eos=False,
                     passage_prefix="document: ", dtype="float32").save(reranker)

    adapter = lora_adapter(AutoModel, model, root / "adapter", "FEATURE_EXTRACTION")
    reranker_adapter = lora_adapter(AutoModelForSequenceClassification, reranker, root / "reranker-adapter", "SEQ_CLS")

    other_base = build_tiny_llama(root / "other-base", task="embedding", hidden_size=32, seed=3)
    beir = write_beir(root / "beir")
    index = build_index(RepLlamaEncoder.from_checkpoint(str(model), device="cpu"), beir / "corpus.jsonl",
                        root / "index", progress=False)
    index32 = build_index(RepLlamaEncoder.from_checkpoint(str(other_base), device="cpu"), beir / "corpus.jsonl",
                          root / "index32", progress=False)
    info = json.loads((index32 / "index_info.json").read_text())
    info["encoder"] = str(model)  # an index that claims the wrong encoder: the dimensions tell the truth
    (index32 / "index_info.json").write_text(json.dumps(info))
    server = FileServer()
    tarball = index_tarball(root)
    url = server.add("/toy-index.tar.gz", tarball)
    return World(root, model, reranker, adapter, reranker_adapter, other_base, index32, beir, index, server, url,
                 md5(tarball))


def lora_adapter(model_class, base: Path, folder: Path, task_type: str) -> Path:
    """A LoRA adapter over ``base``, in the published layout (``adapter_config.json`` naming the base)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(model_class.from_pretrained(str(base), num_labels=1) if task_type == "SEQ_CLS"
                           else model_class.from_pretrained(str(base)),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type=task_type))
    model.save_pretrained(str(folder))
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    shutil.copy(base / "pyserini_llama.json", folder / "pyserini_llama.json")
    return folder


def nan_index(source: Path, target: Path, row: int = 2) -> Path:
    """A copy of a dense index with one vector made NaN (what a broken fp16 encoding leaves)."""
    from pyserini_llama.dense.faiss_format import HEADER_SIZE

    shutil.copytree(source, target)
    data = bytearray((target / "index").read_bytes())
    dim = json.loads((target / "index_info.json").read_text())["dimension"]
    start = HEADER_SIZE + 4 * dim * row
    data[start:start + 4 * dim] = np.full(dim, np.nan, dtype="<f4").tobytes()
    (target / "index").write_bytes(bytes(data))
    return target


def world_state(w: World) -> dict:
    """Size and modification time of every file of the world: the commands only read it."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(w.root.rglob("*")) if p.is_file()}
