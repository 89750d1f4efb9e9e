"""Run the README's tour as written, on the real collection, and record what it measured.

    python scripts/readme_tour.py --output results/readme-tour.json

Takes the commands of the README section "A tour on Cranfield" that need neither a GPU nor 7B weights (the ones
the docs-test runs on toy data), runs each with bash from a work folder laid out like a checkout (its
``../shared/ir`` is the data dir), times it, and evaluates every TREC run they wrote against the collection's
qrels. The JSON records this script's command, the README commands it ran, the machine, each command's time and
each run's metrics, and the weights of the packaged checkpoints it used; the README's table is checked against it
by ``tests/test_docs.py``, which also fails when the README's commands or those checkpoints are no longer the
ones recorded here. The tour builds indexes from scratch: an existing
``--work-dir`` is refused.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyserini_llama.doc_commands import path_arguments, read_commands, simple_commands  # noqa: E402

SECTION = "## A tour on Cranfield"
METRICS = ("nDCG@10", "R@100", "MRR@10")


def tour_commands(readme: Path, section: str = SECTION):
    """The untagged commands between ``section``'s heading and the next heading of its level."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines, 1) if line.strip() == section)
    level = section.split()[0] + " "
    end = next((i for i, line in enumerate(lines, 1) if i > start and line.startswith(level)), len(lines) + 1)
    return [c for c in read_commands(readme, REPO)
            if start < c.line < end and not c.tags and not c.is_assignment]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON to write (e.g. results/readme-tour.json)")
    parser.add_argument("--work-dir", default="runs/readme-tour", help="where the tour runs (must not exist)")
    parser.add_argument("--data-dir", help="the data dir holding cranfield/ (default: ../shared/ir)")
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()

    from pyserini_llama.data.collections import default_data_dirs, resolve_collection
    from pyserini_llama.data.trec import load_run
    from pyserini_llama.eval import evaluate

    data = Path(args.data_dir or default_data_dirs()[0]).resolve()
    work = Path(args.work_dir).resolve()
    if work.exists():
        sys.exit(f"error: {work} exists: the tour starts from nothing; pick another --work-dir")
    checkout = work / "checkout"
    checkout.mkdir(parents=True)
    (work / "shared").mkdir()
    (work / "shared" / "ir").symlink_to(data, target_is_directory=True)
    shims = work / "bin"  # "python" in the README is this interpreter (its venv, its packages)
    shims.mkdir()
    for name in ("python", "python3"):
        (shims / name).write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        (shims / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=os.pathsep.join([str(REPO)] + [os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep), PYSERINI_LLAMA_DATA=str(data))
    commands = tour_commands(REPO / "README.md")
    seconds, runs = {}, {}
    for command in commands:
        print(f"$ {command.text}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(["bash", "-c", f"umask 022\n{command.text}"], cwd=checkout, env=env)
        seconds[command.text] = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            sys.exit(f"error: README.md:{command.line} exited {proc.returncode}")
        for path in path_arguments(simple_commands(command)):
            if path.endswith(".trec") and (checkout / path).is_file():
                runs.setdefault(path, None)
    qrels = resolve_collection(str(data / args.collection)).qrels(args.split)
    for path in runs:
        run = load_run(checkout / path)
        scores = evaluate(run, qrels, METRICS)
        runs[path] = {m: round(float(scores[m]), 4) for m in METRICS} | {"queries": len(run)}
    result = {
        "command": " ".join(["python", "scripts/readme_tour.py"] + [shlex.quote(a) for a in sys.argv[1:]]),
        "readme_commands": [c.text for c in commands],
        "collection": args.collection, "split": args.split,
        "hardware": cpu_name(), "date": time.strftime("%Y-%m-%d"),
        "seconds": seconds, "minutes_total": round(sum(seconds.values()) / 60),
        "checkpoints": checkpoint_weights(commands),
        "runs": runs,
    }
    from pyserini_llama.data.atomic import atomic_write

    with atomic_write(args.output) as f:
        f.write(json.dumps(result, indent=2) + "\n")
    print(json.dumps(runs, indent=2))
    print(f"wrote {args.output}")
    return 0


def checkpoint_weights(commands) -> dict:
    """SHA-256 of the weights of each packaged checkpoint the tour names: its numbers hold for those weights."""
    from pyserini_llama.models.presets import PACKAGED_DIR
    from pyserini_llama.onnxrt import weights_sha256

    text = " ".join(c.text for c in commands)
    return {p.name: weights_sha256(p.name) for p in sorted(PACKAGED_DIR.iterdir())
            if p.is_dir() and p.name in text.split()}


if __name__ == "__main__":
    sys.exit(main())
