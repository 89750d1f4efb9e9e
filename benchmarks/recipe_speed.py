"""Training speed of the small-scale recipe, run against run: each trainer's real tokens per second from the
``trainer_state.json`` files two runs of ``scripts/reproduce_small.sh gpu`` wrote.

A trainer's ``train_seconds`` is the wall time of its optimizer steps, compilation included (the first steps
compile), summed over resumed sessions; ``tokens`` counts real (non-pad) tokens. Reading the states of whole
runs measures what a user waits for, not a steady-state step (``benchmarks/train.py`` measures that).

Usage::

    python benchmarks/recipe_speed.py --before results/raw/trainer_state \\
        --after results/raw/experiments/scifact-pseudo-title/trainer_state --output benchmarks/results/X.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table, recorded_command, write_report  # noqa: E402


def read_states(folder: Path) -> dict:
    """``{trainer: (steps, tokens, seconds)}`` from a folder of ``<trainer>.json`` trainer states."""
    states = {}
    for path in sorted(folder.glob("*.json")):
        try:
            state = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is no reason to fail
            steps, tokens, seconds = int(state["step"]), int(state["tokens"]), float(state["train_seconds"])
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
            raise SystemExit(f"error: {path}: not a trainer state with step, tokens and train_seconds "
                             f"({type(e).__name__}: {e})") from None
        if seconds <= 0:
            raise SystemExit(f"error: {path}: train_seconds is {seconds}; a finished run has trained for some time")
        states[path.stem] = (steps, tokens, seconds)
    if not states:
        raise SystemExit(f"error: {folder}: no trainer_state files (<trainer>.json)")
    return states


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, type=Path, help="folder of the earlier run's trainer states")
    parser.add_argument("--after", required=True, type=Path, help="folder of the later run's trainer states")
    parser.add_argument("--output", required=True, type=Path, help="JSON report")
    args = parser.parse_args(argv)
    before, after = read_states(args.before), read_states(args.after)
    if not set(before) & set(after):
        raise SystemExit(f"error: {args.before} and {args.after} have no trainer in common")
    rows = []
    for name in sorted(set(before) & set(after)):
        (s0, t0, w0), (s1, t1, w1) = before[name], after[name]
        rows.append({"trainer": name, "steps": [s0, s1], "tokens": [t0, t1], "seconds": [w0, w1],
                     "tokens_per_second": [round(t0 / w0, 1), round(t1 / w1, 1)],
                     "speedup": round((t1 / w1) / (t0 / w0), 3)})
    total = [sum(r["tokens"][i] for r in rows) / sum(r["seconds"][i] for r in rows) for i in (0, 1)]
    report = {"benchmark": "small-scale recipe training speed",
              "command": recorded_command("recipe_speed.py", argv),
              "before": str(args.before), "after": str(args.after), "rows": rows,
              "all_trainers": {"tokens_per_second": [round(t, 1) for t in total],
                               "speedup": round(total[1] / total[0], 3)}}
    write_report(args.output, report)
    print_table(["trainer", "steps", "tokens/s before", "after", "speed-up"],
                [[r["trainer"], f"{r['steps'][0]}/{r['steps'][1]}", f"{r['tokens_per_second'][0]:,.0f}",
                  f"{r['tokens_per_second'][1]:,.0f}", f"{r['speedup']:.2f}x"] for r in rows]
                + [["all trainers", "", f"{total[0]:,.0f}", f"{total[1]:,.0f}", f"{total[1] / total[0]:.2f}x"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
