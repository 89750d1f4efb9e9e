"""`pip install .` builds quietly and ships what the package reads at run time."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

SOURCES = ("pyserini_llama", "pyserini_llama_hook.py", "pyserini_llama.pth", "setup.py", "setup.cfg",
           "pyproject.toml", "README.md")


@pytest.mark.slow
def test_wheel_builds_without_warnings_and_with_its_data(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, source / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "Warning" not in output and "!!" not in output, output[-3000:]
    (wheel,) = (tmp_path / "dist").glob("pyserini_llama-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"pyserini_llama.pth", "pyserini_llama_hook.py", "pyserini_llama/java_logging.properties",
                "pyserini_llama/regressions/repllama-smollm2.yaml", "pyserini_llama/prebuilt_indexes/bm25.yaml",
                "pyserini_llama/checkpoints/repllama-smollm2/adapter_model.safetensors",
                "pyserini_llama/checkpoints/rankllama-smollm2/pyserini_llama.json",
                # each checkpoint's own tokenizer: the special tokens it was trained with (EOS pooling, padding)
                "pyserini_llama/checkpoints/repllama-smollm2/tokenizer.json",
                "pyserini_llama/checkpoints/rankllama-smollm2/tokenizer_config.json",
                "pyserini_llama/topics.py", "pyserini_llama/data/atomic.py"}
    assert expected <= names, sorted(expected - names)
