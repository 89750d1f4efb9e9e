"""A regression's commands: placeholders filled in, run one after the other, and steps with a ``creates``
output skipped when that output was made from the same inputs.

A step's output is keyed by what determines it: the command as filled in (every path, flag and device) and the
content of every file and folder it names (corpus and topics by their bytes, indexes and model folders by
:func:`~pyserini_llama.fingerprint.folder_fingerprint`), plus the identity of the checkpoints it names. The key is
recorded next to the output (``.<name>.step.json``); an output whose recorded key differs is made again, so an
edited corpus, other topics or a retrained checkpoint never reuse a stale run. An output with no record was put
there by hand (a BM25 run made where Pyserini and Java are, for a GPU machine that has neither): it is used as
it is, and the log says so.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..data.atomic import atomic_write
from ..errors import UserError
from ..paths import remove_tree
from .definitions import Regression

PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([^{}\s]+))?\}")
CHECKPOINT_FLAGS = ("--encoder", "--reranker", "--model", "--checkpoint", "--dense")


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


# --- what determines a step's output -------------------------------------------------------------------------

def step_key(command: str, target: Path, work: Path) -> Dict[str, object]:
    """The command as filled in, and the content of every file, folder and checkpoint it names."""
    from ..fingerprint import file_sha256, folder_fingerprint

    inputs: Dict[str, str] = {}
    argv = shlex.split(command)
    for before, token in zip([""] + argv, argv):
        value = token.split("=", 1)[1] if token.startswith("--") and "=" in token else token
        path = Path(value)
        if not value or value.startswith("-") or not _names_a_path(value):
            if before in CHECKPOINT_FLAGS and value.lower() != "none":
                inputs[value] = _checkpoint_identity(value)
            continue
        resolved = path.resolve()
        if resolved == Path(work).resolve() or target.resolve() in (resolved, *resolved.parents):
            continue  # the output itself (or the whole work folder that holds it)
        if path.is_file():
            inputs[value] = file_sha256(path)
        elif path.is_dir():
            inputs[value] = folder_fingerprint(path)
        elif before in CHECKPOINT_FLAGS:
            inputs[value] = _checkpoint_identity(value)
    return {"command": command, "inputs": inputs}


def _names_a_path(value: str) -> bool:
    return os.sep in value or Path(value).exists()


def _checkpoint_identity(name: str) -> str:
    """A named checkpoint's weights and settings (a retrained packaged checkpoint changes it); the name alone
    when it cannot be resolved offline (the step itself will say what is missing)."""
    from ..errors import UserError as Missing

    try:
        from ..stages import model_key

        return model_key(name)
    except (Missing, OSError):
        return f"unresolved:{name}"


def _record_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.step.json")


def _recorded_key(target: Path) -> Optional[dict]:
    try:
        return json.loads(_record_path(target).read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


# --- running ---------------------------------------------------------------------------------------------

def run_steps(regression: Regression, values: Dict[str, str], log=print) -> List[str]:
    """Run the commands in order; a ``creates`` step whose output was made from the same inputs is skipped."""
    ran = []
    work = Path(values["work"])
    for i, step in enumerate(regression.commands, start=1):
        where = f"[{i}/{len(regression.commands)}]"
        step_values = dict(values)
        target = Path(_fill(step.creates, values)) if step.creates else None
        key = None
        if target is not None:
            command = _fill(step.cmd, {**values, "out": str(target)})
            key = step_key(command, target, work)
            if target.exists() or target.is_symlink():
                recorded = _recorded_key(target)
                if recorded is None and not _record_path(target).exists():
                    log(f"{where} skipped, {target} exists (put there by hand: no record of its inputs, used "
                        f"as it is)")
                    continue
                if recorded == json.loads(json.dumps(key)):
                    log(f"{where} skipped, {target} exists and its inputs are unchanged")
                    continue
                changed = sorted(k for k in set(key["inputs"]) | set((recorded or {}).get("inputs", {}))
                                 if key["inputs"].get(k) != (recorded or {}).get("inputs", {}).get(k))
                log(f"{where} {target} was made from other inputs ({', '.join(changed[:3]) or 'another command'}); "
                    f"making it again")
                remove_tree(target, work)
                remove_tree(_record_path(target), work)
            tmp = target.with_name(f".{target.name}.tmp")
            remove_tree(tmp, work)  # left by an interrupted attempt
            step_values["out"] = str(tmp)
        command = _fill(step.cmd, step_values)
        log(f"{where} $ {command}")
        status, last_error = _run(command)
        if status != 0:
            said = f": {last_error}" if last_error else ""
            raise UserError(f"regression {regression.name}: step {i} failed (exit {status}){said}")
        if target is not None:
            if not Path(step_values["out"]).exists():
                raise UserError(f"regression {regression.name}: step {i} did not write {{out}} "
                                f"({step_values['out']})")
            os.replace(step_values["out"], target)
            with atomic_write(_record_path(target)) as f:
                f.write(json.dumps({"step": i, "key": key}, indent=1) + "\n")
        ran.append(command)
    return ran


def _run(command: str):
    """Run ``command``, passing its stderr through as it comes (progress bars included); returns its exit
    status and its own ``error: ...`` line, which is held back: the regression's one error line repeats it."""
    proc = subprocess.Popen(_argv(command), stderr=subprocess.PIPE)
    assert proc.stderr is not None
    last_error, pending = "", b""
    for chunk in iter(lambda: proc.stderr.read1(1 << 14), b""):
        pending += chunk
        cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
        shown, pending = pending[:cut], pending[cut:]
        kept = []
        for piece in re.split(rb"(?<=[\r\n])", shown):
            if piece.startswith(b"error: "):
                last_error = piece.decode("utf-8", "replace")[len("error: "):].strip()
            else:
                kept.append(piece)
        _echo(b"".join(kept))
    if pending.startswith(b"error: "):
        last_error = pending.decode("utf-8", "replace")[len("error: "):].strip()
    else:
        _echo(pending)
    proc.wait()
    if proc.returncode == 0 and last_error:
        _echo(f"error: {last_error}\n".encode())  # it succeeded after all: nothing to repeat
        last_error = ""
    return proc.returncode, last_error


def _echo(data: bytes) -> None:
    if not data:
        return
    out = getattr(sys.stderr, "buffer", None)
    if out is not None:
        out.write(data)
        out.flush()
    else:
        sys.stderr.write(data.decode("utf-8", "replace"))
