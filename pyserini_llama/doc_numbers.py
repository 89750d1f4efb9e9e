"""The measured numbers stated in the Markdown docs, each checked against the committed file it names.

Conventions (README.md, "Docs that are tested"): a measured number in prose (three or more decimals, or a
speed-up such as ``1.5x``) names its source right after it: ``<!-- result: FILE KEY/KEY/... -->`` (FILE a
committed JSON that records the ``command`` that wrote it), ``<!-- cited: where -->`` for a published number; a
table is sourced by a line ``<!-- result-table: FILE KEY/... -->`` above it, each numeric cell being
FILE[KEY...][row label][column].

Example::

    for number in stated_numbers(Path("README.md"), root=Path(".")):
        print(number, check_number(number, Path(".")))
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from .doc_commands import FENCE

NUMBER = re.compile(r"(?<![\w.\-/@$])(\d+(?:\.(\d+))?)(x|×)?(?![\w.]*\d)")
MARKER = re.compile(r"<!--\s*(result|cited)\s*:\s*(.*?)\s*-->")
TABLE_MARKER = re.compile(r"^\s*<!--\s*result-table\s*:\s*(\S+)\s*(.*?)\s*-->\s*$")


@dataclass
class StatedNumber:
    doc: str
    line: int
    text: str  # as written, e.g. "0.3857" or "1.5x"
    source: Optional[Tuple[str, str]] = None  # ("result", "FILE KEY/...") or ("cited", "...")
    table_key: Optional[List[str]] = field(default=None)  # for a table cell: [row label, column]

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def needs_source(self) -> bool:
        digits = self.text.rstrip("x×").partition(".")[2]
        return len(digits) >= 3 or self.text.endswith(("x", "×"))


def _blank(text: str, pattern: str) -> str:
    return re.sub(pattern, lambda m: " " * len(m.group(0)), text)


def _prose(line: str) -> str:
    """The line with inline code, link targets and non-marker comments blanked (positions kept)."""
    line = _blank(line, r"`[^`]*`")
    line = _blank(line, r"\]\([^)]*\)")
    line = _blank(line, r"https?://\S+")
    return re.sub(r"<!--(?!\s*(?:result|cited)\s*:).*?-->", lambda m: " " * len(m.group(0)), line)


def stated_numbers(path: Path, root: Path) -> List[StatedNumber]:
    """Every number of the prose and tables outside code, with the source its marker names (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.resolve().relative_to(root.resolve()).as_posix()
    in_code, table_source, numbers = False, None, []
    header: List[str] = []
    for lineno, raw in enumerate(lines, 1):
        if FENCE.match(raw):
            in_code = not in_code
            continue
        if in_code:
            continue
        m = TABLE_MARKER.match(raw)
        if m:
            table_source, header = (m.group(1), m.group(2)), []
            continue
        if table_source and header and not raw.strip().startswith("|"):
            table_source = None  # the table ended
        if table_source and raw.strip().startswith("|"):
            cells = [c.strip() for c in raw.strip().strip("|").split("|")]
            if not header:
                header = [c.strip("`* ") for c in cells]
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                label = cells[0].strip("`* ")
                for column, cell in zip(header[1:], cells[1:]):
                    for n in NUMBER.finditer(_prose(cell)):
                        numbers.append(StatedNumber(doc, lineno, n.group(0), ("result", " ".join(
                            table_source).strip()), [label, column]))
                        break
            continue
        line = _prose(raw)
        pending: List[StatedNumber] = []
        position = 0
        for marker in MARKER.finditer(line):
            before = [StatedNumber(doc, lineno, n.group(0)) for n in NUMBER.finditer(line[position:marker.start()])]
            if before:
                before[-1].source = (marker.group(1), marker.group(2))
            else:
                before = [StatedNumber(doc, lineno, "", (marker.group(1), marker.group(2)))]
            pending += before
            position = marker.end()
        pending += [StatedNumber(doc, lineno, n.group(0)) for n in NUMBER.finditer(line[position:])]
        numbers += pending
    return numbers


def tracked(root: Path, relative: str) -> Optional[bool]:
    """Whether git tracks the file (None when this is not a git checkout)."""
    try:
        proc = subprocess.run(["git", "ls-files", "--error-unmatch", relative], cwd=root, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 and "not a git repository" in proc.stderr:
        return None
    return proc.returncode == 0


def _commands_in(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "command" and isinstance(value, (str, list)):
                yield value if isinstance(value, str) else " ".join(map(str, value))
            else:
                yield from _commands_in(value)
    elif isinstance(data, list):
        for value in data:
            yield from _commands_in(value)


def lookup(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if isinstance(data, list):
            data = data[int(key)]
        else:
            data = data[key]
    return data


def check_number(number: StatedNumber, root: Path) -> Optional[str]:
    """Why ``number`` is not backed by its source, or None when it is."""
    if number.source is None:
        return (f"{number.where}: {number.text} has no source; put <!-- result: FILE KEY/... --> right after it "
                f"(a committed JSON with the command that wrote it) or <!-- cited: where --> for a published one")
    kind, spec = number.source
    if not number.text:
        return f"{number.where}: <!-- {kind}: {spec} --> follows no number on its line"
    if kind == "cited":
        return None if spec else f"{number.where}: {number.text}: <!-- cited: --> names no source"
    file, _, key_path = spec.partition(" ")
    keys = [k for k in key_path.strip().split("/") if k] + (number.table_key or [])
    path = root / file
    if not path.is_file():
        return f"{number.where}: {number.text}: {file} does not exist"
    if tracked(root, file) is False:
        return f"{number.where}: {number.text}: {file} is not committed"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"{number.where}: {file} is not JSON ({e})"
    commands = list(_commands_in(data))
    if not commands:
        return f"{number.where}: {file} records no \"command\" that produced it"
    try:
        value = lookup(data, keys)
    except (KeyError, IndexError, ValueError, TypeError):
        return f"{number.where}: {number.text}: {file} has no {'/'.join(keys)}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"{number.where}: {number.text}: {file} {'/'.join(keys)} is {value!r}, not a number"
    stated = number.text.rstrip("x×")
    decimals = len(stated.partition(".")[2])
    if f"{value:.{decimals}f}" != stated:
        return (f"{number.where}: states {number.text} but {file} {'/'.join(keys)} is {value} "
                f"({value:.{decimals}f} at that precision)")
    return None
