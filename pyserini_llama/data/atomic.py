"""Write files so that a crash or a kill never leaves a partial file under the final name.

Outputs are checked before any work starts (:func:`check_output_path`: not a folder, not already there unless
replacing, and the folder really writable), written under a temporary name, and renamed into place when
complete, with the permissions a plain ``open()`` would give (``0644`` under the usual umask), as Pyserini's
outputs have, so colleagues on a shared server can read them.

Two more promises: an output that another process finished while this one worked is never clobbered (unless
replacing was asked for: the final step is a hard link, which fails when the name exists), and a folder is
replaced only when everything in it is what its writer makes (``owns``): ``--overwrite`` on a folder of
someone's files is refused instead of deleting them. An operating-system error while writing names the output
it was writing (the kernel's ``ENOSPC`` names no file).
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Optional, Sequence, Union

from ..errors import UserError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(folder: Path) -> None:
    """Give a finished tree the permissions plain ``mkdir``/``open`` would have (libraries that write through
    temporary files, and ``mkdtemp``, leave 0600/0700): 0644/0755 under the usual umask."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def _ensure_folder(folder: Path) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{parent}: is a file, so {folder} cannot be a folder")
        if parent.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only, no permission, full: the system's word, with the folder named
        raise named_os_error(e, folder) from None


def named_os_error(e: OSError, path: PathLike) -> OSError:
    """``e`` naming ``path`` when it names no file (what ``write()`` raises on a full disk)."""
    if e.filename is not None:
        return e
    named = OSError(e.errno, e.strerror or str(e), str(path))
    named.__cause__ = e
    return named


def check_writable_folder(folder: PathLike) -> Path:
    """Create ``folder`` if needed and prove it writable by creating a file in it (works as root and on
    read-only mounts, where permission bits alone mislead). An unwritable folder is the operating system's
    error (exit status 1), naming the folder."""
    folder = Path(folder)
    _ensure_folder(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(folder)) from None
    return folder


def foreign_entries(folder: PathLike, owns: Sequence[str]) -> list:
    """Names in ``folder`` that match none of the glob patterns ``owns`` (what its writer makes)."""
    import fnmatch

    return sorted(p.name for p in Path(folder).iterdir() if not any(fnmatch.fnmatchcase(p.name, o) for o in owns))


def check_replaceable(folder: PathLike, owns: Optional[Sequence[str]]) -> None:
    """Refuse to replace (delete) a folder holding files its writer does not make: they are someone's."""
    folder = Path(folder)
    if owns is None or not folder.is_dir() or folder.is_symlink():
        if folder.is_symlink():
            raise UserError(f"{folder}: is a symbolic link; refusing to replace what it points to")
        return
    strangers = foreign_entries(folder, owns)
    if strangers:
        raise UserError(f"{folder}: holds files this program did not write ({', '.join(strangers[:3])}); refusing "
                        f"to replace it: move them away, or give another folder")


def check_output_path(path: PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace a finished result unless asked to; refuse a folder or an unwritable place."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path}: is a folder; give the path of a file to write")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    check_writable_folder(path.parent)
    return path


def check_output_dir(path: PathLike, overwrite: bool = False, owns: Optional[Sequence[str]] = None) -> Path:
    """The folder-output twin of :func:`check_output_path` (an index folder, a checkpoint folder); with
    ``owns``, a folder to be replaced must hold only what its writer makes."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file; give the path of a folder to write")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    if path.exists():
        check_replaceable(path, owns)
    check_writable_folder(path.parent)
    return path


def _place(tmp: str, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite`` never over a name another process made meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if the name exists: no window between a check and the rename
    except FileExistsError:
        raise UserError(f"{path} already exists (another process wrote it while this one ran); pass --overwrite "
                        f"to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():  # a file system without hard links: check, then rename
            raise UserError(f"{path} already exists (another process wrote it while this one ran); pass "
                            f"--overwrite to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", overwrite: bool = True,
                 encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it into place only when the block succeeds."""
    path = check_output_path(path, overwrite)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise named_os_error(e, path.parent) from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        _place(tmp, path, overwrite)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise named_os_error(e, path) from None
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike, overwrite: bool = False, owns: Optional[Sequence[str]] = None) -> Iterator[Path]:
    """Build a directory under a temporary name; move it into place only when the block succeeds.

    A replaced folder is first renamed aside, so at every moment ``path`` is either the old complete folder or
    the new one. ``owns`` (glob patterns of the names the block writes) guards what is replaced: a folder
    holding anything else is refused, before the work and again at the end. Without ``overwrite``, a folder
    that another process made meanwhile is refused, not replaced.
    """
    import shutil

    path = check_output_dir(path, overwrite, owns)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise named_os_error(e, path.parent) from None
    try:
        yield tmp
        follow_umask(tmp)  # what libraries wrote through temporary files (0600) included
        old = None
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise UserError(f"{path} already exists (another process wrote it while this one ran); pass "
                                f"--overwrite to replace it")
            check_output_dir(path, overwrite, owns)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "replaced")
        try:
            os.rename(tmp, path)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and not overwrite:
                raise UserError(f"{path} already exists (another process wrote it while this one ran); pass "
                                f"--overwrite to replace it") from None
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise named_os_error(e, path) from None
        raise
