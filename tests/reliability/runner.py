"""Run a case (in this process or a child) and check the contract every failure must keep.

In process, a command runs as ``python -m`` runs it (``runpy.run_module(..., run_name="__main__")`` with
``sys.argv`` set: its own ``__main__`` block and exit), without an interpreter start per case.
``RELIABILITY_SUBPROCESS=all`` runs every case in a child (``harness.py``); ``RELIABILITY_SOURCE=<checkout>``
puts another version of the code first on the child's path, so the same matrix measures an older commit.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import runpy
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import faults
from classes import Case
from clis import Paths, argv_of, layout

TRACEBACK = "Traceback (most recent call last)"
HARNESS = Path(__file__).resolve().parent / "harness.py"
SOURCE = os.environ.get("RELIABILITY_SOURCE")
ALL_SUBPROCESS = os.environ.get("RELIABILITY_SUBPROCESS", "") == "all" or bool(SOURCE)
ENV = {"PYSERINI_LLAMA_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1"}


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str
    model_loads: int
    paths: Paths
    argv: List[str]
    before: Dict[str, Optional[bytes]]  # the case's folder right before the command started

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def tree(root: Path) -> Dict[str, Optional[bytes]]:
    """Every path under ``root``: files with their bytes, folders and links as None."""
    out: Dict[str, Optional[bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.join(dirpath, name)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[path] = None if os.path.islink(path) else Path(path).read_bytes()
    return out


def _main(module: str):
    mod = importlib.import_module(module)
    return mod.main if hasattr(mod, "main") else importlib.import_module(f"{module}.__main__").main


def run(case: Case, w, tmp: Path, capfd=None) -> Outcome:
    """Lay out the case, run the command, and return what happened."""
    p = layout(case.cli, tmp, w)
    case.prepare(p, tmp, w)
    env = {**ENV, **case.cli.env(p, tmp), **case.env(p, tmp)}
    before = tree(tmp)
    argv = argv_of(case.cli, p, w) + list(case.argv_extra)
    if case.argv_replace:
        argv = case.argv_replace(argv)
    fault_list = case.faults(p, tmp)
    if case.subprocess or ALL_SUBPROCESS:
        return _run_child(case, p, argv, env, fault_list, tmp, before)
    counter: dict = {}
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is already imported (by design)
        for key, value in env.items():
            mp.setenv(key, value)
        mp.chdir(tmp)
        mp.setattr(sys, "argv", [case.cli.module, *argv])
        _main(case.cli.module)  # imported before the faults, as an interpreter start would have
        faults.apply(mp.setattr, fault_list, counter)
        try:
            runpy.run_module(case.cli.module, run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capfd.readouterr() if capfd is not None else ("", "")
    return Outcome(status, out, err, counter.get("model_loads", 0), p, argv, before)


def _run_child(case: Case, p: Paths, argv: List[str], env: dict, fault_list: list, tmp: Path,
               before: dict) -> Outcome:
    from conftest import cli_env

    spec_path, counts = tmp / "case.json", tmp / "counts.json"
    count = case.early and case.cli.loads_model
    spec_path.write_text(json.dumps({"module": case.cli.module, "argv": argv, "faults": fault_list,
                                     "count_loads": count, "counts": str(counts)}))
    child_env = cli_env(**env)
    if SOURCE:
        child_env["PYTHONPATH"] = os.pathsep.join([SOURCE, child_env["PYTHONPATH"]])
    # the harness only when something must be patched in the child; else exactly ``python -m``
    command = [str(HARNESS), str(spec_path)] if fault_list or count else ["-m", case.cli.module, *argv]
    proc = subprocess.run([sys.executable, *command], cwd=tmp, env=child_env, capture_output=True, text=True,
                          timeout=600)
    loads = json.loads(counts.read_text()).get("model_loads", 0) if counts.exists() else 0
    spec_path.unlink()
    if counts.exists():
        counts.unlink()
    return Outcome(proc.returncode, proc.stdout, proc.stderr, loads, p, argv, before)


def fill(template: str, case: Case, p: Paths, tmp: Path) -> str:
    target = case.target(p)
    values = {"path": re.escape(str(target)) if target is not None else "",
              "tmp": re.escape(str(tmp)),
              "folder": re.escape(str(p[case.slot])) if case.slot else ""}
    return re.sub(r"\{(path|tmp|folder)\}", lambda m: values[m.group(1)], template)


def check(case: Case, outcome: Outcome, tmp: Path) -> None:
    """The contract: exit status, one ``error:`` line naming what is wrong, no traceback, nothing half-written,
    nothing that existed changed, and (for input errors) no model loaded before the error."""
    before, after = outcome.before, tree(tmp)
    err = outcome.stderr
    context = f"\n$ {case.cli.module} {' '.join(outcome.argv)}\nexit {outcome.status}; stderr:\n{err[-2500:]}"
    assert TRACEBACK not in err, f"traceback{context}"
    assert outcome.status == case.status, f"expected exit {case.status}{context}"
    if case.status != 0:
        last = outcome.last_line
        assert last.startswith("error: "), f"last stderr line is not 'error: ...'{context}"
        assert re.search(fill(case.message, case, outcome.paths, tmp), last), \
            f"{last!r} does not match {fill(case.message, case, outcome.paths, tmp)!r}{context}"
        assert sum(1 for line in err.splitlines() if line.startswith("error: ")) == 1, f"several errors{context}"
    changed = sorted(k for k, v in before.items() if k in after and after[k] != v)
    vanished = sorted(k for k in before if k not in after)
    assert not changed, f"changed by the command: {changed[:5]}{context}"
    assert not vanished, f"deleted by the command: {vanished[:5]}{context}"
    if case.status != 0:
        allowed = _allowed_new(case, outcome.paths, tmp)
        new = sorted(k for k in after if k not in before and not any(re.fullmatch(a, k) for a in allowed))
        assert not new, f"left behind by the failed command: {new[:5]}{context}"
    if case.klass == "concurrent-writer":  # the other process's output is left as it made it
        from faults import COMPETITOR

        target = Path(outcome.paths[case.slot])
        made = target / COMPETITOR if target.is_dir() else target
        assert made.is_file() and made.read_bytes() == faults.COMPETITOR_BYTES, \
            f"the other output was replaced{context}"
    if case.early and case.status != 0 and case.cli.loads_model:
        assert outcome.model_loads == 0, f"failed only after loading a model{context}"


def _allowed_new(case: Case, p: Paths, tmp: Path) -> List[str]:
    allowed = []
    out = re.escape(str(tmp / "out"))
    for slot in case.cli.outputs:
        for pattern in slot.resumable:  # state a rerun resumes from (hidden, never a finished-looking output)
            allowed.append(out + "/" + pattern + "(/.*)?")
        if slot.exists_ok:  # a work folder or cache: what it holds is written whole, but never temporary files
            allowed.append(re.escape(str(p[slot.name])) + r"(/(?!.*\.(tmp|part)$).*)?")
    if case.klass == "concurrent-writer":  # the other process's output, and this one's outputs finished before
        for slot in case.cli.outputs:          # the conflict showed (written whole, so they are complete)
            target = re.escape(str(p[slot.name]))
            allowed += [target, target + "/.*"]
    for slot in case.cli.outputs:  # folders made to hold an output (out/encoded for out/encoded/embedding.pkl)
        for parent in p[slot.name].parents:
            if parent == tmp / "out" or tmp / "out" not in parent.parents:
                break
            allowed.append(re.escape(str(parent)))
    return allowed
