"""Run the reliability suites and write their figures into docs/reliability.md.

Usage::

    PYTHONPATH=. python scripts/reliability_report.py            # runs the 4 test files, rewrites the figures
    PYTHONPATH=. python scripts/reliability_report.py --check    # runs them, prints the section, writes nothing

The suites (tests/test_bad_input.py, test_interrupt.py, test_untrusted.py, test_fuzz.py) write a JSON summary
each into ``$PYSERINI_LLAMA_RELIABILITY_REPORT``; this script points that at a temporary folder, runs pytest
with a JUnit XML report, and renders the figures between the ``reliability:figures`` markers of the doc.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
SUITES = ["tests/test_bad_input.py", "tests/test_interrupt.py", "tests/test_untrusted.py", "tests/test_fuzz.py"]
BEGIN, END = "<!-- reliability:figures:begin -->", "<!-- reliability:figures:end -->"


def run_suites(folder: Path) -> dict:
    """Run pytest on the suites; return per-file test counts (tests, failures, errors, skipped, xfail, seconds)."""
    junit = folder / "junit.xml"
    env = dict(os.environ, PYSERINI_LLAMA_RELIABILITY_REPORT=str(folder),
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                           *SUITES], cwd=REPO, env=env)
    counts: dict = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[-1]
        row = counts.setdefault(name, dict(tests=0, passed=0, failed=0, skipped=0, xfailed=0, seconds=0.0))
        row["tests"] += 1
        row["seconds"] += float(case.get("time", 0))
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        elif skipped is not None:
            row["xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"] += 1
        else:
            row["passed"] += 1
    return dict(exit_status=proc.returncode, seconds=round(time.perf_counter() - start, 1), files=counts)


def render(run: dict, summaries: dict) -> str:
    bad, intr = summaries.get("bad_input", {}), summaries.get("interrupt", {})
    unt, fuzz = summaries.get("untrusted", {}), summaries.get("fuzz", {})
    files = run["files"]
    lines = [BEGIN, "",
             f"Measured by `scripts/reliability_report.py` ({time.strftime('%Y-%m-%d')}, Python "
             f"{platform.python_version()}, {os.cpu_count()} CPU cores): pytest exit status {run['exit_status']}, "
             f"{run['seconds']:.0f} s for the four files.", "",
             "| figure | value |", "| --- | --- |",
             f"| bad-input cases tried | {bad.get('cases', '-')} across {bad.get('clis', '-')} command lines "
             f"({bad.get('subprocess_cases', '-')} as real subprocesses) |",
             f"| bad-input cases handled (one `error:` line, exit 2, no traceback, no finished-looking output) | "
             f"{bad.get('passed', '-')} |",
             f"| bad-input cases still failing (expected, listed below) | "
             f"{len(bad.get('expected_failures', []))} |",
             f"| encoding runs killed (SIGKILL) | {intr.get('encode_kills', '-')} "
             f"({intr.get('encode_kills_mid_run', '-')} mid-encoding, after shards "
             f"{intr.get('encode_shards_at_kill', '-')} of {intr.get('encode_shards', '-')}) |",
             f"| index after resuming identical to an uninterrupted run's | "
             f"{'yes, byte for byte' if intr.get('encode_index_identical') else 'no'} |",
             f"| training runs killed (SIGKILL) | {intr.get('train_kills', '-')} (after checkpoints "
             f"{intr.get('train_killed_after_checkpoint', '-')} of {intr.get('train_steps', '-')} steps) |",
             f"| largest relative loss difference, resumed vs uninterrupted | "
             f"{intr.get('train_max_relative_loss_difference', '-')} |",
             f"| kills survived | {intr.get('encode_kills_mid_run', 0) + intr.get('train_kills_mid_run', 0)} |",
             f"| data lost | {intr.get('encode_data_lost', 0) + intr.get('train_data_lost', 0)} |",
             f"| malicious checkpoints refused or ignored (payload never ran) | {unt.get('payloads_refused', '-')} |",
             f"| fuzzed parser inputs | {fuzz.get('examples', '-')} ({fuzz.get('rejected_with_a_clear_error', '-')} "
             f"rejected with a clear error, {fuzz.get('other_exceptions', '-')} other exceptions) |", ""]
    if bad.get("expected_failures"):
        lines += ["Bad-input cases marked `xfail` (their fix belongs to a module still in progress): "
                  + ", ".join(f"`{c}`" for c in bad["expected_failures"]) + ".", ""]
    lines += ["| test file | tests | passed | xfailed | failed | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    for name, row in sorted(files.items()):
        lines.append(f"| {name} | {row['tests']} | {row['passed']} | {row['xfailed']} | {row['failed']} | "
                     f"{row['seconds']:.0f} |")
    if fuzz.get("per_parser"):
        lines += ["", "Fuzzed examples per parser: " + ", ".join(f"{k} {v}" for k, v in fuzz["per_parser"].items())
                  + "."]
    return "\n".join(lines + ["", END])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print the figures instead of writing the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        folder = Path(tmp)
        run = run_suites(folder)
        summaries = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    section = render(run, summaries)
    if args.check:
        print(section)
        return run["exit_status"]
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: markers {BEGIN} ... {END} not found")
    head, rest = text.split(BEGIN, 1)
    tmp_doc = DOC.with_name(f".{DOC.name}.tmp")
    tmp_doc.write_text(head + section + rest.split(END, 1)[1])
    os.replace(tmp_doc, DOC)
    print(section)
    print(f"wrote {DOC}")
    return run["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
