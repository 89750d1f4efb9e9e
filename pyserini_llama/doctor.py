"""Check the installation: ``python -m pyserini_llama.doctor``.

Prints what was found (Java, Pyserini, torch/CUDA, faiss, onnxruntime, models, data) and, for anything missing,
what to do about it. Exits non-zero when something required is missing.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
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
    return ("Java >= 21", True, f"Java {rt.version} from {rt.source} ({rt.home}), {vector} jdk.incubator.vector", "")


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
    from .models.presets import BUILTIN, PACKAGED_DIR
    packaged = sorted(p.name for p in PACKAGED_DIR.iterdir() if p.is_dir()) if PACKAGED_DIR.is_dir() else []
    checks.append(("packaged checkpoints", True, ", ".join(packaged) or "none", ""))
    checks.append(("published checkpoints", True, ", ".join(sorted(BUILTIN)) +
                   " (downloaded from the Hugging Face hub on first use; Llama-2 needs accepted terms)", ""))
    return checks


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
        lambda: check_package("pyserini", "pyserini", "pip install 'pyserini>=1.6'"),
        check_pyserini_hook, check_torch,
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
