"""Faults injected into a command while it runs: a full disk, a read-only folder, an interrupt, another writer.

The same functions serve both ways a case runs: in the test process (``patch`` is pytest's
``monkeypatch.setattr``) and in a child process (``harness.py`` applies them with plain ``setattr`` before it
runs the command as ``python -m`` would). They patch only the operating-system layer Python code writes through
(``open``, ``os.*``), never the project's own functions, so the same case can run against any version of the
code. What they cannot reach is named here: writes made by native code (faiss, safetensors, Java) do not see
them; those commands write their final outputs from Python anyway.

* ``disk_full(root)``: the first ``write``/``flush``/``fsync`` of a file under ``root`` fails with ENOSPC, as
  the kernel reports it (an ``OSError`` without a file name: the program must say which file).
* ``read_only(root)``: creating, changing, renaming or deleting anything under ``root`` fails with EROFS.
* ``interrupt_reading(root)``: the first read of a file under ``root`` raises KeyboardInterrupt (Ctrl-C while
  inputs are read); ``interrupt_writing(root)``: the first write under ``root`` does (Ctrl-C at the worst
  moment: while an output is half-written).
* ``concurrent_writer(root, target, make)``: at the first write under ``root`` to anything but ``target``,
  ``make(target)`` runs: another process has just finished the same output.
* ``count_model_loads(counter)``: every ``from_pretrained`` of a transformers or peft model adds one, so a
  case can assert that a command failed before it loaded a model (the minutes of work come after that).
"""
from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path
from typing import Callable, Dict, Optional

Patch = Callable[[object, str, object], None]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _fd_path(fd: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _resolve(path, dir_fd: Optional[int] = None) -> Optional[str]:
    """The absolute path a call refers to (``dir_fd`` relative paths included), or None for an fd or object."""
    if isinstance(path, int):
        return _fd_path(path)
    try:
        text = os.fsdecode(path)
    except TypeError:
        return None
    if dir_fd is not None and not os.path.isabs(text):
        base = _fd_path(dir_fd)
        text = os.path.join(base, text) if base else text
    return os.path.abspath(text)


def _under(path: Optional[str], root: str) -> bool:
    return path is not None and (path == root or path.startswith(root.rstrip(os.sep) + os.sep))


def _writing(mode: str) -> bool:
    return any(c in mode for c in "wax+")


class _Proxy:
    """A file object whose reads or writes call ``hook`` first; everything else is the real file's."""

    def __init__(self, f, on_write: Optional[Callable[[], None]] = None,
                 on_line: Optional[Callable[[int], None]] = None):
        self._f, self._on_write, self._on_line, self._lines = f, on_write, on_line, 0

    def write(self, data):
        if self._on_write:
            self._on_write()
        return self._f.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._on_write:
            self._on_write()
        return self._f.flush()

    def _line(self):
        self._lines += 1
        if self._on_line:
            self._on_line(self._lines)

    def readline(self, *args):
        self._line()
        return self._f.readline(*args)

    def read(self, *args):
        self._line()
        return self._f.read(*args)

    def read1(self, *args):
        self._line()
        return self._f.read1(*args)

    def readinto(self, b):
        self._line()
        return self._f.readinto(b)

    def __iter__(self):
        return self

    def __next__(self):
        self._line()
        return next(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._f, name)


class Filesystem:
    """Installs wrappers around ``open`` and ``os`` calls; each fault adds its rules."""

    def __init__(self, patch: Patch):
        self.patch = patch
        self.before_open: list = []  # (path, mode) -> None (raise to fail the open)
        self.on_open: list = []  # (path, mode, file) -> file
        self.on_call: list = []  # (name, path) -> None (raise to fail the call)
        self._installed = False

    def install(self) -> "Filesystem":
        if self._installed:
            return self
        self._installed = True
        real_open, real_os = io.open, {n: getattr(os, n) for n in (
            "open", "mkdir", "rename", "replace", "link", "symlink", "unlink", "remove", "rmdir", "chmod",
            "fsync", "write", "truncate", "utime")}
        fs = self

        def fake_open(file, mode="r", *args, **kwargs):
            path = _resolve(file)
            for rule in fs.before_open:
                rule(path, mode)
            f = real_open(file, mode, *args, **kwargs)
            for rule in fs.on_open:
                f = rule(path, mode, f)
            return f

        def wrap(name):
            real = real_os[name]

            def call(*args, **kwargs):
                if name in ("open",):
                    flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
                    kind = "create" if flags & WRITE_FLAGS else "read"
                else:
                    kind = name
                paths = []
                if name in ("fsync", "write"):
                    paths = [_fd_path(args[0])]
                elif name in ("rename", "replace", "link", "symlink"):
                    paths = [_resolve(args[0], kwargs.get("src_dir_fd")), _resolve(args[1], kwargs.get("dst_dir_fd"))]
                else:
                    paths = [_resolve(args[0], kwargs.get("dir_fd"))]
                for rule in fs.on_call:
                    for path in paths:
                        rule(kind, path)
                return real(*args, **kwargs)

            call.__name__ = name
            return call

        self.patch(builtins, "open", fake_open)
        self.patch(io, "open", fake_open)
        for name in real_os:
            self.patch(os, name, wrap(name))
        return self


def _os_error(code: int, path: Optional[str] = None) -> OSError:
    return OSError(code, os.strerror(code), *([path] if path else []))


def disk_full(fs: Filesystem, root: str) -> None:
    root = os.path.abspath(root)

    def fail():
        raise _os_error(errno.ENOSPC)  # the kernel's write() names no file

    fs.on_open.append(lambda path, mode, f: _Proxy(f, on_write=fail) if _under(path, root) and _writing(mode)
                      else f)

    def rule(kind, path):
        if kind in ("fsync", "write", "truncate") and _under(path, root):
            fail()

    fs.on_call.append(rule)


def read_only(fs: Filesystem, root: str) -> None:
    root = os.path.abspath(root)

    def check(path):
        if _under(path, root):
            raise _os_error(errno.EROFS, path)

    fs.before_open.append(lambda path, mode: check(path) if _writing(mode) else None)

    def rule(kind, path):
        if kind in ("create", "mkdir", "rename", "replace", "link", "symlink", "unlink", "remove", "rmdir",
                    "chmod", "truncate", "utime", "write"):
            check(path)

    fs.on_call.append(rule)


def interrupt_reading(fs: Filesystem, root: str) -> None:
    root = os.path.abspath(root)

    def on_line(n):
        raise KeyboardInterrupt

    fs.on_open.append(lambda path, mode, f: _Proxy(f, on_line=on_line) if _under(path, root) and not _writing(mode)
                      and not os.path.isdir(path) else f)


def interrupt_writing(fs: Filesystem, root: str) -> None:
    root = os.path.abspath(root)

    def stop():
        raise KeyboardInterrupt

    fs.on_open.append(lambda path, mode, f: _Proxy(f, on_write=stop) if _under(path, root) and _writing(mode)
                      else f)

    def rule(kind, path):
        if kind in ("fsync", "write") and _under(path, root):
            stop()

    fs.on_call.append(rule)


def concurrent_writer(fs: Filesystem, root: str, target: str, make: Callable[[Path], None]) -> None:
    """At the first write-open under ``root`` of anything but ``target`` itself, ``make(target)``."""
    root, target = os.path.abspath(root), os.path.abspath(target)
    state = {"done": False}

    def trigger(path):
        if state["done"] or not _under(path, root) or _under(path, target):
            return
        state["done"] = True
        if not os.path.lexists(target):
            make(Path(target))

    fs.before_open.append(lambda path, mode: trigger(path) if _writing(mode) else None)
    fs.on_call.append(lambda kind, path: trigger(path) if kind in ("create", "mkdir") else None)


def count_model_loads(patch: Patch, counter: Dict[str, int]) -> None:
    """Count ``from_pretrained`` calls of transformers models and peft adapters (imported lazily here)."""
    counter.setdefault("model_loads", 0)
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return
    original = PreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        counter["model_loads"] += 1
        return original(cls, *args, **kwargs)

    patch(PreTrainedModel, "from_pretrained", classmethod(from_pretrained))


FAULTS = {"disk_full": disk_full, "read_only": read_only, "interrupt_reading": interrupt_reading,
          "interrupt_writing": interrupt_writing}


COMPETITOR, COMPETITOR_BYTES = "made-by-another-process", b"finished by another process\n"


def make_competitor(target: Path, kind: str) -> None:
    """What the other writer leaves: a finished file, or a finished folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        target.mkdir()
        (target / COMPETITOR).write_bytes(COMPETITOR_BYTES)
    else:
        target.write_bytes(COMPETITOR_BYTES)


def apply(patch: Patch, faults: list, counter: Dict[str, int]) -> None:
    """Install ``faults``: ``[("disk_full", root), ("concurrent_writer", root, target, "file"|"dir"), ...]``."""
    count_model_loads(patch, counter)
    if not faults:
        return
    fs = Filesystem(patch)
    for name, *args in faults:
        if name == "concurrent_writer":
            root, target, kind = args
            concurrent_writer(fs, root, target, lambda t, kind=kind: make_competitor(t, kind))
        else:
            FAULTS[name](fs, *args)
    fs.install()
