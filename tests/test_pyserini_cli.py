"""RepLLaMA inside Pyserini: the encoder classes, and the unmodified pyserini CLIs run through the hook."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

pytest.importorskip("pyserini")

from pyserini_llama.data.trec import load_run  # noqa: E402
from pyserini_llama.encoders.repllama import RepLlamaEncoder  # noqa: E402
from pyserini_llama.errors import UserError  # noqa: E402

from conftest import TOY_DOCS, cli_env, run_cli  # noqa: E402

DOCS = TOY_DOCS
TOPICS = {"1": "protein structure in cells", "2": "cancer gene expression", "3": "boundary layer heat",
          "4": "supersonic shock"}
MAX_P = 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint folder whose name contains 'repllama', a BEIR corpus and a topics TSV."""
    from pyserini_llama.models.config import CheckpointConfig
    from pyserini_llama.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("pyserini")
    model = build_tiny_llama(root / "tiny-repllama", task="embedding", style="llama", seed=11)
    CheckpointConfig(query_max_length=16, passage_max_length=MAX_P, dtype="float32").save(model)
    with open(root / "corpus.jsonl", "w") as f:
        for docid, title, text in DOCS:
            f.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    (root / "topics.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in TOPICS.items()))
    return root, model


@pytest.fixture(scope="module")
def encoder(setup):
    return RepLlamaEncoder.from_checkpoint(str(setup[1]))


def test_hook_registers_our_classes_first():
    import pyserini.encode as pe

    from pyserini_llama.encoders.pyserini_adapters import RepLlamaDocumentEncoder, RepLlamaQueryEncoder

    assert pe.query_encoder_class_map["repllama"] is RepLlamaQueryEncoder
    assert pe.document_encoder_class_map["repllama"] is RepLlamaDocumentEncoder
    assert list(pe.query_encoder_class_map)[:2] == ["repllama-onnx", "repllama"]


# the plugin installed without its .pth file: Java prepared by hand, no import hook
NO_HOOK = ("import sys, pyserini_llama.java; pyserini_llama.java.ensure_java(); "
           "sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != 'pyserini_llama_hook']")
IMPORT_ORDERS = [
    "import pyserini_llama.encoders.pyserini_adapters",
    "import pyserini_llama.encoders.llara_adapters",
    NO_HOOK + "; import pyserini_llama.encoders.pyserini_adapters",
]


def test_every_import_order_registers_our_classes_silently():
    """Importing our adapters before pyserini.encode used to print circular-import warnings and leave them out.
    (pyserini.encode first is what every Pyserini CLI test here does.)"""
    check = textwrap.dedent("""
        import pyserini.encode as e
        print(list(e.query_encoder_class_map)[:3], list(e.document_encoder_class_map)[:3],
              e.query_encoder_class_map["repllama"].__name__, e.document_encoder_class_map["llara"].__name__)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", order + "\n" + check], env=cli_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for order in IMPORT_ORDERS]
    for order, proc in zip(IMPORT_ORDERS, procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and err.strip() == "", f"{order}:\n{err}"
        assert out.split() == ["['repllama-onnx',", "'repllama',", "'llara']"] * 2 + [
            "RepLlamaQueryEncoder", "LlaraDocumentEncoder"], f"{order}: {out}"


def test_query_encoder(setup, encoder):
    from pyserini_llama.encoders.pyserini_adapters import RepLlamaQueryEncoder

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qenc = RepLlamaQueryEncoder(encoder_dir=str(setup[1]), device="cuda:0")  # Pyserini's default device
    assert any("CUDA is not available" in str(w.message) for w in caught)
    expected = encoder.encode_queries(list(TOPICS.values()), progress=False)
    vector = qenc.encode(TOPICS["1"])
    assert vector.shape == (encoder.dimension,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector, expected[0], atol=1e-5)
    np.testing.assert_allclose(qenc.encode_batch(list(TOPICS.values())), expected, atol=1e-5)
    prefixed = RepLlamaQueryEncoder(encoder_dir=str(setup[1]), device="cpu", prefix="question: ")
    assert prefixed.encoder.config.query_prefix == "question: "
    assert not np.allclose(prefixed.encode(TOPICS["1"]), expected[0], atol=1e-3)
    with pytest.raises(UserError, match="needs encoder_dir"):
        RepLlamaQueryEncoder()


def test_document_encoder(setup, encoder):
    from pyserini_llama.encoders.pyserini_adapters import RepLlamaDocumentEncoder

    denc = RepLlamaDocumentEncoder(str(setup[1]), device="cpu")
    titles, texts = [d[1] for d in DOCS], [d[2] for d in DOCS]
    vectors = denc.encode(texts=texts, titles=titles, max_length=32, fp16=False, add_sep=False)
    np.testing.assert_allclose(vectors, encoder.encode_passages(list(zip(titles, texts)), max_length=32,
                                                                progress=False), atol=1e-5)
    no_titles = denc.encode(texts=texts, max_length=32)
    np.testing.assert_allclose(no_titles, encoder.encode_passages(texts, max_length=32, progress=False),
                               atol=1e-5)


def test_encoded_queries_folder(setup, encoder, tmp_path):
    from pyserini_llama import encode
    from pyserini_llama.encoders.pyserini_adapters import RepLlamaQueryEncoder

    assert encode.main(["queries", "--topics", str(setup[0] / "topics.tsv"), "--encoder", str(setup[1]),
                        "--output", str(tmp_path / "enc"), "--device", "cpu"]) == 0
    qenc = RepLlamaQueryEncoder(encoded_query_dir=str(tmp_path / "enc"))
    np.testing.assert_allclose(qenc.encode(TOPICS["2"]),
                               encoder.encode_queries([TOPICS["2"]], progress=False)[0], atol=1e-6)
    with pytest.raises(UserError, match="not among the pre-encoded queries"):
        qenc.encode("never encoded")


def expected_ranking(encoder, k=3):
    scores = encoder.encode_queries(list(TOPICS.values()), progress=False) @ \
        encoder.encode_passages([(t, x) for _, t, x in DOCS], max_length=MAX_P, progress=False).T
    return {qid: [DOCS[i][0] for i in np.argsort(-row)[:k]] for qid, row in zip(TOPICS, scores)}


@pytest.fixture(scope="module")
def pyserini_index(setup):
    """``python -m pyserini.encode`` exactly as users type it, with our encoder class."""
    root, model = setup
    run_cli("pyserini.encode", "input", "--corpus", str(root / "corpus.jsonl"), "--fields", "title", "text",
            "output", "--embeddings", str(root / "faiss-index"), "--to-faiss",
            "encoder", "--encoder", str(model), "--encoder-class", "repllama", "--fields", "title", "text",
            "--max-length", str(MAX_P), "--dimension", "64", "--batch-size", "4", "--device", "cpu", check=True)
    return root / "faiss-index"


@pytest.mark.integration
def test_pyserini_encode_writes_our_vectors(pyserini_index, encoder):
    from pyserini_llama.dense import read_docids, read_flat_index

    assert read_docids(pyserini_index / "docid") == [d[0] for d in DOCS]
    direct = encoder.encode_passages([(t, x) for _, t, x in DOCS], max_length=MAX_P, progress=False)
    np.testing.assert_allclose(np.asarray(read_flat_index(pyserini_index / "index").vectors), direct, atol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("how", ["encoder-class", "name", "onnx"])
def test_pyserini_search_faiss(setup, pyserini_index, encoder, how, tmp_path):
    root, model = setup
    args = ["--encoder", str(model)]  # without --encoder-class Pyserini picks the key the path contains
    if how == "encoder-class":
        args += ["--encoder-class", "repllama", "--device", "cpu"]
    elif how == "onnx":
        from pyserini_llama.encoders.onnx import export_to_folder

        export_to_folder(str(model), tmp_path / "onnx", precision="fp32")
        args = ["--encoder", str(tmp_path / "onnx"), "--encoder-class", "repllama-onnx"]
    run_cli("pyserini.search.faiss", "--index", str(pyserini_index), "--topics", str(root / "topics.tsv"),
            "--output", str(tmp_path / "run.trec"), "--hits", "3", *args, check=True)
    run = load_run(tmp_path / "run.trec")
    assert {qid: [d for d, _ in hits] for qid, hits in run.items()} == expected_ranking(encoder)


@pytest.mark.integration
def test_pyserini_encode_and_search_with_onnx_classes(setup, encoder, tmp_path):
    """``--encoder-class repllama-onnx`` for documents and queries: a checkpoint exported on the fly (cached in
    the project's cache), vectors as torch's, the same ranking."""
    from pyserini_llama.dense import read_flat_index

    root, model = setup
    env = {"PYSERINI_LLAMA_CACHE": str(tmp_path / "cache")}
    run_cli("pyserini.encode", "input", "--corpus", str(root / "corpus.jsonl"), "--fields", "title", "text",
            "output", "--embeddings", str(tmp_path / "onnx-index"), "--to-faiss",
            "encoder", "--encoder", str(model), "--encoder-class", "repllama-onnx", "--fields", "title", "text",
            "--max-length", str(MAX_P), "--dimension", "64", "--batch-size", "4", "--device", "cpu", check=True,
            **env)
    direct = encoder.encode_passages([(t, x) for _, t, x in DOCS], max_length=MAX_P, progress=False)
    vectors = np.asarray(read_flat_index(tmp_path / "onnx-index" / "index").vectors)
    assert ((vectors * direct).sum(1) > 0.99).all()  # the int8 graph when the checkpoint says so, else fp32
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1
    run_cli("pyserini.search.faiss", "--index", str(tmp_path / "onnx-index"), "--topics", str(root / "topics.tsv"),
            "--encoder", str(model), "--encoder-class", "repllama-onnx", "--output", str(tmp_path / "run.trec"),
            "--hits", "3", check=True, **env)
    run = load_run(tmp_path / "run.trec")
    assert {qid: [d for d, _ in hits] for qid, hits in run.items()} == expected_ranking(encoder)


@pytest.mark.integration
def test_hybrid_cli_and_python_searchers(setup, pyserini_index, encoder, tmp_path):
    """pyserini.search.hybrid; FaissSearcher, with our encoder or our pre-encoded queries; HybridSearcher."""
    from pyserini_llama.data.collections import open_topics
    from pyserini_llama.dense.index import write_encoded_queries
    from pyserini_llama.lucene import build_lucene_index

    root, model = setup
    write_encoded_queries(encoder, open_topics(str(root / "topics.tsv")), tmp_path / "encoded")
    lucene = build_lucene_index(root / "corpus.jsonl", tmp_path / "lucene")
    run_cli("pyserini.search.hybrid", "dense", "--index", str(pyserini_index), "--encoder", str(model),
            "--encoder-class", "repllama", "--device", "cpu", "sparse", "--index", str(lucene),
            "fusion", "--alpha", "0.1", "run", "--topics", str(root / "topics.tsv"),
            "--output", str(tmp_path / "hybrid.trec"), "--hits", "6", check=True)
    hybrid = load_run(tmp_path / "hybrid.trec")
    assert set(hybrid) == set(TOPICS) and hybrid["4"][0][0] == "d4"  # BM25's exact match dominates at alpha 0.1

    script = textwrap.dedent(f"""
        import json
        from pyserini.encode import QueryEncoder
        from pyserini.search.faiss import FaissSearcher
        from pyserini.search.hybrid import HybridSearcher
        from pyserini.search.lucene import LuceneSearcher
        from pyserini_llama.encoders.pyserini_adapters import RepLlamaQueryEncoder
        dense = FaissSearcher({str(pyserini_index)!r}, RepLlamaQueryEncoder({str(model)!r}, device="cpu"))
        hybrid = HybridSearcher(dense, LuceneSearcher({str(lucene)!r}))
        pre_encoded = FaissSearcher({str(pyserini_index)!r}, QueryEncoder({str(tmp_path / "encoded")!r}))
        topics = {TOPICS!r}
        out = {{"dense": {{q: [h.docid for h in dense.search(t, k=3)] for q, t in topics.items()}},
               "encoded": {{q: [h.docid for h in pre_encoded.search(t, k=3)] for q, t in topics.items()}},
               "batch": {{q: [h.docid for h in hits] for q, hits in
                          dense.batch_search(list(topics.values()), list(topics), k=3).items()}},
               "hybrid": {{q: [h.docid for h in hybrid.search(t, k=6, alpha=0.1)] for q, t in topics.items()}}}}
        print("RESULT" + json.dumps(out))
    """)
    (tmp_path / "api.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "api.py")], env=cli_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    expected = expected_ranking(encoder)
    assert out["dense"] == expected and out["batch"] == expected and out["encoded"] == expected
    assert out["hybrid"] == {q: [d for d, _ in hits] for q, hits in hybrid.items()}
