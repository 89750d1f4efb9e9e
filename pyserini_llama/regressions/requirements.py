"""What a regression needs (checkpoints, collections, prebuilt indexes, modules, files), whether it is here,
and how to get it when it is not; checked before anything runs or is written."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from ..errors import UserError
from .definitions import Regression, Requirement
from .options import Options
from .steps import PLACEHOLDER


@dataclass
class Check:
    requirement: str
    status: str  # "ok", "fetch" (obtained at run time) or "missing"
    detail: str


def find_data_file(relative: str, options: Options) -> Optional[Path]:
    """An absolute path as it is; a relative one under the first data dir that has it."""
    if Path(relative).is_absolute():
        return Path(relative) if Path(relative).exists() else None
    for base in options.data_dirs():
        if (base / relative).exists():
            return base / relative
    return None


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Look for weights without downloading them: checks must be quick and side-effect free."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _check_checkpoint(name: str) -> Tuple[str, str]:
    from ..models.hub import resolve_model_path
    from ..models.load import adapter_base_model, is_adapter, resolve_checkpoint

    with _hub_offline():
        try:
            folder, config = resolve_checkpoint(name)
            if is_adapter(folder):
                resolve_model_path(adapter_base_model(folder, config), offline=True)
        except UserError as e:
            return "missing", str(e)
    return "ok", str(folder)


def _check_collection(name: str, options: Options) -> Tuple[str, str]:
    from ..data.collections import beir_source, beir_url, resolve_collection

    try:
        return "ok", str(resolve_collection(name, options.data_dir, download=False).root)
    except UserError as e:
        source = beir_source(name)
        if source and options.download:
            return "fetch", f"downloaded at run time from {beir_url(source[0])} (md5-verified)"
        return "missing", str(e)


def _check_index(name: str) -> Tuple[str, str]:
    from ..prebuilt_indexes.registry import get_descriptor, index_path, is_cached

    descriptor = get_descriptor(name)
    if is_cached(name):
        return "ok", str(index_path(name))
    if descriptor.urls:
        return "fetch", f"downloaded at run time from {descriptor.urls[0]} (md5-verified)"
    return "missing", f"build it first: python -m pyserini_llama.prebuilt_indexes --build {name}"


def _check_module(name: str) -> Tuple[str, str]:
    import importlib.util

    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        found = False
    return ("ok", name) if found else ("missing", f"module {name} is not available in this installation")


def _data_source_requirements(regression: Regression) -> List[Requirement]:
    implied = []
    if regression.collection:
        implied.append(Requirement("collection", regression.collection))
    for source in (regression.topics, regression.qrels):
        if isinstance(source, str):
            implied.append(Requirement("file", source))
        elif source["collection"] != regression.collection:
            implied.append(Requirement("collection", source["collection"]))
    for step in regression.commands:
        implied.extend(Requirement("index", m.group(2)) for m in PLACEHOLDER.finditer(step.cmd)
                       if m.group(1) == "index")
    return implied


def check_requirements(regression: Regression, options: Options) -> List[Check]:
    """What the regression needs, whether it is here, and how to get it when it is not."""
    explicit = {(r.kind, r.value) for r in regression.requires}
    implied = [r for r in _data_source_requirements(regression) if (r.kind, r.value) not in explicit]
    checks = []
    for req in implied + regression.requires:
        if req.kind == "checkpoint":
            status, detail = _check_checkpoint(req.value)
        elif req.kind == "collection":
            status, detail = _check_collection(req.value, options)
        elif req.kind == "index":
            status, detail = _check_index(req.value)
        elif req.kind == "module":
            status, detail = _check_module(req.value)
        else:
            found = find_data_file(req.value, options)
            where = ", ".join(map(str, options.data_dirs())) or "no data dir found"
            status, detail = ("ok", str(found)) if found else ("missing", "no such file") \
                if Path(req.value).is_absolute() else ("missing", f"not found under the data dir ({where}); pass "
                                                                  f"--data-dir DIR holding {req.value}")
        if status == "missing" and req.how:
            detail = f"{detail}. {req.how}"
        elif status == "missing" and req.kind == "checkpoint":
            detail = f"{detail} (castorini's adapters also need meta-llama/Llama-2-7b-hf: accept its licence " \
                     f"on the hub and run huggingface-cli login first)"
        checks.append(Check(f"{req.kind} {req.value}", status, detail))
    return checks


def format_checks(checks: List[Check]) -> str:
    marks = {"ok": "ok     ", "fetch": "fetch  ", "missing": "MISSING"}
    return "\n".join(f"  [{marks[c.status]}] {c.requirement}: {c.detail}" for c in checks)
