"""Run a regression: check what it needs, read its inputs, run its commands, evaluate and compare.

The parts live in their own modules: :mod:`.requirements` (what is needed, before anything runs),
:mod:`.inputs` (the topics, qrels and corpus files the commands read), :mod:`.steps` (placeholders, commands,
and which steps may be skipped). Commands are strings with placeholders filled in: ``{work}`` (the work
folder), ``{data_dir}``, ``{corpus}`` (the collection's corpus.jsonl), ``{corpus_dir}`` (a folder holding only
that file, as Lucene's BeirFlatCollection reads whole folders), ``{topics}`` (a ``qid<TAB>text`` file written
here), ``{qrels}``, ``{beir_dir}`` (a BEIR folder of exactly what is evaluated: that corpus, the topics as
``queries.jsonl`` with their text unchanged, the qrels as ``qrels/test.tsv``), ``{run}``, ``{out}`` (a step's
temporary output, renamed to its ``creates`` path on success), ``{threads}``, ``{device}`` and
``{index:NAME}`` (a prebuilt index from the registry, fetched when needed). A leading ``python`` is the running
interpreter.

A step whose ``creates`` output exists is skipped only when that output was made from the same inputs (see
:mod:`.steps`). Definitions of one ``group`` share the work folder; the inputs written here are rewritten for
each definition, so a group may span collections (outputs named per collection in the definitions).

With ``limit=N`` only the first N topics are run, against a corpus cut down to their judged documents plus
the first ``20 * N`` others; the scores are then not comparable with the expected ones. They are compared only
with a definition's ``limited`` values, when its limit and device kind are those of the run (a check a CPU can
afford, measured on a CPU).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UserError
from .definitions import MetricSpec, Regression, device_kind
from .inputs import dry_run_values, load_inputs, write_inputs
from .options import Options
from .requirements import check_requirements, format_checks
from .steps import command_lines, run_steps

__all__ = ["Options", "Result", "MetricResult", "run_regression", "check_requirements", "format_checks",
           "command_lines", "dry_run_values", "format_result", "compare"]
OK, FAIL, NO_EXPECTED, NOT_COMPARED = "OK", "FAIL", "no expected value yet", "not compared (--limit)"


@dataclass
class MetricResult:
    spec: MetricSpec
    measured: float
    status: str

    @property
    def diff(self) -> Optional[float]:
        return None if self.spec.expected is None else self.measured - self.spec.expected


@dataclass
class Result:
    regression: Regression
    metrics: List[MetricResult]
    seconds: float
    hardware: str
    limit: Optional[int] = None
    steps: List[str] = field(default_factory=list)
    device: Optional[str] = None

    @property
    def failed(self) -> bool:
        return any(m.status == FAIL for m in self.metrics)

    def measured_block(self) -> dict:
        return {"metrics": {m.spec.name: round(m.measured, 4) for m in self.metrics},
                "hardware": self.hardware, "seconds": round(self.seconds, 1),
                "date": datetime.date.today().isoformat()}


def compare(regression: Regression, scores: Dict[str, float], limit: Optional[int] = None,
            device: str = "cpu") -> List[MetricResult]:
    """Each metric against the expected value of a full run or, for a ``limit`` run, of the definition's
    ``limited`` check when its limit and device kind match (otherwise not compared)."""
    from ..eval import DISPLAY, parse_measures

    specs, skipped = regression.metrics, None
    if limit:
        check = regression.limited
        if check is not None and check.limit == limit and check.device == device_kind(device):
            specs = [next((c for c in check.metrics if c.name == m.name), MetricSpec(m.name, None, m.tolerance))
                     for m in regression.metrics]
        else:
            skipped = NOT_COMPARED if check is None else \
                f"not compared (expected values are for --limit {check.limit} on {check.device})"
    results = []
    for spec in specs:
        measure = parse_measures([spec.name])[0]
        value = scores[DISPLAY.get(str(measure), str(measure))]
        if skipped:
            status = skipped
        elif spec.expected is None:
            status = NO_EXPECTED
        else:
            status = OK if abs(value - spec.expected) <= spec.tolerance + 1e-12 else FAIL
        results.append(MetricResult(spec, value, status))
    return results


def evaluate_run(regression: Regression, run_path: Path, qrels) -> Dict[str, float]:
    from ..data.trec import load_run
    from ..eval import evaluate

    if not run_path.exists():
        raise UserError(f"regression {regression.name}: the commands did not write the run file {run_path}")
    return evaluate(load_run(run_path), qrels, [m.name for m in regression.metrics])


def hardware() -> str:
    """CPU model, core count and GPU names (from nvidia-smi, when there is one)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu} ({os.cpu_count()} cores)"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        gpus = [g.strip() for g in out.stdout.splitlines() if g.strip()]
        if out.returncode == 0 and gpus:
            text += f", {len(gpus)}x {gpus[0]}"
    return text


def run_regression(regression: Regression, options: Options, log=print) -> Result:
    """Check requirements, read the inputs, run the commands, evaluate the run and compare with the expected
    scores. Nothing is written before the requirements and the inputs are checked."""
    checks = check_requirements(regression, options)
    missing = [c for c in checks if c.status == "missing"]
    if missing:
        log(f"regression {regression.name} needs:\n{format_checks(checks)}")
        more = f" (and {len(missing) - 1} more, listed above)" if len(missing) > 1 else ""
        raise UserError(f"regression {regression.name}: {missing[0].requirement} is missing: "
                        f"{missing[0].detail}{more}")
    topics, qrels, qrels_path = load_inputs(regression, options)
    work = options.work_dir(regression)
    from ..data.atomic import check_writable_folder

    check_writable_folder(work)
    start = time.time()
    values = write_inputs(regression, options, work, topics, qrels, qrels_path)
    steps = run_steps(regression, values, log)
    scores = evaluate_run(regression, Path(values["run"]), qrels)
    return Result(regression, compare(regression, scores, options.limit, values["device"]), time.time() - start,
                  hardware(), options.limit, steps, values["device"])


def format_result(result: Result) -> str:
    rows = [("metric", "expected", "tolerance", "measured", "diff", "status")]
    for m in result.metrics:
        expected = "-" if m.spec.expected is None else f"{m.spec.expected:.4f}"
        diff = "-" if m.diff is None else f"{m.diff:+.4f}"
        rows.append((m.spec.name, expected, f"{m.spec.tolerance:.4f}", f"{m.measured:.4f}", diff, m.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"regression {result.regression.name} ({result.seconds:.0f} s on {result.hardware}"
             + (f", first {result.limit} topics on {result.device}" if result.limit else "") + ")"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
