"""Run one matrix case in a child process, as ``python -m MODULE ARGV...`` would, with its faults applied.

Usage (by :mod:`runner`)::

    python tests/reliability/harness.py CASE.json

``CASE.json`` holds ``module``, ``argv``, ``faults`` (see :func:`faults.apply`), ``count_loads`` and
``counts`` (a file to write the number of model loads into). Only the operating-system layer is patched, so
this runs against any version of the project (``PYTHONPATH`` decides which).
"""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faults

    counter: dict = {}

    def patch(obj, name, value):
        setattr(obj, name, value)

    if spec.get("count_loads"):
        faults.count_model_loads(patch, counter)
    sys.path.pop(0)
    sys.argv = [spec["module"], *spec["argv"]]
    try:
        if spec["faults"]:
            fs = faults.Filesystem(patch)
            for name, *args in spec["faults"]:
                if name == "concurrent_writer":
                    root, target, kind = args
                    faults.concurrent_writer(fs, root, target, lambda t, kind=kind: faults.make_competitor(t, kind))
                else:
                    faults.FAULTS[name](fs, *args)
            fs.install()
        runpy.run_module(spec["module"], run_name="__main__", alter_sys=True)
    finally:
        with open(spec["counts"], "w") as f:  # noqa: PTH123 - the real open may be patched: the fault roots
            json.dump(counter, f)             # never include the counts file


if __name__ == "__main__":
    main()
