"""The failure classes, and the matrix: every command of :mod:`clis` x every class that applies to it.

Nothing here names a command: a class looks at a command's slots (its inputs and their formats, its outputs),
its flags (``--device``, numeric options read from its own parser) and generates the cases. So a new command,
input or option is covered by every class, and a new class covers every command.

Classes:
  bad-encoding, bad-shape, ecosystem  every mutation of :mod:`formats` of every input (ecosystem: BOM, CRLF,
                                      extra TSV columns, negative grades are read as Pyserini/trec_eval do)
  bad-path            inputs missing or of the wrong type; outputs that are folders, files, under a file,
                      already there, or a folder of someone else's files passed with --overwrite
  os-error            disk full, read-only target (simulated under out/; real kernel errors in
                      test_kernel_faults.py)
  interrupt           Ctrl-C while reading inputs, and while writing outputs
  concurrent-writer   another process finishes the same output while this one runs
  device              --device cuda without a GPU, --device tpu
  arguments           an unknown option; every numeric option (from the command's parser): -1, nan, inf
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import formats
from clis import CLIS, Cli, Paths, Slot

EXIT_OK, EXIT_OS, EXIT_USER, EXIT_INTERRUPT = 0, 1, 2, 130
NO_GPU = r"error: device 'cuda': no CUDA GPU is available here; use --device cpu \(or auto\)$"


@dataclass
class Case:
    id: str
    cli: Cli
    klass: str
    prepare: Callable[[Paths, Path, object], None] = lambda p, tmp, w: None
    argv_extra: Tuple[str, ...] = ()
    argv_replace: Optional[Callable[[List[str]], List[str]]] = None
    faults: Callable[[Paths, Path], list] = lambda p, tmp: []
    status: int = EXIT_USER
    message: str = ""  # regex on the last stderr line; {path}, {tmp}, {parent} are filled in
    early: bool = True  # fails before any model is loaded
    same: bool = False  # succeeds with the clean run's result
    subprocess: bool = False
    needs_java: bool = False
    env: Callable[[Paths, Path], Dict[str, str]] = lambda p, tmp: {}
    slot: Optional[str] = None  # the slot the case is about ({path} in the message)
    member: Optional[str] = None  # a file inside a folder slot

    def target(self, p: Paths) -> Optional[Path]:
        if self.slot is None:
            return None
        return p[self.slot] / self.member if self.member else p[self.slot]


def _input_path(tmp: Path, slot: Slot) -> Path:
    """Where a case puts a mutated copy of a folder input (checkpoint, index): never the world's own."""
    return tmp / "in" / slot.name


def _mutate(slot: Slot, member: Optional[str], m: "formats.Mutation"):
    def prepare(p: Paths, tmp: Path, w) -> None:
        if slot.kind in ("checkpoint", "reranker", "dense-index"):
            p[slot.name] = _input_path(tmp, slot)
        target = p[slot.name] / member if member else p[slot.name]
        m.apply(target, w)
    return prepare


def mutations_of(kind: str) -> List["formats.Mutation"]:
    from clis import good_definitions, good_registry

    if kind in formats.TEXT:
        return formats.text_kind_mutations(kind)
    return {"checkpoint": lambda: formats.checkpoint_mutations(lambda w: w.model, lambda w: w.adapter),
            "reranker": lambda: formats.checkpoint_mutations(lambda w: w.reranker, lambda w: w.reranker_adapter),
            "dense-index": lambda: formats.DENSE_INDEX,
            "registry": lambda: formats.registry_mutations(good_registry),
            "definitions": lambda: formats.regression_mutations(good_definitions)}.get(kind, list)()


def input_cases(cli: Cli) -> List[Case]:
    cases = []
    for slot in cli.inputs:
        targets = [(m, k) for m, k in slot.members] if slot.kind == "beir" else [(None, slot.kind)]
        for member, kind in targets:
            where = f"{slot.name}/{member}" if member else slot.name
            for m in mutations_of(kind):
                if m.expect == "error":
                    cases.append(Case(f"{cli.name}:{where}:{m.name}", cli, m.klass, _mutate(slot, member, m),
                                      message=m.message, early=not m.late, slot=slot.name, member=member))
                elif (cli.observe is not None or m.expect == "ok") and (not cli.slow or m.name.endswith("bom")):
                    cases.append(Case(f"{cli.name}:{where}:{m.name}", cli, "ecosystem", _mutate(slot, member, m),
                                      status=EXIT_OK, same=m.expect == "same", slot=slot.name, member=member,
                                      needs_java=cli.java, early=False))
            cases += _missing_cases(cli, slot, member, where)
    return cases


def _missing_cases(cli: Cli, slot: Slot, member: Optional[str], where: str) -> List[Case]:
    folder_kind = member is None and slot.kind in ("checkpoint", "reranker", "dense-index", "beir", "registry",
                                                   "definitions")

    def missing(p: Paths, tmp: Path, w) -> None:
        if not member and slot.kind in ("checkpoint", "reranker", "dense-index"):
            p[slot.name] = _input_path(tmp, slot)
        target = p[slot.name] / member if member else p[slot.name]
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def wrong_type(p: Paths, tmp: Path, w) -> None:
        missing(p, tmp, w)
        target = p[slot.name] / member if member else p[slot.name]
        if folder_kind:
            target.write_text("a file where a folder belongs\n")
        else:
            target.mkdir()

    if member:  # a file of a BEIR folder: the message names the folder and the file
        name = re.escape(Path(member).stem)
        message = r"{folder}.*" + (name if name != "test" else r"(test|split)")
    else:
        message = r"{path}"
    return [Case(f"{cli.name}:{where}:missing", cli, "bad-path", missing, message=message, slot=slot.name,
                 member=member),
            Case(f"{cli.name}:{where}:{'a-file' if folder_kind else 'a-folder'}", cli, "bad-path", wrong_type,
                 message=message, slot=slot.name, member=member)]


def _competitor(kind: str) -> Callable[[Path], None]:
    def make(target: Path) -> None:
        from faults import make_competitor
        make_competitor(target, kind)
    return make


def output_cases(cli: Cli) -> List[Case]:
    cases = []
    for slot in cli.outputs:
        name = f"{cli.name}:{slot.name}"

        def as_folder(p, tmp, w, slot=slot):
            p[slot.name].mkdir(parents=True)
            (p[slot.name] / "keep.txt").write_text("not ours\n")

        def as_file(p, tmp, w, slot=slot):
            p[slot.name].parent.mkdir(parents=True, exist_ok=True)
            p[slot.name].write_text("a file where a folder belongs\n")

        def under_file(p, tmp, w, slot=slot):
            blocker = tmp / "out" / "blocker"
            blocker.write_text("a file\n")
            p[slot.name] = blocker / (slot.file or slot.name)

        def finished(p, tmp, w, slot=slot, as_folder=as_folder, as_file=as_file):
            if slot.kind == "dir":
                as_folder(p, tmp, w)
            else:
                as_file(p, tmp, w)

        if slot.kind == "file":
            cases.append(Case(f"{name}:a-folder", cli, "bad-path", as_folder,
                              message=r"{path}: is a folder; give the path of a file", slot=slot.name))
        elif not slot.exists_ok:
            cases.append(Case(f"{name}:a-file", cli, "bad-path", as_file,
                              message=r"{path}: is a file; give the path of a folder", slot=slot.name))
        cases.append(Case(f"{name}:under-a-file", cli, "bad-path", under_file,
                          message=r"{tmp}/out/blocker: is a file", slot=slot.name))
        if not slot.replaceable and not slot.exists_ok:
            cases.append(Case(f"{name}:exists", cli, "bad-path", finished, slot=slot.name,
                              message=r"{path}(:? already (exists|holds)|: holds files this program did not write)"))
        if slot.kind == "dir" and not slot.exists_ok and cli.overwrite:
            cases.append(Case(f"{name}:someone-elses-folder-with-overwrite", cli, "bad-path", as_folder,
                              argv_extra=("--overwrite",), slot=slot.name,
                              message=r"{path}: holds files this program did not write \(keep\.txt\); refusing "
                                      r"to replace it"))
        cases.append(Case(f"{name}:disk-full", cli, "os-error", faults=lambda p, tmp: [("disk_full", str(tmp / "out"))],
                          status=EXIT_OS, early=False, needs_java=cli.java,
                          message=r"^error: {tmp}/out/\S*: No space left on device", slot=slot.name))
        # an unwritable output is found before the work (before any model loads), not after it
        cases.append(Case(f"{name}:read-only", cli, "os-error", faults=lambda p, tmp: [("read_only", str(tmp / "out"))],
                          status=EXIT_OS, needs_java=cli.java,
                          message=r"^error: {tmp}/out\S*: Read-only file system", slot=slot.name))
        if not slot.replaceable and not slot.exists_ok:
            cases.append(Case(f"{name}:finished-by-another-process", cli, "concurrent-writer",
                              faults=lambda p, tmp, slot=slot: [("concurrent_writer", str(tmp / "out"),
                                                                 str(p[slot.name]), slot.kind)],
                              message=r"{path}(:? already exists|: holds files this program did not write)",
                              early=False, needs_java=cli.java,
                              slot=slot.name))
    return cases


def interrupt_cases(cli: Cli) -> List[Case]:
    cases = []
    message = r"^error: interrupted"
    if any(s.kind in formats.TEXT or s.kind in ("beir", "registry", "definitions") for s in cli.inputs):
        cases.append(Case(f"{cli.name}:interrupted-while-reading", cli, "interrupt",
                          faults=lambda p, tmp: [("interrupt_reading", str(tmp / "in"))], status=EXIT_INTERRUPT,
                          message=message, early=False))
    if cli.outputs:
        cases.append(Case(f"{cli.name}:interrupted-while-writing", cli, "interrupt",
                          faults=lambda p, tmp: [("interrupt_writing", str(tmp / "out"))], status=EXIT_INTERRUPT,
                          message=message, early=False, needs_java=cli.java))
    return cases


def _set_option(flag: str, value: str):
    def replace(argv: List[str]) -> List[str]:
        argv = list(argv)
        if flag in argv:
            i = argv.index(flag)
            return argv[:i + 1] + [value] + argv[i + 2:]
        return argv + [f"{flag}={value}"]
    return replace


def device_cases(cli: Cli) -> List[Case]:
    if not cli.device:
        return []
    return [Case(f"{cli.name}:device-cuda-without-gpu", cli, "device", argv_replace=_set_option("--device", "cuda"),
                 message=NO_GPU),
            Case(f"{cli.name}:device-unknown", cli, "device", argv_replace=_set_option("--device", "tpu"),
                 message=r"error: unknown device 'tpu' \(use auto, cpu, cuda or cuda:N\)$")]


def argument_cases(cli: Cli) -> List[Case]:
    """An unknown option, and every numeric option (read from the command's own parser) out of range."""
    from clis import parse_options

    cases = [Case(f"{cli.name}:unknown-option", cli, "arguments", argv_extra=("--no-such-option",),
                  message=r"^error: .*unrecognized arguments: --no-such-option")]
    for flag, kind in parse_options(cli):
        if kind == "float":
            values = ["nan", "inf"]
        elif kind.startswith("int>="):  # the option's own floor, one below it
            values = [str(int(kind[5:]) - 1)]
        else:
            values = [] if flag in cli.negative_ok else ["-1"]
        for value in values:
            cases.append(Case(f"{cli.name}:{flag}={value}", cli, "arguments", argv_replace=_set_option(flag, value),
                              message=r"^error: .*" + re.escape(flag)))
    return cases


def all_cases() -> List[Case]:
    cases: List[Case] = []
    for cli in CLIS:
        mine = input_cases(cli) + output_cases(cli) + interrupt_cases(cli) + device_cases(cli) + argument_cases(cli)
        first = next((c for c in mine if c.klass == cli.subprocess_class), None)
        if first is not None:
            first.subprocess = True
        cases += mine
    seen = set()
    for case in cases:
        assert case.id not in seen, case.id
        seen.add(case.id)
    return cases
