"""Flat faiss index files without faiss (byte-compatible both ways) and exact dense search."""
from __future__ import annotations

import numpy as np
import pytest

from pyserini_llama.dense import (DenseSearcher, FlatIndexWriter, read_docids, read_flat_index, write_docids,
                                  write_flat_index)
from pyserini_llama.errors import DataError, UserError

faiss = pytest.importorskip("faiss")


def unit_vectors(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_index(folder, vectors):
    folder.mkdir(parents=True, exist_ok=True)
    write_flat_index(folder / "index", vectors)
    write_docids(folder / "docid", [f"doc{i}" for i in range(len(vectors))])
    return folder


def test_our_files_are_faiss_files(tmp_path):
    x = unit_vectors(37, 16)
    write_flat_index(tmp_path / "ours", x)
    index = faiss.read_index(str(tmp_path / "ours"))
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == 37 and index.d == 16
    np.testing.assert_array_equal(index.reconstruct_n(0, 37), x)
    reference = faiss.IndexFlatIP(16)
    reference.add(x)
    faiss.write_index(reference, str(tmp_path / "faiss"))
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "faiss").read_bytes()


@pytest.mark.parametrize("kind", ["ip", "l2", "empty"])
def test_we_read_faiss_files(tmp_path, kind):
    x = unit_vectors(0 if kind == "empty" else 9, 8)
    index = faiss.IndexFlatL2(8) if kind == "l2" else faiss.IndexFlatIP(8)
    index.add(x)
    faiss.write_index(index, str(tmp_path / "index"))
    flat = read_flat_index(tmp_path / "index")
    assert flat.metric == ("l2" if kind == "l2" else "ip") and flat.vectors.shape == (len(x), 8)
    np.testing.assert_array_equal(np.asarray(flat.vectors), x)


def test_streaming_writer_and_bad_files(tmp_path):
    x = unit_vectors(10, 4)
    with FlatIndexWriter(tmp_path / "index", 4) as writer:
        writer.add(x[:3])
        writer.add(x[3:])
    np.testing.assert_array_equal(faiss.read_index(str(tmp_path / "index")).reconstruct_n(0, 10), x)
    data = (tmp_path / "index").read_bytes()
    (tmp_path / "cut").write_bytes(data[:-4])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_flat_index(tmp_path / "cut")
    faiss.write_index(faiss.IndexHNSWFlat(4, 8, faiss.METRIC_INNER_PRODUCT), str(tmp_path / "hnsw"))
    with pytest.raises(UserError, match="not a flat index"):
        read_flat_index(tmp_path / "hnsw")
    with pytest.raises(ValueError, match="shape"):
        with FlatIndexWriter(tmp_path / "never", 4) as writer:
            writer.add(x[:, :3])
    assert not (tmp_path / "never").exists()  # no partial file under the final name


def test_docids_round_trip(tmp_path):
    write_docids(tmp_path / "docid", ["a", "b b", "c"])
    assert read_docids(tmp_path / "docid") == ["a", "b b", "c"]


def test_torch_search_equals_faiss_search(tmp_path):
    x, q = unit_vectors(500, 32, seed=1), unit_vectors(7, 32, seed=2)
    folder = make_index(tmp_path / "idx", x)
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :50]
    with_faiss = DenseSearcher(folder, backend="faiss")
    with_torch = DenseSearcher(folder, backend="torch", rows_per_chunk=37)  # k larger than a chunk
    s_f, i_f = with_faiss.search_embeddings(q, 50)
    s_t, i_t = with_torch.search_embeddings(q, 50)
    np.testing.assert_array_equal(i_t, exact)
    np.testing.assert_array_equal(i_f, exact)
    np.testing.assert_allclose(s_t, s_f, atol=1e-5)
    s_h, i_h = DenseSearcher(folder, backend="torch", fp16=True).search_embeddings(q, 10)
    np.testing.assert_allclose(s_h, s_f[:, :10], atol=2e-3)
    assert (i_h[:, 0] == exact[:, 0]).all()
    s_all, _ = with_torch.search_embeddings(q[:1], 10_000)  # k above the index size: all rows
    assert s_all.shape == (1, 500)


def test_search_with_a_pyserini_style_query_encoder(tmp_path):
    x = unit_vectors(20, 8, seed=3)
    folder = make_index(tmp_path / "idx", x)

    class PyseriniLike:  # only encode(query) -> vector, as Pyserini's QueryEncoder
        def encode(self, query):
            return x[int(query)]

    run = DenseSearcher(folder, PyseriniLike(), backend="torch").search({"a": "3", "b": "11"}, k=5)
    assert run["a"][0][0] == "doc3" and run["b"][0][0] == "doc11"
    assert run["a"][0][1] == pytest.approx(1.0, abs=1e-5) and len(run["a"]) == 5
    assert [s for _, s in run["a"]] == sorted((s for _, s in run["a"]), reverse=True)


def test_inconsistent_folder(tmp_path):
    folder = make_index(tmp_path / "idx", unit_vectors(5, 4))
    write_docids(folder / "docid", ["a", "b"])
    with pytest.raises(UserError, match="5 vectors but docid has 2"):
        DenseSearcher(folder, backend="torch")
    with pytest.raises(UserError, match="no such index folder"):
        DenseSearcher(tmp_path / "missing")


def test_search_cli(tmp_path, beir_folder):
    """pyserini_llama.encode corpus -> pyserini_llama.search, the encoder read from the index folder."""
    from pyserini_llama import encode, search
    from pyserini_llama.data.trec import load_run
    from pyserini_llama.encoders.repllama import RepLlamaEncoder
    from pyserini_llama.testing import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model", task="embedding")
    args = ["--encoder", str(model), "--device", "cpu", "--dtype", "float32"]
    assert encode.main(["corpus", "--corpus", str(beir_folder), "--index", str(tmp_path / "idx"), *args]) == 0
    assert search.main(["--index", str(tmp_path / "idx"), "--topics", str(beir_folder / "queries.jsonl"),
                        "--output", str(tmp_path / "run.trec"), "--hits", "3", "--device", "cpu",
                        "--dtype", "float32"]) == 0
    run = load_run(tmp_path / "run.trec")
    enc = RepLlamaEncoder.from_checkpoint(str(model), dtype="float32")
    from pyserini_llama.data.beir import load_corpus, load_queries

    docs, queries = load_corpus(beir_folder / "corpus.jsonl"), load_queries(beir_folder / "queries.jsonl")
    scores = enc.encode_queries(list(queries.values()), progress=False) @ \
        enc.encode_passages(list(docs.values()), progress=False).T
    for row, qid in zip(scores, queries):
        assert [d for d, _ in run[qid]] == [list(docs)[i] for i in np.argsort(-row)[:3]]
        assert run[qid][0][1] == pytest.approx(float(row.max()), abs=1e-4)
    with pytest.raises(UserError, match="already exists"):
        search.main(["--index", str(tmp_path / "idx"), "--topics", str(beir_folder / "queries.jsonl"),
                     "--output", str(tmp_path / "run.trec")])
    assert search.main(["--index", str(tmp_path / "idx"), "--topics", str(beir_folder / "queries.jsonl"),
                        "--output", str(tmp_path / "streamed.trec"), "--hits", "3", "--device", "cpu",
                        "--dtype", "float32", "--backend", "torch", "--index-memory", "host",
                        "--rows-per-chunk", "2", "--index-devices", "cpu", "cpu"]) == 0
    assert (tmp_path / "streamed.trec").read_text() == (tmp_path / "run.trec").read_text()


def test_fp16_index_files_are_faiss_files_both_ways(tmp_path):
    """Our IndexScalarQuantizer(QT_fp16) files equal faiss's byte for byte (faiss's rounding of ties included),
    faiss reads them, and we read faiss's without faiss."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, 32)) * rng.choice([1e-6, 1e-3, 1.0, 300.0], size=(300, 1))).astype(np.float32)
    x[0, :4] = [192.5625, -0.26086426, 1e-8, 0.0]  # exact halfway cases and an fp16 subnormal
    for metric, faiss_metric in (("ip", faiss.METRIC_INNER_PRODUCT), ("l2", faiss.METRIC_L2)):
        reference = faiss.IndexScalarQuantizer(32, faiss.ScalarQuantizer.QT_fp16, faiss_metric)
        reference.add(x)
        faiss.write_index(reference, str(tmp_path / f"faiss-{metric}"))
        write_flat_index(tmp_path / f"ours-{metric}", x, metric=metric, dtype="float16")
        assert (tmp_path / f"ours-{metric}").read_bytes() == (tmp_path / f"faiss-{metric}").read_bytes()
        flat = read_flat_index(tmp_path / f"faiss-{metric}")
        assert flat.metric == metric and flat.dtype == "float16" and flat.vectors.shape == (300, 32)
        np.testing.assert_array_equal(np.asarray(flat.vectors, dtype=np.float32),
                                      reference.sa_decode(reference.sa_encode(x)))
    with FlatIndexWriter(tmp_path / "streamed", 32, dtype="float16") as writer:  # appended in parts
        writer.add(x[:100])
        writer.add(x[100:])
    assert (tmp_path / "streamed").read_bytes() == (tmp_path / "ours-ip").read_bytes()
    faiss.write_index(faiss.IndexScalarQuantizer(32, faiss.ScalarQuantizer.QT_fp16), str(tmp_path / "empty"))
    assert len(read_flat_index(tmp_path / "empty")) == 0
    with pytest.raises(ValueError, match="row 3 does not fit float16"):
        write_flat_index(tmp_path / "big", np.full((5, 4), 7e4, np.float32) * (np.arange(5) > 2)[:, None],
                         dtype="float16")
    assert not (tmp_path / "big").exists()


def test_other_scalar_quantizers_and_broken_fp16_files(tmp_path):
    x = unit_vectors(50, 8)
    sq8 = faiss.IndexScalarQuantizer(8, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq8.train(x)
    sq8.add(x)
    faiss.write_index(sq8, str(tmp_path / "sq8"))
    with pytest.raises(UserError, match="scalar-quantizer index of type 0, not fp16"):
        read_flat_index(tmp_path / "sq8")
    write_flat_index(tmp_path / "fp16", x, dtype="float16")
    (tmp_path / "cut").write_bytes((tmp_path / "fp16").read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_flat_index(tmp_path / "cut")


def test_fp16_index_search_equals_faiss_and_the_converter(tmp_path):
    """The converted fp16 folder: faiss (as Pyserini's FaissSearcher) and our torch search agree."""
    from pyserini_llama.dense.convert import main as convert_main

    x, q = unit_vectors(800, 32, seed=6), unit_vectors(9, 32, seed=7)
    make_index(tmp_path / "f32", x)
    (tmp_path / "f32" / "index_info.json").write_text('{"encoder": "e"}\n')
    assert convert_main(["--index", str(tmp_path / "f32"), "--output", str(tmp_path / "f16"),
                         "--rows-per-step", "300"]) == 0
    assert (tmp_path / "f16" / "docid").read_text() == (tmp_path / "f32" / "docid").read_text()
    assert (tmp_path / "f16" / "index_info.json").read_text() == '{"encoder": "e"}\n'
    assert (tmp_path / "f16" / "index").stat().st_size < (tmp_path / "f32" / "index").stat().st_size * 0.51
    with_faiss = DenseSearcher(tmp_path / "f16", backend="faiss")
    assert isinstance(with_faiss._faiss, faiss.IndexScalarQuantizer)
    s_f, i_f = with_faiss.search_embeddings(q, 20)
    for memory in ("device", "host"):
        s_t, i_t = DenseSearcher(tmp_path / "f16", backend="torch", memory=memory,
                                 rows_per_chunk=128).search_embeddings(q, 20)
        np.testing.assert_array_equal(i_t, i_f)
        np.testing.assert_allclose(s_t, s_f, rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="already exists"):
        convert_main(["--index", str(tmp_path / "f32"), "--output", str(tmp_path / "f16")])


def test_streamed_and_sharded_searchers_equal_the_resident_one(tmp_path):
    x, q = unit_vectors(1000, 16, seed=8), unit_vectors(30, 16, seed=9)
    x[700:720] = x[10]  # duplicates: tied scores across a chunk boundary
    folder = make_index(tmp_path / "idx", x)
    resident = DenseSearcher(folder, backend="torch", rows_per_chunk=64).search_embeddings(q, 50)
    for kwargs in (dict(memory="host"), dict(devices=["cpu", "cpu", "cpu"]), dict(memory="host", fp16=True)):
        s, i = DenseSearcher(folder, backend="torch", rows_per_chunk=64, **kwargs).search_embeddings(q, 50)
        if kwargs.get("fp16"):
            assert (i[:, :5] == resident[1][:, :5]).mean() > 0.95
            continue
        np.testing.assert_array_equal(i, resident[1])
        np.testing.assert_array_equal(s, resident[0])
    with pytest.raises(UserError, match="unknown index memory"):
        DenseSearcher(folder, backend="torch", memory="disk")


@pytest.mark.integration
def test_pyserini_faiss_searcher_reads_our_fp16_index(tmp_path):
    """Pyserini's own FaissSearcher opens the fp16 index we write and ranks as our torch search does."""
    import json
    import subprocess
    import sys

    pytest.importorskip("pyserini")
    from conftest import cli_env

    x, q = unit_vectors(300, 16, seed=10), unit_vectors(3, 16, seed=11)
    folder = tmp_path / "idx"
    folder.mkdir()
    write_flat_index(folder / "index", x, dtype="float16")
    write_docids(folder / "docid", [f"doc{i}" for i in range(len(x))])
    np.save(tmp_path / "q.npy", q)
    script = f"""
import json, numpy as np
from pyserini_llama.java import ensure_java
ensure_java()
from pyserini.search.faiss import FaissSearcher
q = np.load({str(tmp_path / "q.npy")!r})
class Encoder:
    def encode(self, text):
        return q[int(text)]
searcher = FaissSearcher({str(folder)!r}, Encoder())
print(json.dumps([[(h.docid, float(h.score)) for h in searcher.search(str(i), k=10)] for i in range(len(q))]))
"""
    proc = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    scores, rows = DenseSearcher(folder, backend="torch").search_embeddings(q, 10)
    for hits, row, row_scores in zip(theirs, rows, scores):
        assert [d for d, _ in hits] == [f"doc{i}" for i in row]
        np.testing.assert_allclose([s for _, s in hits], row_scores, atol=1e-5)
