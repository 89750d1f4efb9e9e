"""Run the reliability suite and render docs/reliability.md from what it measured.

Usage::

    PYTHONPATH=. python scripts/reliability_report.py                # runs tests/reliability, writes
                                                                     # results/reliability.json, renders the doc
    PYTHONPATH=. python scripts/reliability_report.py --render       # renders from the committed results only
    PYTHONPATH=. python scripts/reliability_report.py --against 79b08c7 --against 62b5c00 --sample 2
                                                                     # the matrix against older code
    PYTHONPATH=. python scripts/reliability_report.py --check        # runs, prints the section, writes nothing

The figures come from the suite itself: its session hook (``tests/reliability/conftest.py``) writes every matrix
case and the other files' figures to ``$PYSERINI_LLAMA_RELIABILITY_REPORT/reliability.json``; this script points
that at a temporary folder, runs pytest, keeps the JSON as ``results/reliability.json`` (with the command and
the machine) and renders the section between the ``reliability:figures`` markers of the doc.

``--against COMMIT`` extracts that commit's ``pyserini_llama`` (``git archive``, nothing else is touched) and
runs the current matrix against it: every case in a child process with the old code first on ``PYTHONPATH``
(``RELIABILITY_SOURCE``), ``--sample N`` cases per (command, class) pair, evenly spread. The result is
``results/reliability-against-<commit>.json``; the doc shows, per class, how many sampled cases the old code
failed, and one of them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
RESULTS = REPO / "results"
SUITE = "tests/reliability"
BEGIN, END = "<!-- reliability:figures:begin -->", "<!-- reliability:figures:end -->"
CLASS_ORDER = ["bad-encoding", "bad-shape", "ecosystem", "bad-path", "os-error", "interrupt", "concurrent-writer",
               "device", "arguments", "environment"]


def run_pytest(targets, env_extra: dict, report_dir: Path) -> dict:
    env = dict(os.environ, PYSERINI_LLAMA_RELIABILITY_REPORT=str(report_dir), **env_extra,
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env)
    data = json.loads((report_dir / "reliability.json").read_text())
    data["run"] = {"command": " ".join(["python", "-m", "pytest", "-q", *targets]), "exit_status": proc.returncode,
                   "seconds": round(time.perf_counter() - start, 1), "date": time.strftime("%Y-%m-%d"),
                   "python": platform.python_version(), "cpu_cores": os.cpu_count(), **env_extra}
    return data


def against(commit: str, sample: int) -> dict:
    """The current matrix run against ``commit``'s code (sampled, every case in a child process)."""
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        proc = subprocess.run(["git", "archive", commit, "pyserini_llama"], cwd=REPO, capture_output=True)
        if proc.returncode != 0:  # not a git checkout, or no such commit
            message = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["git archive failed"]
            raise SystemExit(f"error: --against {commit}: {message[0]}")
        archive = proc.stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(source, filter="data")
        data = run_pytest([f"{SUITE}/test_matrix.py", "-m", "not integration"],
                          {"RELIABILITY_SOURCE": str(source), "RELIABILITY_SAMPLE": str(sample)}, Path(tmp) / "report")
    data["run"]["against"] = subprocess.run(["git", "rev-parse", "--short", commit], cwd=REPO, check=True,
                                            capture_output=True, text=True).stdout.strip()
    data["run"].pop("RELIABILITY_SOURCE", None)
    return data


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


# --- rendering --------------------------------------------------------------------------------------------

def _matrix(data: dict) -> dict:
    return {k: v for k, v in data.get("cases", {}).items() if v.get("suite", "test_matrix") == "test_matrix"}


def render(data: dict, olds: list) -> str:
    run, figures, cases = data["run"], data.get("figures", {}), _matrix(data)
    clis = sorted({c["cli"] for c in cases.values()})
    classes = [k for k in CLASS_ORDER if any(c["klass"] == k for c in cases.values())]
    passed = sum(c["outcome"] == "passed" for c in cases.values())
    pairs = {(c["cli"], c["klass"]) for c in cases.values()}
    lines = [BEGIN, "",
             f"Measured by `scripts/reliability_report.py` on {run['date']} (Python {run['python']}, "
             f"{run['cpu_cores']} CPU cores): `{run['command']}`, pytest exit status {run['exit_status']}, "
             f"{run['seconds']:.0f} s for the whole suite.", "",
             f"**The matrix**: {len(cases)} cases = {len(clis)} commands x {len(classes)} failure classes "
             f"({len(pairs)} command-class pairs that apply); {passed} pass, "
             f"{sum(c['outcome'] == 'failed' for c in cases.values())} fail, "
             f"{sum(c['outcome'] == 'skipped' for c in cases.values())} skipped; "
             f"{sum(c['subprocess'] for c in cases.values())} run as real subprocesses.", ""]
    header = "| class | cases | passed | commands |"
    rule = "| --- | --- | --- | --- |"
    for old in olds:
        header += f" failing on {old['run']['against']} (sampled) |"
        rule += " --- |"
    lines += [header, rule]
    for klass in classes:
        mine = [c for c in cases.values() if c["klass"] == klass]
        row = (f"| {klass} | {len(mine)} | {sum(c['outcome'] == 'passed' for c in mine)} | "
               f"{len({c['cli'] for c in mine})} |")
        for old in olds:
            theirs = [c for c in _matrix(old).values() if c["klass"] == klass]
            row += f" {sum(c['outcome'] == 'failed' for c in theirs)} of {len(theirs)} |"
        lines.append(row)
    lines += ["", "| command | " + " | ".join(classes) + " |", "| --- |" + " --- |" * len(classes)]
    per = defaultdict(Counter)
    for c in cases.values():
        per[c["cli"]][c["klass"]] += 1
    for cli in clis:
        lines.append(f"| {cli} | " + " | ".join(str(per[cli][k] or "-") for k in classes) + " |")
    for old in olds:
        failing = {k: v for k, v in _matrix(old).items() if v["outcome"] == "failed"}
        lines += ["", f"On {old['run']['against']} ({old['run']['command']}, every case in a child process with "
                      f"that commit's code, {old['run'].get('RELIABILITY_SAMPLE')} sampled cases per pair), a failing "
                      f"case per class:", ""]
        for klass in classes:
            example = next((k for k, v in sorted(failing.items()) if v["klass"] == klass), None)
            if example:
                lines.append(f"* {klass}: `{example}`: {failing[example]['message'][:160]}")
    lines += ["", "| other figure | value |", "| --- | --- |"]
    lines += _figures(figures)
    lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _figures(f: dict) -> list:
    rows = []
    fuzz = f.get("fuzz", {})
    if fuzz:
        rows.append(f"| fuzzed inputs | {fuzz['examples']} over {len(fuzz['per_reader'])} readers "
                    f"({fuzz['rejected_with_a_clear_error']} rejected with a one-line error naming the file, "
                    f"{fuzz['other_exceptions']} other exceptions) |")
    i = f.get("interrupt", {})
    if i:
        rows.append(f"| encoding runs killed (SIGKILL) | {i.get('encode_kills')} ({i.get('encode_kills_mid_run')} "
                    f"mid-encoding, after shards {i.get('encode_shards_at_kill')} of {i.get('encode_shards')}); the "
                    f"resumed index {'is byte-identical' if i.get('encode_index_identical') else 'DIFFERS'} |")
        if "encode_ctrl_c_line" in i:
            rows.append(f"| Ctrl-C while encoding | exit {i['encode_ctrl_c_exit']}, `{i['encode_ctrl_c_line']}`; "
                        f"the rerun's index is byte-identical |")
        if "concurrent_second_run" in i:
            rows.append(f"| two encodings of one index at once | one index; the other run: "
                        f"`{i['concurrent_second_run']}` |")
        if "train_kills" in i:
            rows.append(f"| training runs killed (SIGKILL) | {i['train_kills']} (after checkpoints "
                        f"{i['train_killed_after_checkpoint']} of {i['train_steps']} steps); largest relative loss "
                        f"difference resumed vs uninterrupted: {i['train_max_relative_loss_difference']} |")
    k = f.get("kernel_faults", {}).get("cases", {})
    for name, line in sorted(k.items()):
        rows.append(f"| real kernel fault, {name} | `{line}` |")
    u = f.get("untrusted", {})
    if u:
        rows.append(f"| malicious checkpoints refused or ignored | {u['payloads_refused']} (payload never ran) |")
    o = f.get("owned_paths", {}).get("refused", [])
    if o:
        rows.append(f"| deletions refused outside owned folders or through links | {len(o)} ({'; '.join(o)}) |")
    for what, how in sorted(f.get("resume_and_caches", {}).items()):
        rows.append(f"| reuse: {what} | {how} |")
    return rows


def write_doc(section: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: markers {BEGIN} ... {END} not found")
    head, rest = text.split(BEGIN, 1)
    tmp = DOC.with_name(f".{DOC.name}.tmp")
    tmp.write_text(head + section + rest.split(END, 1)[1])
    os.replace(tmp, DOC)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="render from results/ only; run nothing")
    parser.add_argument("--against", action="append", default=[], metavar="COMMIT",
                        help="run the matrix against an older commit's code (repeatable)")
    parser.add_argument("--sample", type=int, default=2, help="cases per (command, class) pair with --against")
    parser.add_argument("--check", action="store_true", help="print the section instead of writing files")
    args = parser.parse_args(argv)
    status = 0
    for commit in args.against:
        data = against(commit, args.sample)
        if not args.check:
            write_json(RESULTS / f"reliability-against-{data['run']['against']}.json", data)
    if not args.render and not args.against:
        with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
            data = run_pytest([SUITE], {}, Path(tmp))
        status = data["run"]["exit_status"]
        if not args.check:
            write_json(RESULTS / "reliability.json", data)
    data = json.loads((RESULTS / "reliability.json").read_text()) if args.render or args.against or not args.check \
        else data
    olds = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("reliability-against-*.json"))]
    section = render(data, olds)
    print(section)
    if not args.check:
        write_doc(section)
        print(f"wrote {DOC}")
    return status


if __name__ == "__main__":
    sys.exit(main())
