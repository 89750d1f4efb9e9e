"""Fixtures of the reliability suite, and the session hook that writes its figures.

With ``PYSERINI_LLAMA_RELIABILITY_REPORT=<folder>`` set, the session writes ``<folder>/reliability.json``: every
matrix case with its command, class and outcome, and the figures the other files recorded (fuzzed examples,
kills survived, payloads refused). ``scripts/reliability_report.py`` renders ``docs/reliability.md`` from it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import report  # noqa: E402

REPORT_ENV = "PYSERINI_LLAMA_RELIABILITY_REPORT"


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from world import build_world

    w = build_world(tmp_path_factory.mktemp("world"))
    yield w
    w.server.close()


def pytest_runtest_makereport(item, call):
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if case is None or call.when != "call" and not (call.when == "setup" and call.excinfo is not None):
        return
    from runner import ALL_SUBPROCESS

    outcome = "passed" if call.excinfo is None else (
        "skipped" if call.excinfo.errisinstance(pytest.skip.Exception) else "failed")
    report.CASES[case.id] = dict(cli=case.cli.name, module=case.cli.module, klass=case.klass, outcome=outcome,
                                 suite=item.module.__name__.rsplit(".", 1)[-1],
                                 seconds=round(call.duration, 2), subprocess=bool(case.subprocess or ALL_SUBPROCESS),
                                 expected_exit=case.status,
                                 message=(str(call.excinfo.value).splitlines()[0][:300] if call.excinfo else ""))


def pytest_sessionfinish(session, exitstatus):
    folder = os.environ.get(REPORT_ENV)
    if not folder or not (report.CASES or report.SUMMARY):
        return
    path = Path(folder) / "reliability.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    data = {"written": time.strftime("%Y-%m-%d %H:%M:%S"), "source": os.environ.get("RELIABILITY_SOURCE"),
            "cases": {**old.get("cases", {}), **report.CASES},
            "figures": {**old.get("figures", {}), **report.SUMMARY}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def pytest_terminal_summary(terminalreporter):
    matrix = [row for row in report.CASES.values() if row.get("suite") == "test_matrix"]
    if not matrix:
        return
    by_class: dict = {}
    for row in matrix:
        counts = by_class.setdefault(row["klass"], {"passed": 0, "failed": 0, "skipped": 0})
        counts[row["outcome"]] += 1
    clis = {row["cli"] for row in matrix}
    line = ", ".join(f"{k} {v['passed']}/{sum(v.values())}" for k, v in sorted(by_class.items()))
    terminalreporter.write_line(f"reliability matrix: {len(matrix)} cases over {len(clis)} commands and "
                                f"{len(by_class)} classes (passed/run): {line}")
