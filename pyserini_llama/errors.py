"""User-facing errors: what the user can fix, reported as one line without a traceback (see :mod:`.cli`).

Library code raises :class:`UserError` (or :class:`DataError`, which names the file and line) for anything the
user can fix: a malformed line, a missing file, a model that is not there. It never exits the process and never
names command-line flags; the CLIs in :mod:`.cli` turn these errors into one line and an exit status.
"""
from __future__ import annotations

from typing import Optional

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error caused by input or configuration, reported as one line without a traceback."""


class DataError(UserError):
    """Malformed input data; the message names the file and line."""

    def __init__(self, path: object, message: str, line: Optional[int] = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line
