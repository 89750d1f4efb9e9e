"""Run a regression: check what it needs, prepare its inputs, run its commands, evaluate and compare.

Commands are strings with placeholders filled in here: ``{work}`` (the work folder), ``{data_dir}``,
``{corpus}`` (the collection's corpus.jsonl), ``{corpus_dir}`` (a folder holding only that file, as Lucene's
BeirFlatCollection reads whole folders), ``{topics}`` (a ``qid<TAB>text`` file written here), ``{qrels}``,
``{beir_dir}`` (a BEIR folder of exactly what is evaluated: that corpus, the topics as ``queries.jsonl`` with
their text unchanged, the qrels as ``qrels/test.tsv``), ``{run}``, ``{out}`` (a step's temporary output,
renamed to its ``creates`` path on success), ``{threads}``, ``{device}`` and ``{index:NAME}`` (a prebuilt
index from the registry, fetched when needed). A leading ``python`` is the running interpreter.

A step whose ``creates`` path exists is skipped without running anything, so an output made elsewhere (a BM25
run made where Pyserini and Java are, for a GPU machine that has neither) can be placed there beforehand.
Definitions of one ``group`` share the work folder; the inputs written here are rewritten for each
definition, so a group may span collections (outputs named per collection in the definitions).

With ``limit=N`` only the first N topics are run, against a corpus cut down to their judged documents plus
the first ``20 * N`` others; the scores are then not comparable with the expected ones. They are compared only
with a definition's ``limited`` values, when its limit and device kind are those of the run (a check a CPU can
afford, measured on a CPU).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..data.atomic import atomic_write
from ..errors import UserError
from ..paths import remove_tree
from .definitions import MetricSpec, Regression, Requirement, device_kind

PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([^{}\s]+))?\}")
LIMIT_EXTRA_DOCS = 20
OK, FAIL, NO_EXPECTED, NOT_COMPARED = "OK", "FAIL", "no expected value yet", "not compared (--limit)"


@dataclass
class Options:
    data_dir: Optional[str] = None
    work_root: Optional[Path] = None
    limit: Optional[int] = None
    threads: int = 2
    device: Optional[str] = None
    download: bool = True

    def work_dir(self, regression: Regression) -> Path:
        from ..paths import cache_dir, safe_name

        root = Path(self.work_root) if self.work_root else cache_dir() / "regressions"
        name = safe_name(regression.group or regression.name, "regression group")
        return root / (f"{name}.limit-{self.limit}" if self.limit else name)

    def data_dirs(self) -> List[Path]:
        from ..data.collections import default_data_dirs

        return [Path(self.data_dir)] if self.data_dir else default_data_dirs()


@dataclass
class Check:
    requirement: str
    status: str  # "ok", "fetch" (obtained at run time) or "missing"
    detail: str


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


# --- requirements ---------------------------------------------------------------------------------------

def find_data_file(relative: str, options: Options) -> Optional[Path]:
    """An absolute path as it is; a relative one under the first data dir that has it."""
    if Path(relative).is_absolute():
        return Path(relative) if Path(relative).exists() else None
    for base in options.data_dirs():
        if (base / relative).exists():
            return base / relative
    return None


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Look for weights without downloading them: checks must be quick and side-effect free."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _check_checkpoint(name: str) -> Tuple[str, str]:
    from ..models.hub import resolve_model_path
    from ..models.load import adapter_base_model, is_adapter, resolve_checkpoint

    with _hub_offline():
        try:
            folder, config = resolve_checkpoint(name)
            if is_adapter(folder):
                resolve_model_path(adapter_base_model(folder, config), offline=True)
        except UserError as e:
            return "missing", str(e)
    return "ok", str(folder)


def _check_collection(name: str, options: Options) -> Tuple[str, str]:
    from ..data.collections import beir_source, beir_url, resolve_collection

    try:
        return "ok", str(resolve_collection(name, options.data_dir, download=False).root)
    except UserError as e:
        source = beir_source(name)
        if source and options.download:
            return "fetch", f"downloaded at run time from {beir_url(source[0])} (md5-verified)"
        return "missing", str(e)


def _check_index(name: str) -> Tuple[str, str]:
    from ..prebuilt_indexes.registry import get_descriptor, index_path, is_cached

    descriptor = get_descriptor(name)
    if is_cached(name):
        return "ok", str(index_path(name))
    if descriptor.urls:
        return "fetch", f"downloaded at run time from {descriptor.urls[0]} (md5-verified)"
    return "missing", f"build it first: python -m pyserini_llama.prebuilt_indexes --build {name}"


def _check_module(name: str) -> Tuple[str, str]:
    import importlib.util

    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        found = False
    return ("ok", name) if found else ("missing", f"module {name} is not available in this installation")


def _data_source_requirements(regression: Regression) -> List[Requirement]:
    implied = []
    if regression.collection:
        implied.append(Requirement("collection", regression.collection))
    for source in (regression.topics, regression.qrels):
        if isinstance(source, str):
            implied.append(Requirement("file", source))
        elif source["collection"] != regression.collection:
            implied.append(Requirement("collection", source["collection"]))
    for step in regression.commands:
        implied.extend(Requirement("index", m.group(2)) for m in PLACEHOLDER.finditer(step.cmd)
                       if m.group(1) == "index")
    return implied


def check_requirements(regression: Regression, options: Options) -> List[Check]:
    """What the regression needs, whether it is here, and how to get it when it is not."""
    explicit = {(r.kind, r.value) for r in regression.requires}
    implied = [r for r in _data_source_requirements(regression) if (r.kind, r.value) not in explicit]
    checks = []
    for req in implied + regression.requires:
        if req.kind == "checkpoint":
            status, detail = _check_checkpoint(req.value)
        elif req.kind == "collection":
            status, detail = _check_collection(req.value, options)
        elif req.kind == "index":
            status, detail = _check_index(req.value)
        elif req.kind == "module":
            status, detail = _check_module(req.value)
        else:
            found = find_data_file(req.value, options)
            where = ", ".join(map(str, options.data_dirs())) or "no data dir found"
            status, detail = ("ok", str(found)) if found else (
                "missing", f"not found under the data dir ({where}); pass --data-dir DIR holding {req.value}")
        if status == "missing" and req.how:
            detail = f"{detail}. {req.how}"
        elif status == "missing" and req.kind == "checkpoint":
            detail = f"{detail} (castorini's adapters also need meta-llama/Llama-2-7b-hf: accept its licence " \
                     f"on the hub and run huggingface-cli login first)"
        checks.append(Check(f"{req.kind} {req.value}", status, detail))
    return checks


def format_checks(checks: List[Check]) -> str:
    marks = {"ok": "ok     ", "fetch": "fetch  ", "missing": "MISSING"}
    return "\n".join(f"  [{marks[c.status]}] {c.requirement}: {c.detail}" for c in checks)


# --- inputs ---------------------------------------------------------------------------------------------

def _load_topics(regression: Regression, options: Options) -> Dict[str, str]:
    from ..data.beir import load_queries
    from ..data.collections import resolve_collection

    source = regression.topics
    if isinstance(source, str):
        return load_queries(find_data_file(source, options))
    folder = resolve_collection(source["collection"], options.data_dir, download=options.download)
    return folder.queries(source["split"])


def _load_qrels(regression: Regression, options: Options) -> Tuple[Dict[str, Dict[str, int]], Path]:
    from ..data.beir import load_qrels
    from ..data.collections import resolve_collection

    source = regression.qrels
    if isinstance(source, str):
        path = find_data_file(source, options)
    else:
        path = resolve_collection(source["collection"], options.data_dir,
                                  download=options.download).qrels_path(source["split"])
    return load_qrels(path), path


def _write_topics(topics: Dict[str, str], path: Path) -> None:
    with atomic_write(path) as f:
        for qid, text in topics.items():
            f.write(f"{qid}\t{' '.join(text.split())}\n")  # tabs or newlines inside a query would split it


def _write_qrels(qrels: Dict[str, Dict[str, int]], path: Path) -> None:
    with atomic_write(path) as f:
        for qid, docs in qrels.items():
            f.writelines(f"{qid} 0 {docid} {rel}\n" for docid, rel in docs.items())


def _write_beir_folder(folder: Path, corpus: Path, topics: Dict[str, str],
                       qrels: Dict[str, Dict[str, int]]) -> None:
    _link_corpus(corpus, folder)
    with atomic_write(folder / "queries.jsonl") as f:
        f.writelines(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n"
                     for qid, text in topics.items())
    with atomic_write(folder / "qrels" / "test.tsv") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            f.writelines(f"{qid}\t{docid}\t{rel}\n" for docid, rel in docs.items())


def _link_corpus(corpus: Path, folder: Path) -> None:
    """Make ``folder``'s only corpus file a link to ``corpus`` (re-pointed when a group changes collection)."""
    name = "corpus.jsonl.gz" if corpus.name.endswith(".gz") else "corpus.jsonl"
    link = folder / name
    if link.is_symlink() and Path(os.readlink(link)) == corpus.resolve():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / old).is_symlink() or (folder / old).exists():
            (folder / old).unlink()
    link.symlink_to(corpus.resolve())


def _subset_corpus(corpus: Path, keep: set, extra: int, output: Path) -> None:
    """The judged documents of the kept topics plus the first ``extra`` others, in corpus order."""
    from ..data.beir import iter_corpus

    with atomic_write(output) as f:
        for doc in iter_corpus(corpus):
            if doc.docid not in keep:
                if extra <= 0:
                    continue
                extra -= 1
            f.write(json.dumps({"_id": doc.docid, "title": doc.title, "text": doc.text}, ensure_ascii=False)
                    + "\n")


def prepare_inputs(regression: Regression, options: Options, work: Path) -> Tuple[dict, Dict]:
    """Write topics (and with --limit the reduced corpus and qrels) and return the placeholder values."""
    from ..data.collections import resolve_collection

    topics = _load_topics(regression, options)
    qrels, qrels_path = _load_qrels(regression, options)
    if options.limit:
        topics = dict(list(topics.items())[:options.limit])
    qrels = {qid: docs for qid, docs in qrels.items() if qid in topics}
    data_dirs = options.data_dirs()
    values = {"work": str(work), "topics": str(work / "topics.tsv"), "qrels": str(qrels_path),
              "run": _fill(regression.run, {"work": str(work)}), "threads": str(options.threads),
              "device": options.device or _default_device(), "data_dir": str(data_dirs[0] if data_dirs else work)}
    _write_topics(topics, work / "topics.tsv")
    if regression.collection:
        folder = resolve_collection(regression.collection, options.data_dir, download=options.download)
        corpus = folder.corpus_path
        if options.limit:
            # kept once made: indexes built from it are reused by the other definitions of the group
            judged = {docid for docs in qrels.values() for docid in docs}
            reduced = work / "corpus-subset" / folder.root.name / "corpus.jsonl"
            if not reduced.exists():
                _subset_corpus(corpus, judged, LIMIT_EXTRA_DOCS * options.limit, reduced)
            corpus = reduced
        _link_corpus(corpus, work / "corpus-input")  # Lucene reads every file of the folder: show it only this one
        _write_beir_folder(work / "beir-input", corpus, topics, qrels)
        values.update(corpus=str(corpus), corpus_dir=str(work / "corpus-input"), beir_dir=str(work / "beir-input"))
    if options.limit:
        values["qrels"] = str(work / "qrels.limited.txt")
        _write_qrels(qrels, work / "qrels.limited.txt")
    return values, qrels


def _default_device() -> str:
    from ..runtime import resolve_device

    return resolve_device("auto")


# --- commands -------------------------------------------------------------------------------------------

def _fill(text: str, values: Dict[str, str], dry_run: bool = False) -> str:
    def replace(match: re.Match) -> str:
        key, arg = match.group(1), match.group(2)
        if key == "index" and arg:
            if dry_run:
                return _dry_index(arg)
            from ..prebuilt_indexes.registry import resolve_index
            return str(resolve_index(arg))
        if key in values:
            return values[key]
        if dry_run:
            return match.group(0)
        raise UserError(f"unknown placeholder {match.group(0)} in command: {text}")
    return PLACEHOLDER.sub(replace, text)


def _dry_index(name: str) -> str:
    from ..prebuilt_indexes.registry import index_path, is_cached

    return str(index_path(name)) if is_cached(name) else f"<index {name}>"


def command_lines(regression: Regression, values: Dict[str, str]) -> List[str]:
    """The commands with every placeholder that can be filled without side effects filled in."""
    lines = []
    for step in regression.commands:
        out = {"out": _fill(step.creates, values, dry_run=True)} if step.creates else {}
        lines.append(_fill(step.cmd, {**values, **out}, dry_run=True))
    return lines


def _argv(command: str) -> List[str]:
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def run_steps(regression: Regression, values: Dict[str, str], log=print) -> List[str]:
    ran = []
    for i, step in enumerate(regression.commands, start=1):
        step_values = dict(values)
        target = Path(_fill(step.creates, values)) if step.creates else None
        if target is not None:
            if target.exists():
                log(f"[{i}/{len(regression.commands)}] skipped, {target} exists")
                continue
            tmp = target.with_name(f".{target.name}.tmp")
            remove_tree(tmp, values["work"])  # left by an interrupted attempt
            step_values["out"] = str(tmp)
        command = _fill(step.cmd, step_values)
        log(f"[{i}/{len(regression.commands)}] $ {command}")
        proc = subprocess.run(_argv(command))
        if proc.returncode != 0:
            raise UserError(f"regression {regression.name}: step {i} failed (exit {proc.returncode}): {command}")
        if target is not None:
            if not Path(step_values["out"]).exists():
                raise UserError(f"regression {regression.name}: step {i} did not write {{out}} "
                                f"({step_values['out']})")
            os.replace(step_values["out"], target)
        ran.append(command)
    return ran


# --- evaluation -----------------------------------------------------------------------------------------

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
    """Check requirements, run the commands, evaluate the run and compare with the expected scores."""
    checks = check_requirements(regression, options)
    missing = [c for c in checks if c.status == "missing"]
    if missing:
        log(f"regression {regression.name} needs:\n{format_checks(checks)}")
        raise UserError(f"regression {regression.name}: {len(missing)} requirement(s) missing (listed above)")
    work = options.work_dir(regression)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    values, qrels = prepare_inputs(regression, options, work)
    steps = run_steps(regression, values, log)
    scores = evaluate_run(regression, Path(values["run"]), qrels)
    return Result(regression, compare(regression, scores, options.limit, values["device"]), time.time() - start,
                  hardware(), options.limit, steps, values["device"])


def dry_run_values(regression: Regression, options: Options) -> Dict[str, str]:
    """Placeholder values for printing commands: nothing is written or downloaded."""
    from ..data.collections import resolve_collection

    work = options.work_dir(regression)
    data_dirs = options.data_dirs()
    values = {"work": str(work), "topics": str(work / "topics.tsv"), "threads": str(options.threads),
              "device": options.device or "<device>", "data_dir": str(data_dirs[0]) if data_dirs else "<data dir>"}
    values["run"] = _fill(regression.run, values, dry_run=True)
    if isinstance(regression.qrels, str):
        found = find_data_file(regression.qrels, options)
        values["qrels"] = str(found) if found else f"<data dir>/{regression.qrels}"
    if regression.collection:
        try:
            corpus = resolve_collection(regression.collection, options.data_dir, download=False).corpus_path
            values["corpus"] = str(work / "corpus-subset" / corpus.parent.name / "corpus.jsonl") \
                if options.limit else str(corpus)
        except UserError:
            values["corpus"] = f"<corpus of {regression.collection}>"
        values.update(corpus_dir=str(work / "corpus-input"), beir_dir=str(work / "beir-input"))
    return values


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
