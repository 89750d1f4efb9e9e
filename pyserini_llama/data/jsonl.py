"""Strict JSONL reading: every problem is reported with its file and line number."""
from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import IO, Iterator, Tuple, Union

from ..errors import DataError, UserError

PathLike = Union[str, os.PathLike]


def open_binary(path: PathLike) -> IO[bytes]:
    """Open a (possibly gzipped) file for reading, with a clear error if it is missing."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_number, line)`` for non-blank lines; non-UTF-8 bytes raise a DataError.

    Lines are decoded one at a time so that a bad byte is reported on its own line.
    """
    with open_binary(path) as f:
        lineno = 0
        try:
            for lineno, raw in enumerate(f, start=1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a byte-order mark is not part of the first id (Python's utf-8-sig)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(path, f"not valid UTF-8 ({e.reason} at byte {e.start} of the line)",
                                    lineno) from None
                if line.strip():
                    yield lineno, line.rstrip("\n").rstrip("\r")
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # a .gz name on other bytes, or a cut-off archive
            raise DataError(path, f"not a valid gzip file ({e})", lineno + 1) from None


def iter_jsonl(path: PathLike) -> Iterator[Tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each JSON object line."""
    for lineno, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})", lineno) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
        yield lineno, obj


def read_json_object(path: PathLike, what: str = "JSON file") -> dict:
    """A whole-file JSON object (a UTF-8 byte-order mark allowed, as editors on Windows write it); a missing,
    unreadable, malformed or non-object file is a DataError naming it.

    ``what`` says what the file is for the message (``index info``, ``checkpoint config``, ...).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg}) in this {what}", e.lineno) from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(path, f"cannot read {what} ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object ({what}), got {type(data).__name__}")
    return data
