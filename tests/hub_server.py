"""A local stand-in for the Hugging Face hub's HTTP API, for the real ``huggingface_hub`` download path.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.endpoint`. It answers what ``huggingface_hub`` asks while resolving and
downloading a repository: ``GET /api/models/{repo}/revision/{rev}`` (repository info), ``GET
/api/models/{repo}/tree/{rev}`` (the file listing), ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (file metadata
with ``X-Repo-Commit``, ``ETag``, ``X-Linked-Size``; ranges for resumed downloads). A gated repository answers its
files with 401 and ``X-Error-Code: GatedRepo`` as the hub does; ``truncate[(repo, file)] = n`` serves the next
download of that file cut to ``n`` bytes (with a matching Content-Length, as a proxy cutting the transfer
would). Every request is logged in :attr:`FakeHub.requests` as ``(method, path)``.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Set, Tuple
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".bin", ".safetensors", ".model")


class FakeHub:
    def __init__(self):
        self.repos: Dict[str, Dict[str, bytes]] = {}
        self.gated: Set[str] = set()
        self.truncate: Dict[Tuple[str, str], int] = {}
        self.requests: List[Tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._answer(self, head=True)

            def do_GET(self):
                hub._answer(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add_repo(self, repo_id: str, folder: Path) -> None:
        """Serve every file of ``folder`` (top level) as the main revision of ``repo_id``."""
        self.repos[repo_id] = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}

    def commit(self, repo_id: str) -> str:
        digest = hashlib.sha1()
        for name, body in sorted(self.repos[repo_id].items()):
            digest.update(name.encode() + hashlib.sha256(body).digest())
        return digest.hexdigest()

    def downloads(self, repo_id: str) -> List[str]:
        """Files of ``repo_id`` whose contents were sent (GET on resolve)."""
        prefix = f"/{repo_id}/resolve/"
        return [p.split("/", 5)[-1] for m, p in self.requests if m == "GET" and p.startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the API ------------------------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(("HEAD" if head else "GET", path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            return self._api(handler, "/".join(parts[2:4]), parts[4], head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file(handler, "/".join(parts[:2]), "/".join(parts[4:]), head)
        return self._send(handler, 404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, head)

    def _api(self, handler, repo_id: str, what: str, head: bool) -> None:
        if repo_id not in self.repos:
            return self._repo_not_found(handler, repo_id, head)
        files = self.repos[repo_id]
        if what == "revision":
            body = {"id": repo_id, "modelId": repo_id, "sha": self.commit(repo_id), "private": False,
                    "gated": "manual" if repo_id in self.gated else False,
                    "siblings": [{"rfilename": name} for name in files]}
        else:
            body = [self._tree_entry(name, data) for name, data in files.items()]
        return self._send(handler, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)

    @staticmethod
    def _tree_entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _file(self, handler, repo_id: str, name: str, head: bool) -> None:
        if repo_id not in self.repos:
            return self._repo_not_found(handler, repo_id, head)
        if repo_id in self.gated:
            message = (f"Access to model {repo_id} is restricted. You must have access to it and be "
                       f"authenticated to access it. Please log in.")
            return self._send(handler, 401, json.dumps({"error": message}).encode(),
                              {"X-Error-Code": "GatedRepo", "X-Error-Message": message}, head)
        data = self.repos[repo_id].get(name)
        if data is None:
            return self._send(handler, 404, b'{"error": "Entry not found"}',
                              {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}, head)
        headers = {"X-Repo-Commit": self.commit(repo_id), "Accept-Ranges": "bytes"}
        if name.endswith(LFS_SUFFIXES):
            etag = hashlib.sha256(data).hexdigest()
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        else:
            etag = hashlib.sha1(data).hexdigest()
        headers["ETag"] = f'"{etag}"'
        status, body = 200, data
        ranged = handler.headers.get("Range")
        if ranged and not head:
            start = int(ranged.split("=")[1].split("-")[0])
            status, body = 206, data[start:]
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if not head and (repo_id, name) in self.truncate:
            body = body[:self.truncate.pop((repo_id, name))]
        return self._send(handler, status, body, headers, head, length=len(data) if head else None)

    def _repo_not_found(self, handler, repo_id: str, head: bool) -> None:
        message = "Repository not found"
        return self._send(handler, 401, json.dumps({"error": message}).encode(),
                          {"X-Error-Code": "RepoNotFound", "X-Error-Message": message}, head)

    @staticmethod
    def _send(handler, status: int, body: bytes, headers: dict, head: bool, length=None) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
