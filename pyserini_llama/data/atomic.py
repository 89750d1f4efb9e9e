"""Write files so that a crash or a kill never leaves a partial file under the final name.

Outputs are checked before any work starts (:func:`check_output_path`: not a folder, not already there unless
replacing, and the folder really writable), written under a temporary name, and renamed into place when
complete, with the permissions a plain ``open()`` would give (``0644`` under the usual umask), as Pyserini's
outputs have, so colleagues on a shared server can read them.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

from ..errors import UserError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ensure_folder(folder: Path) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{parent}: is a file, so {folder} cannot be a folder")
        if parent.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{folder}: cannot create the folder ({e.strerror or e})") from None


def check_writable_folder(folder: PathLike) -> Path:
    """Create ``folder`` if needed and prove it writable by creating a file in it (works as root and on
    read-only mounts, where permission bits alone mislead)."""
    folder = Path(folder)
    _ensure_folder(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"{folder}: cannot write here ({e.strerror or e})") from None
    return folder


def check_output_path(path: PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace a finished result unless asked to; refuse a folder or an unwritable place."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path}: is a folder; give the path of a file to write")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    check_writable_folder(path.parent)
    return path


def check_output_dir(path: PathLike, overwrite: bool = False) -> Path:
    """The folder-output twin of :func:`check_output_path` (an index folder, a checkpoint folder)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file; give the path of a folder to write")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    check_writable_folder(path.parent)
    return path


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", overwrite: bool = True,
                 encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it into place only when the block succeeds."""
    path = check_output_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name; move it into place only when the block succeeds.

    A replaced folder is first renamed aside, so at every moment ``path`` is either the old complete folder or
    the new one.
    """
    import shutil

    path = check_output_dir(path, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "replaced")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
