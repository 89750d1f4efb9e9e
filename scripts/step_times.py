"""Step times of a ``scripts/reproduce_small.sh`` run: its ``timings.tsv`` (part, step, seconds per line) as JSON,
with the GPU steps summed (on one GPU with ``PARALLEL=0`` the steps run one after another, so the sum is the wall
time; with ``PARALLEL=1`` phases overlap and the wall time is less).

``--fill`` completes a run that did not reach its last steps from an earlier run's ``reproduce_timings.json``:
each borrowed step is marked with the file it came from, and the JSON keeps the measured sum apart.

Usage::

    python scripts/step_times.py --timings runs/reproduce/timings.tsv --output runs/reproduce/results/reproduce_timings.json
    python scripts/step_times.py --timings results/raw/experiments/eos/im_start/timings.tsv \\
        --fill results/raw/reproduce_timings.json --output results/raw/experiments/eos/im_start/one_gpu_time.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def read_timings(path: Path) -> List[dict]:
    """The steps of a ``timings.tsv``, in the order they finished (a step run twice keeps its last time)."""
    steps = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is no reason to fail
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"error: {path}: cannot read the step times ({getattr(e, 'strerror', None) or e})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2].isdigit():
            raise SystemExit(f"error: {path}:{number}: expected 'part<TAB>step<TAB>seconds', got {line!r}")
        part, step, seconds = fields
        steps.pop((part, step), None)
        steps[(part, step)] = {"part": part, "step": step, "seconds": int(seconds)}
    return list(steps.values())


def fill_from(steps: List[dict], earlier: Path) -> List[dict]:
    """Steps of ``earlier`` (a reproduce_timings.json) missing from ``steps``, marked with where they came from."""
    try:
        rows = json.loads(earlier.read_text(encoding="utf-8"))["steps"]
        have = {(s["part"], s["step"]) for s in steps}
        return [{"part": r["part"], "step": r["step"], "seconds": int(r["seconds"]), "from": str(earlier)}
                for r in rows if (r["part"], r["step"]) not in have]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
        raise SystemExit(f"error: {earlier}: not a reproduce_timings.json with steps "
                         f"({type(e).__name__}: {e})") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timings", required=True, type=Path, help="the run's timings.tsv")
    parser.add_argument("--fill", type=Path, help="an earlier run's reproduce_timings.json for the steps not reached")
    parser.add_argument("--output", required=True, type=Path, help="JSON to write")
    args = parser.parse_args(argv)
    measured = read_timings(args.timings)
    borrowed = fill_from(measured, args.fill) if args.fill else []
    steps = measured + borrowed

    def gpu_sum(rows: List[dict]) -> int:
        return sum(r["seconds"] for r in rows if r["part"] == "gpu")

    report = {"steps": steps, "gpu_seconds_sum_of_steps": gpu_sum(steps)}
    if args.fill:
        report.update(measured_gpu_seconds=gpu_sum(measured), borrowed_gpu_seconds=gpu_sum(borrowed),
                      command=" ".join(["python scripts/step_times.py", *(argv if argv is not None else sys.argv[1:])]))
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, args.output)  # whole or not at all
    except OSError as e:
        raise SystemExit(f"error: {args.output}: cannot write the step times ({e.strerror or e})") from None
    for r in steps:
        print(f"{r['part']:<4} {r['step']:<40} {r['seconds']:>6} s{'  (from ' + r['from'] + ')' if 'from' in r else ''}",
              file=sys.stderr)
    print(f"GPU steps: {report['gpu_seconds_sum_of_steps']} s in all (parallel phases overlap, so the wall time is "
          f"less){f'; {gpu_sum(borrowed)} s of it borrowed' if borrowed else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
