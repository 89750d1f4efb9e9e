"""Check a command line against its program's own argument parser, without running the program.

``python -m X args`` and ``python script.py args`` are run as ``__main__`` up to the end of their argument
parsing: every ``argparse`` parse is recorded, and the first line the program executes after its outermost parse
has returned (outside functions whose name says they parse) raises :class:`Parsed`, so nothing after parsing
runs. This works for programs whose parsing is spread over several ``parse_args`` calls too (Pyserini's
``encode`` and ``search.hybrid`` parse one section at a time in a helper named ``parse_args``). An argparse error
is reported with the message the user would see.

Used by the docs-test for commands that need a GPU or weights this machine lacks::

    echo '[{"module": "pyserini_llama.search", "args": ["--index", "x", "--topics", "t.tsv"]}]' |
        python -m pyserini_llama.dry_parse
    # [{"ok": false, "error": "... the following arguments are required: --output ...", "namespace": {}}]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import runpy
import sys
from typing import Any, Dict, List, Optional


class Parsed(BaseException):
    """Raised at the first line run after argument parsing (a BaseException: ``except Exception`` passes it)."""


def _flatten(namespace: Any, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in vars(namespace).items():
        if isinstance(value, argparse.Namespace):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[f"{prefix}{key}"] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out[f"{prefix}{key}"] = list(value)
        else:
            out[f"{prefix}{key}"] = repr(value)
    return out


def _main_file(module: Optional[str], script: Optional[str]) -> str:
    if script is not None:
        return script
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {module!r}")
    if spec.submodule_search_locations is not None:  # a package: python -m runs its __main__
        spec = importlib.util.find_spec(f"{module}.__main__")
        if spec is None:
            raise ModuleNotFoundError(f"{module!r} is a package without __main__")
    return spec.origin


def uses_argparse(path: str) -> bool:
    """Whether a program's main file builds an argparse parser (ours do through ``cli.parser``)."""
    try:
        source = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError):
        return False
    return any(word in source for word in ("argparse", "ArgumentParser", "cli.parser(", "build_parser(", "parse_args("))


def dry_parse(args: List[str], module: Optional[str] = None, script: Optional[str] = None) -> Dict[str, Any]:
    """Parse ``args`` as ``python -m module args`` (or ``python script args``) would; nothing else runs.

    Returns ``{"ok": True, "namespace": {flattened arguments}}`` or ``{"ok": False, "error": message}``.
    """
    state = {"depth": 0, "parsed": []}
    here = sys._getframe()
    original = argparse.ArgumentParser.parse_known_args

    def still_parsing(frame) -> bool:
        """Inside argparse (its errors, help, gettext) or a function of the program that parses."""
        while frame is not None and frame is not here:
            if frame.f_code.co_filename == argparse.__file__ or "pars" in frame.f_code.co_name.lower():
                return True
            frame = frame.f_back
        return False

    def tracer(frame, event, arg):
        if event == "exception" and issubclass(arg[0], (SystemExit, KeyboardInterrupt)):
            sys.settrace(None)  # argparse's error exit: let it through (``with`` exits run lines on the way)
            return None
        if event == "line" and state["parsed"] and state["depth"] == 0 and not still_parsing(frame) \
                and "runpy" not in frame.f_code.co_filename:
            sys.settrace(None)
            raise Parsed()
        return tracer

    def parse_known_args(self, args=None, namespace=None):
        state["depth"] += 1
        try:
            result = original(self, args, namespace)
        finally:
            state["depth"] -= 1
        if state["depth"] == 0:
            state["parsed"].append(result[0])
            # trace the program's frames already on the stack too (settrace only reaches frames entered later)
            frame = sys._getframe(1)
            while frame is not None and frame is not here:
                frame.f_trace, frame.f_trace_lines = tracer, True
                frame = frame.f_back
            sys.settrace(tracer)
        return result

    try:
        main_file = _main_file(module, script)
    except (ImportError, OSError, ValueError) as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    if not uses_argparse(main_file):  # it would simply run: only its existence is checked
        return {"ok": True, "namespace": {}, "note": "no argparse parser: arguments not checked"}
    saved_argv = sys.argv[:]
    stderr, stdout = io.StringIO(), io.StringIO()
    try:
        sys.argv = [main_file] + list(args)
        argparse.ArgumentParser.parse_known_args = parse_known_args
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            if script is not None:
                runpy.run_path(script, run_name="__main__")
            else:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        outcome = {"ok": False, "error": "the program ended without parsing arguments with argparse"}
    except Parsed:
        outcome = {"ok": True}
    except SystemExit as e:
        text = (stderr.getvalue() + stdout.getvalue()).strip()
        ok = not e.code and bool(state["parsed"])
        outcome = {"ok": ok} if ok else {"ok": False, "error": text.splitlines()[-1] if text else f"exit {e.code}"}
    except BaseException as e:  # noqa: BLE001 - any failure before parsing is the answer
        outcome = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        sys.settrace(None)
        argparse.ArgumentParser.parse_known_args = original
        sys.argv = saved_argv
    if outcome["ok"]:
        merged: Dict[str, Any] = {}
        for namespace in state["parsed"]:
            merged.update(_flatten(namespace))
        outcome["namespace"] = merged
    return outcome


def main() -> int:
    """Read a JSON list of ``{"module"|"script", "args"}`` on stdin; print a JSON list of outcomes."""
    requests = json.load(sys.stdin)
    results = [dry_parse(r["args"], module=r.get("module"), script=r.get("script")) for r in requests]
    sys.stdout.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
