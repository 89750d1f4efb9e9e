"""The suite's own figures: each test file adds what it measured; the session hook in ``conftest.py`` writes
them to ``$PYSERINI_LLAMA_RELIABILITY_REPORT/reliability.json`` (read by ``scripts/reliability_report.py``)."""
from __future__ import annotations

from typing import Any, Dict

SUMMARY: Dict[str, Dict[str, Any]] = {}
CASES: Dict[str, Dict[str, Any]] = {}  # matrix case id -> {cli, class, outcome, seconds, subprocess}


def record(section: str, **figures: Any) -> None:
    SUMMARY.setdefault(section, {}).update(figures)
