"""The failure matrix: every command line x every failure class that applies to it (see :mod:`classes`).

Each case lays out clean inputs, breaks one thing, runs the command, and checks the contract: the exit status
(2 user error, 1 operating-system error, 130 interrupt, 0 where the ecosystem reads the input), one last line
``error: ...`` naming the file and line or the argument, no traceback, nothing new left behind by a failure,
every file that existed before unchanged, and no model loaded before an input error was found. An input the
ecosystem reads (a BOM, CRLF, extra TSV columns) must give exactly the clean input's result.

``RELIABILITY_SAMPLE=N`` keeps N cases of each (command, class) pair, evenly spread over its list; with
``RELIABILITY_SOURCE`` (see :mod:`runner`) that surveys an older version of the code
(``scripts/reliability_report.py --against``).
"""
from __future__ import annotations

import os

import pytest

from classes import all_cases
from world import world_state
from runner import check, run

CASES = all_cases()
if os.environ.get("RELIABILITY_SAMPLE"):  # N cases of each (command, class), evenly spread: a quick survey
    _per, _groups = int(os.environ["RELIABILITY_SAMPLE"]), {}
    for _c in CASES:
        _groups.setdefault((_c.cli.name, _c.klass), []).append(_c)
    _kept = {id(g[round(i * (len(g) - 1) / max(_per - 1, 1))]) for g in _groups.values() for i in range(_per)}
    CASES = [c for c in CASES if id(c) in _kept]
_REFERENCES: dict = {}


def _param(case):
    marks = [pytest.mark.integration] if case.needs_java or (case.cli.java and case.status == 0) else []
    return pytest.param(case, id=case.id, marks=marks)


def reference(case, world, tmp_path_factory, capfd):
    """The clean run's result for ``case``'s command (once per session)."""
    from classes import Case

    name = case.cli.name
    if name not in _REFERENCES:
        clean = Case(f"{name}:clean", case.cli, "clean", status=0, early=False)
        tmp = tmp_path_factory.mktemp(f"clean-{name}")
        outcome = run(clean, world, tmp, capfd)
        assert outcome.status == 0, f"the clean run of {name} failed:\n{outcome.stderr[-3000:]}"
        _REFERENCES[name] = case.cli.observe(outcome.paths, outcome.stdout)
    return _REFERENCES[name]


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(case, world, tmp_path, tmp_path_factory, capfd):
    expected = reference(case, world, tmp_path_factory, capfd) if case.same else None
    world_before = world_state(world)
    capfd.readouterr()
    outcome = run(case, world, tmp_path, capfd)
    check(case, outcome, tmp_path)
    if case.same:
        assert case.cli.observe(outcome.paths, outcome.stdout) == expected, \
            f"{case.id}: the result differs from the clean input's"
    assert world_state(world) == world_before, "a command changed the shared models or index"
