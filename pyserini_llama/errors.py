"""User-facing errors and the one wrapper every CLI goes through.

Library code raises :class:`UserError` (or a subclass) for anything the user can fix: a malformed line,
a missing file, a bad argument. CLIs call :func:`run_cli`, which turns such errors into one line on stderr
and a non-zero exit, and leaves genuine bugs to show their traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, Optional, Sequence

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


def fail(message: str) -> NoReturn:
    raise UserError(message)


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Run a CLI ``main(argv)`` and exit with its status, printing user errors as a single line."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "pyserini_llama"
    try:
        status = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept, rerun the same command to resume",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(1)
    sys.exit(status or 0)
