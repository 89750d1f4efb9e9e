"""The operating system's own errors, not simulated: a full disk and a read-only folder, from a real tmpfs.

Each case runs a command in a private mount namespace (``unshare -m``) where its output folder is a tmpfs that
is full (filled with ``dd`` first) or mounted read-only, so the kernel itself answers ``ENOSPC`` or ``EROFS``.
The mount disappears with the command. Where mount namespaces are not allowed (no root, a restricted
container) the cases are skipped; the matrix's simulated faults (``faults.py``) still run everywhere.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import lru_cache

import pytest

import report
from clis import BY_NAME, argv_of, layout
from runner import HARNESS, TRACEBACK

RESULTS: dict = {}


@lru_cache(maxsize=1)
def namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt && umount /mnt"],
                           capture_output=True)
    return probe.returncode == 0


SETUP = {"disk-full": "mount -t tmpfs -o size=64k tmpfs {out} && (dd if=/dev/zero of={out}/filler bs=4k "
                      "2>/dev/null; true)",
         "read-only": "mount -t tmpfs -o size=64k,ro tmpfs {out}"}
MESSAGE = {"disk-full": "No space left on device", "read-only": "Read-only file system"}


@pytest.mark.parametrize("name,fault", [("fusion", "disk-full"), ("fusion", "read-only"),
                                        ("encode-corpus", "disk-full")])
def test_a_real_kernel_error_is_one_line_and_exit_1(name, fault, world, tmp_path):
    if not namespaces():
        pytest.skip("mount namespaces (unshare -m, mount) are not allowed here")
    from conftest import cli_env

    cli = BY_NAME[name]
    p = layout(cli, tmp_path, world)
    out = tmp_path / "out"
    spec = tmp_path / "case.json"
    spec.write_text(json.dumps({"module": cli.module, "argv": argv_of(cli, p, world), "faults": [],
                                "count_loads": False, "counts": str(tmp_path / "counts.json")}))
    listing = tmp_path / "listing.txt"
    script = (f"{SETUP[fault].format(out=out)} && {sys.executable} {HARNESS} {spec}; status=$?; "
              f"find {out} -mindepth 1 > {listing}; exit $status")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=cli_env(PYSERINI_LLAMA_OFFLINE="1", OMP_NUM_THREADS="1"))
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or [""]
    context = f"\nexit {proc.returncode}; stderr:\n{proc.stderr[-2500:]}"
    assert TRACEBACK not in proc.stderr, context
    assert proc.returncode == 1, context
    assert last[0].startswith(f"error: {out}") and MESSAGE[fault] in last[0], context
    left = [line for line in listing.read_text().splitlines() if not line.endswith("/filler")]
    assert left == [], f"left behind on the full or read-only folder: {left}{context}"
    RESULTS[f"{name}:{fault}"] = last[0].replace(str(tmp_path), "<tmp>")
    report.record("kernel_faults", cases=dict(RESULTS))
