"""The folders this project owns, and the only ways it names or deletes paths inside them.

Every name that becomes a path (a prebuilt index, a collection, a regression group, a model name in the cache)
goes through :func:`safe_name`; every folder the project deletes goes through :func:`remove_tree`, which
refuses anything that does not resolve strictly inside the folder that owns it, and symbolic links. So a
registry entry named ``../../x`` or ``/home/me`` can never make a build delete someone's files.

Example::

    root = cache_dir() / "collections"
    target = owned_path(root, safe_name(name, "collection name"))
    remove_tree(target, root)                    # refuses a link, or a path outside root
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Union

from .errors import UserError

PathLike = Union[str, os.PathLike]
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]*")


def cache_dir() -> Path:
    """Where converted models, downloads and regression work live (``$PYSERINI_LLAMA_CACHE``,
    default ``~/.cache/pyserini-llama``)."""
    return Path(os.environ.get("PYSERINI_LLAMA_CACHE") or Path.home() / ".cache" / "pyserini-llama").expanduser()


def safe_name(name: str, what: str) -> str:
    """``name`` when it can be one path component: letters, digits and ``._+=@-``, not starting with a dot."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"{what} {name!r} cannot name a folder: use letters, digits and . _ + = @ - "
                        f"(no slashes, no leading dot)")
    return name


def is_inside(path: PathLike, root: PathLike) -> bool:
    """True when ``path`` resolves strictly inside ``root`` (links followed)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return path != root and root in path.parents


def owned_path(root: PathLike, *parts: str) -> Path:
    """``root / parts``, refused unless it stays strictly inside ``root``."""
    path = Path(root).joinpath(*parts)
    if not is_inside(path, root):
        raise UserError(f"{path}: resolves outside {root}, the folder it must stay in")
    return path


def remove_tree(path: PathLike, root: PathLike) -> None:
    """Delete the folder (or file) ``path``, which must lie strictly inside ``root`` and not be a link.

    A link is refused rather than followed or unlinked: the project never made it, so it is not the project's.
    """
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{path}: is a symbolic link; refusing to delete through it (remove it yourself)")
    if not path.exists():
        return
    if not is_inside(path, root):
        raise UserError(f"{path}: refusing to delete a path outside {root}")
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextlib.contextmanager
def exclusive(lock: PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created if needed) while the block runs; another process
    holding it is a UserError naming ``what`` and that process. The lock dies with the process, so a killed
    run never leaves a stale one behind."""
    import fcntl

    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            raise UserError(f"{what} is being written by another process{f' (pid {owner})' if owner else ''}; "
                            f"wait for it to finish, or write somewhere else") from None
        with contextlib.suppress(OSError):  # who holds it, for the message above; a full disk is said later
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
