"""Download files resumably with checksum verification, and extract archives safely.

Example::

    from pyserini_llama.download import download, extract_archive
    zip_path = download("https://example.org/scifact.zip", "cache/scifact.zip",
                        md5="5f7d1de60b170fc8027bb7898e2efca1")
    extract_archive(zip_path, "cache/collections/scifact")   # refuses links and paths leaving the target

A download is written to ``<dest>.part`` and renamed to ``dest`` only once complete and verified, so an
interrupted download never looks finished; rerunning resumes the ``.part`` file with an HTTP Range request.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

from .errors import UserError

PathLike = Union[str, os.PathLike]
CHUNK = 1 << 20
# Errors after which a transfer is resumed rather than given up: the connection dropped or stalled.
TRANSIENT = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError, socket.timeout,
             TimeoutError)


class DownloadError(UserError):
    """A download or an archive that cannot be used (network failure, bad checksum, unsafe member)."""


def file_digests(path: PathLike, algorithms: Iterable[str] = ("md5",)) -> Dict[str, str]:
    """Hex digests of a file for each hashlib algorithm, computed in one pass."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for h in hashers.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashers.items()}


def directory_md5(root: PathLike) -> str:
    """One md5 for a folder: over the sorted relative paths and each file's md5 (identifies a built index)."""
    root = Path(root)
    outer = hashlib.md5()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        outer.update(f"{rel}\t{file_digests(path)['md5']}\n".encode())
    return outer.hexdigest()


def _expected(md5: Optional[str], sha256: Optional[str]) -> Dict[str, str]:
    return {k: v.lower() for k, v in (("md5", md5), ("sha256", sha256)) if v}


def verify_file(path: PathLike, md5: Optional[str] = None, sha256: Optional[str] = None) -> None:
    """Raise :class:`DownloadError` when ``path`` does not match the given checksums."""
    expected = _expected(md5, sha256)
    if not expected:
        return
    actual = file_digests(path, expected)
    for name, want in expected.items():
        if actual[name] != want:
            raise DownloadError(f"{path}: {name} mismatch (expected {want}, got {actual[name]})")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "pyserini-llama"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _total_size(resp, offset: int) -> Optional[int]:
    """The full size of the file, from Content-Range (partial responses) or Content-Length."""
    content_range = resp.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].strip().isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> bool:
    """Append the rest of ``url`` to ``part``; True when the file is complete, False when cut off."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the partial file may already be whole
            total = e.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == offset:
                return True
            part.unlink()
            return False
        raise
    with resp:
        if offset and resp.status != 206:  # the server ignored the Range header: start over
            offset = 0
        total = _total_size(resp, offset)
        mode = "ab" if offset else "wb"
        try:
            with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=part.name[:-len(".part")],
                                                 disable=not progress, leave=False) as bar:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        except OSError as e:
            if e.filename is not None or isinstance(e, TRANSIENT):
                raise
            from .data.atomic import named_os_error  # a full disk: name the file being written

            raise named_os_error(e, part) from None
    return total is None or part.stat().st_size >= total


def download(url: str, dest: PathLike, md5: Optional[str] = None, sha256: Optional[str] = None,
             progress: bool = True, retries: int = 5, timeout: float = 60.0, backoff: float = 2.0) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and verify its checksums.

    An existing ``dest`` that matches the checksums is kept. On a checksum mismatch the download is
    deleted and :class:`DownloadError` raised; nothing is left under ``dest``.
    """
    dest = Path(dest)
    if dest.exists():
        try:
            verify_file(dest, md5, sha256)
            return dest
        except DownloadError:
            dest.unlink()  # a stale or damaged copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        try:
            if _transfer(url, part, timeout, progress):
                break
            last_error = "connection closed before the end of the file"
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code != 429:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            last_error = f"HTTP {e.code} {e.reason}"
        except urllib.error.URLError as e:
            last_error = str(e.reason)
        except TRANSIENT as e:
            last_error = f"{type(e).__name__}: {e}"
        if attempt < retries:
            time.sleep(min(backoff * (attempt + 1), 30.0))
    else:
        raise DownloadError(f"{url}: download failed after {retries + 1} attempts ({last_error}); "
                            f"rerun to resume, or download it by hand to {dest}")
    try:
        verify_file(part, md5, sha256)
    except DownloadError as e:
        part.unlink()
        raise DownloadError(f"{url}: {str(e).split(': ', 1)[1]}; the download was deleted, "
                            f"rerun to fetch it again") from None
    os.replace(part, dest)
    return dest


def download_first(urls: Sequence[str], dest: PathLike, **kwargs) -> Path:
    """Try mirrors in order; report every failure if none works."""
    if not urls:
        raise DownloadError(f"{dest}: no download URL given")
    errors: List[str] = []
    for url in urls:
        try:
            return download(url, dest, **kwargs)
        except DownloadError as e:
            errors.append(str(e))
    raise DownloadError("; ".join(errors))


@dataclass(frozen=True)
class _Member:
    parts: tuple  # path components relative to the archive root
    is_dir: bool
    source: object  # TarInfo or ZipInfo


def _safe_parts(name: str, archive: Path) -> tuple:
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise DownloadError(f"{archive}: refusing absolute path {name!r} in archive")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if ".." in parts:
        raise DownloadError(f"{archive}: refusing path {name!r} that leaves the target folder")
    return parts


def _tar_members(tar: tarfile.TarFile, archive: Path) -> Iterator[_Member]:
    for info in tar.getmembers():
        if info.issym() or info.islnk():
            raise DownloadError(f"{archive}: refusing link {info.name!r} -> {info.linkname!r} in archive")
        if not (info.isfile() or info.isdir()):
            raise DownloadError(f"{archive}: refusing special file {info.name!r} (device, fifo) in archive")
        parts = _safe_parts(info.name, archive)
        if parts:
            yield _Member(parts, info.isdir(), info)


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16  # Unix mode when made on Unix; many writers leave the type bits 0
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            kind = "link" if stat.S_ISLNK(mode) else "special file"
            raise DownloadError(f"{archive}: refusing {kind} {info.filename!r} in archive")
        parts = _safe_parts(info.filename, archive)
        if parts:
            yield _Member(parts, info.is_dir(), info)


def _strip_common_root(members: List[_Member]) -> List[_Member]:
    """Archives usually wrap everything in one folder (``scifact/...``); drop it so the target is the root."""
    roots = {m.parts[0] for m in members}
    if len(roots) != 1 or any(len(m.parts) == 1 and not m.is_dir for m in members):
        return members
    return [_Member(m.parts[1:], m.is_dir, m.source) for m in members if len(m.parts) > 1]


def extract_archive(archive: PathLike, target: PathLike, strip_root: bool = True,
                    overwrite: bool = False) -> Path:
    """Extract a ``.tar(.gz|.bz2|.xz)`` or ``.zip`` into ``target`` safely and atomically.

    Every member is checked before anything is written: absolute paths, ``..`` components, symbolic and
    hard links and device files are refused. Files are written into a temporary folder next to ``target``
    that is renamed into place only when extraction completes. With ``strip_root``, a single top-level
    folder shared by all members is removed.
    """
    from .data.atomic import atomic_dir

    archive, target = Path(archive), Path(target)
    if zipfile.is_zipfile(archive):
        opened, lister, reader = zipfile.ZipFile(archive), _zip_members, _read_zip
    elif tarfile.is_tarfile(archive):
        opened, lister, reader = tarfile.open(archive, "r:*"), _tar_members, _read_tar
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")
    with opened as handle:
        members = list(lister(handle, archive))
        if strip_root:
            members = _strip_common_root(members)
        if not any(not m.is_dir for m in members):
            raise DownloadError(f"{archive}: archive holds no files")
        with atomic_dir(target, overwrite=overwrite) as tmp:
            root = tmp.resolve()
            for m in members:
                path = tmp.joinpath(*m.parts)
                if root not in path.resolve().parents and path.resolve() != root:
                    raise DownloadError(f"{archive}: member {'/'.join(m.parts)!r} leaves the target folder")
                if m.is_dir:
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with reader(handle, m.source) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    return target


def _read_zip(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    return zf.open(info)


def _read_tar(tar: tarfile.TarFile, info: tarfile.TarInfo):
    return tar.extractfile(info)


def fetch_archive(urls: Sequence[str], target: PathLike, md5: Optional[str] = None,
                  sha256: Optional[str] = None, downloads: Optional[PathLike] = None,
                  progress: bool = True, keep_archive: bool = False, **kwargs) -> Path:
    """Download an archive (resumable, verified) and extract it safely into ``target``.

    The archive is kept next to ``target`` (or under ``downloads``) while incomplete, so a rerun resumes;
    it is deleted after a successful extraction unless ``keep_archive``.
    """
    target = Path(target)
    name = urls[0].rstrip("/").rsplit("/", 1)[-1] if urls else target.name
    archive_dir = Path(downloads) if downloads else target.parent
    archive = download_first(urls, archive_dir / name, md5=md5, sha256=sha256, progress=progress, **kwargs)
    try:
        extract_archive(archive, target)
    except DownloadError:
        archive.unlink()  # verified but unsafe or unreadable: keeping it would only be extracted again
        raise
    if not keep_archive:
        archive.unlink()
    return target
