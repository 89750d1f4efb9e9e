"""Definition files in YAML (prebuilt indexes, regressions): one mapping, ``entries: [...]``, or a ``template``
expanded over ``each`` item's ``vars`` (``${dataset}``), as in Pyserini's 2CR files.

Every file is read strictly: invalid UTF-8 (a byte-order mark is allowed) or invalid YAML is a one-line
DataError naming the file and line, as is a file of the wrong shape.

Example::

    for entry, path in load_yaml_entries(["pyserini_llama/regressions"]):
        ...                                   # entry: a dict; path: the file that defined it
"""
from __future__ import annotations

import copy
import os
import string
from pathlib import Path
from typing import Any, Dict, Iterable, List, Union

from ..errors import DataError, UserError

PathLike = Union[str, os.PathLike]


def expand_entries(data: Any, path: Path) -> List[dict]:
    """The entries of a YAML file: one mapping, a list under ``entries``, or a ``template`` + ``each`` pair.

    ``template`` strings may use ``${var}``; each item of ``each`` gives ``vars`` to substitute and fields that
    override the template's (mappings are merged). Other braces (``{work}``) are left for later stages.
    """
    if isinstance(data, dict) and "template" in data:
        template, items = data["template"], data.get("each") or []
        if not isinstance(template, dict) or not isinstance(items, list):
            raise DataError(path, "'template' must be a mapping and 'each' a list")
        entries = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("vars") or {}, dict):
                raise DataError(path, "each item of 'each' must be a mapping (with 'vars' a mapping)")
            item = dict(item)
            variables = {k: str(v) for k, v in (item.pop("vars", None) or {}).items()}
            entries.append(_merge(_substitute(copy.deepcopy(template), variables), item))
        return entries
    if isinstance(data, dict) and "entries" in data:
        if not isinstance(data["entries"], list):
            raise DataError(path, "'entries' must be a list")
        return list(data["entries"])
    if isinstance(data, dict):
        return [data]
    raise DataError(path, "expected a mapping (one entry), 'entries: [...]' or 'template' + 'each'")


def _substitute(value: Any, variables: Dict[str, str]) -> Any:
    if isinstance(value, str):
        return string.Template(value).safe_substitute(variables)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_yaml_entries(dirs: Iterable[PathLike]) -> List[tuple]:
    """``(entry, file)`` pairs from every ``*.yaml`` file in ``dirs``, in name order."""
    import yaml

    pairs = []
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder of definitions")
        for path in sorted(folder.glob("*.yaml")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8-sig")  # a byte-order mark is allowed, as YAML readers allow it
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 ({e.reason})", raw[:e.start].count(b"\n") + 1) from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line, whatever it said
                raise DataError(path, f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
            pairs.extend((entry, path) for entry in expand_entries(data, path))
    return pairs
