"""Regressions: reproduce result tables by name (``python -m pyserini_llama.regressions --list``).

Definitions are YAML files in this folder (see :mod:`.definitions` for the fields); :mod:`.runner` runs them.
"""
from .definitions import Regression, load_definitions
from .runner import Options, Result, run_regression

__all__ = ["Options", "Regression", "Result", "load_definitions", "run_regression"]
