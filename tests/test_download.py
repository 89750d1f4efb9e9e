"""Resumable, verified downloads and safe extraction, against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pyserini_llama.download import DownloadError, download, extract_archive, fetch_archive


class FileServer:
    """Serves ``files`` (path -> bytes) with Range support; ``drop[path] = n`` cuts the next reply after n bytes."""

    def __init__(self):
        self.files, self.drop, self.requests = {}, {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                server.requests.append((self.path, self.headers.get("Range")))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.drop.pop(self.path, None)
                self.wfile.write(body[start:cut] if cut is not None else body[start:])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def index_tarball(tmp_path: Path, name: str = "toy-index") -> bytes:
    """A real (tiny) faiss flat index + docid file, packed as Pyserini packs its prebuilt indexes."""
    from pyserini_llama.dense.faiss_format import write_docids, write_flat_index

    folder = tmp_path / "src" / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_flat_index(folder / "index", rng.standard_normal((5, 8)).astype(np.float32))
    write_docids(folder / "docid", [f"d{i}" for i in range(5)])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=name)
    return buf.getvalue()


def beir_zip(name: str = "toyset") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{name}/corpus.jsonl", "".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"doc {i}"})
                                                    + "\n" for i in range(3)))
        zf.writestr(f"{name}/queries.jsonl", json.dumps({"_id": "q1", "text": "doc one"}) + "\n")
        zf.writestr(f"{name}/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return buf.getvalue()


def evil_tar(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("index/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if kind == "traversal":
            bad = tarfile.TarInfo("../evil")
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        elif kind == "absolute":
            bad = tarfile.TarInfo("/tmp/evil")
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        else:
            bad = tarfile.TarInfo("index/link")
            bad.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            bad.linkname = "/etc/passwd" if kind == "symlink" else "index/ok.txt"
            tar.addfile(bad)
    return buf.getvalue()


def test_download_verify_and_extract_index(server, tmp_path):
    data = index_tarball(tmp_path)
    url = server.add("/toy-index.tar.gz", data)
    target = fetch_archive([url], tmp_path / "cache" / "toy-index", md5=md5(data), progress=False)
    from pyserini_llama.dense.faiss_format import read_docids, read_flat_index

    assert read_docids(target / "docid") == [f"d{i}" for i in range(5)]
    assert read_flat_index(target / "index").vectors.shape == (5, 8)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["toy-index"]  # archive removed, no temp


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path):
    url = server.add("/f.bin", b"x" * 1000)
    dest = download(url, tmp_path / "f.bin", md5=md5(b"x" * 1000), progress=False)
    download(url, dest, md5=md5(b"x" * 1000), progress=False)
    assert len(server.requests) == 1


def test_resumes_after_dropped_connection(server, tmp_path):
    data = bytes(range(256)) * 4000  # ~1 MB
    url = server.add("/big.bin", data)
    server.drop["/big.bin"] = 300_000
    dest = download(url, tmp_path / "big.bin", md5=md5(data), sha256=hashlib.sha256(data).hexdigest(),
                    progress=False, backoff=0)
    assert dest.read_bytes() == data
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=300000-")]
    assert not (tmp_path / "big.bin.part").exists()


def test_rerun_resumes_a_partial_file(server, tmp_path):
    data = b"abcdefghij" * 10_000
    url = server.add("/p.bin", data)
    server.drop["/p.bin"] = 40_000
    with pytest.raises(DownloadError, match="rerun to resume"):
        download(url, tmp_path / "p.bin", md5=md5(data), progress=False, retries=0)
    assert (tmp_path / "p.bin.part").stat().st_size == 40_000
    assert not (tmp_path / "p.bin").exists()
    assert download(url, tmp_path / "p.bin", md5=md5(data), progress=False).read_bytes() == data
    assert server.requests[-1] == ("/p.bin", "bytes=40000-")


def test_bad_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    data = index_tarball(tmp_path)
    url = server.add("/corrupt.tar.gz", data[:-10] + b"0123456789")  # corrupted in transit
    with pytest.raises(DownloadError, match="md5 mismatch.*deleted"):
        fetch_archive([url], tmp_path / "cache" / "idx", md5=md5(data), progress=False)
    assert not (tmp_path / "cache" / "idx").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_http_error_is_reported_without_retrying(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.zip"), tmp_path / "m.zip", progress=False)
    assert len(server.requests) == 1


def test_unreachable_server_gives_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download("http://127.0.0.1:9/none.zip", tmp_path / "n.zip", progress=False, retries=1, backoff=0)


@pytest.mark.parametrize("kind,message", [("traversal", "leaves the target"), ("absolute", "absolute path"),
                                          ("symlink", "refusing link"), ("hardlink", "refusing link")])
def test_unsafe_tar_members_are_refused(tmp_path, kind, message):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(evil_tar(kind))
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match=message):
        extract_archive(archive, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "target").exists()
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # the temporary folder is gone too


def test_zip_symlink_and_traversal_are_refused(tmp_path):
    for name, attr in (("link", 0o120777 << 16), ("../evil", 0o100644 << 16)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = attr
            zf.writestr(info, "/etc/passwd")
        archive = tmp_path / "evil.zip"
        archive.write_bytes(buf.getvalue())
        with pytest.raises(DownloadError, match="refusing"):
            extract_archive(archive, tmp_path / "target")
        assert not (tmp_path / "target").exists() and not (tmp_path / "evil").exists()


def test_beir_collection_downloaded_by_name(server, tmp_path, monkeypatch):
    from pyserini_llama.data import collections

    data = beir_zip("scifact")
    server.add("/beir/scifact.zip", data)
    monkeypatch.setenv("PYSERINI_LLAMA_BEIR_URL", server.url("/beir"))
    monkeypatch.setenv("PYSERINI_LLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(collections.BEIR_MD5, "scifact", md5(data))
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(Exception, match="allow its download"):
        collections.resolve_collection("beir-scifact", str(empty), download=False)
    folder = collections.resolve_collection("beir-scifact", str(empty))
    assert folder.root == tmp_path / "cache" / "collections" / "scifact"
    assert folder.queries("test") == {"q1": "doc one"} and len(folder.corpus()) == 3
    assert collections.resolve_collection("scifact", str(empty)).root == folder.root
    assert len(server.requests) == 1  # the second lookup reads the cache


def test_beir_collection_with_wrong_md5_is_refused(server, tmp_path, monkeypatch):
    from pyserini_llama.data import collections

    server.add("/beir/nfcorpus.zip", beir_zip("nfcorpus"))
    monkeypatch.setenv("PYSERINI_LLAMA_BEIR_URL", server.url("/beir"))
    monkeypatch.setenv("PYSERINI_LLAMA_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match="md5 mismatch"):  # the real published md5 of nfcorpus.zip
        collections.resolve_collection("beir-nfcorpus", str(tmp_path))
    assert not (tmp_path / "cache" / "collections" / "nfcorpus").exists()


def test_names_without_a_public_source(tmp_path):
    from pyserini_llama.data.collections import resolve_collection
    from pyserini_llama.errors import UserError

    with pytest.raises(UserError, match="not a BEIR dataset"):
        resolve_collection("cranfield", str(tmp_path))
    with pytest.raises(UserError, match="does not distribute 'robust04'"):
        resolve_collection("beir-robust04", str(tmp_path))
