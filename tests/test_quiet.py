"""Quiet by default: the JVM's start-up warnings and the libraries' warnings and bars are silenced where the
project starts them; ``-v`` / ``PYSERINI_LLAMA_VERBOSE=1`` shows them."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import cli_env
from pyserini_llama import java
from pyserini_llama.cli import QUIET_ENV


def default_env(**extra) -> dict:
    """The environment of a fresh shell (tests that quieted libraries in this process set QUIET_ENV here)."""
    env = cli_env(**extra)
    for name in QUIET_ENV:
        if name not in extra:
            env.pop(name, None)
    return env


def test_jvm_options_only_where_the_jvm_accepts_them():
    logging_option = f"-Djava.util.logging.config.file={java.LOGGING_CONFIG}"
    assert java.quiet_jvm_options(21) == [logging_option]
    assert java.quiet_jvm_options(22) == [logging_option, "--enable-native-access=ALL-UNNAMED"]
    assert java.quiet_jvm_options(25) == [logging_option, "--enable-native-access=ALL-UNNAMED",
                                          "--sun-misc-unsafe-memory-access=allow"]
    config = java.LOGGING_CONFIG.read_text()
    assert "org.apache.lucene.store.MMapDirectory.level = SEVERE" in config
    assert "handlers = java.util.logging.ConsoleHandler" in config  # everything else logs as by default


SEARCH = ("import sys; from pyserini_llama.lucene import bm25_search; "
          "print(bm25_search(sys.argv[1], {'q': 'shock waves'}, k=2)['q'][0][0])")


@pytest.mark.integration
def test_pyserini_starts_java_quietly(beir_folder, tmp_path):
    from pyserini_llama.lucene import build_lucene_index

    index = build_lucene_index(beir_folder / "corpus.jsonl", tmp_path / "index")
    quiet = subprocess.run([sys.executable, "-c", SEARCH, str(index)], env=default_env(PYSERINI_LLAMA_VERBOSE="0"),
                           capture_output=True, text=True, timeout=600, check=True)
    assert quiet.stdout.strip() == "d4"
    assert quiet.stderr.strip() == "", quiet.stderr
    if java.find_java().version >= 22:  # where Lucene 9 and the JDK do warn, -v shows it
        loud = subprocess.run([sys.executable, "-c", SEARCH, str(index)], env=default_env(PYSERINI_LLAMA_VERBOSE="1"),
                              capture_output=True, text=True, timeout=600, check=True)
        assert "WARNING" in loud.stderr


LIBRARIES = """
import json, warnings, transformers
from transformers.utils import logging as hf_logging
from pyserini_llama.cli import quiet_third_parties
quiet_third_parties()
with warnings.catch_warnings(record=True) as caught:
    warnings.warn_explicit("deprecated", FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
    warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="pyserini_llama.data.beir")
print(json.dumps({"shown": [str(w.message) for w in caught], "verbosity": hf_logging.get_verbosity(),
                  "bars": hf_logging.is_progress_bar_enabled()}))
"""


@pytest.mark.parametrize("verbose", ["0", "1"])
def test_libraries_imported_before_quieting_are_quieted(verbose):
    """Pyserini's CLIs import transformers before our encoders load: quieting must still reach it."""
    proc = subprocess.run([sys.executable, "-c", LIBRARIES], env=default_env(PYSERINI_LLAMA_VERBOSE=verbose),
                          capture_output=True, text=True, timeout=300, check=True)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    if verbose == "1":
        assert seen["shown"] == ["deprecated", "ours"] and seen["bars"]
    else:
        assert seen["shown"] == ["ours"]  # our own warnings always show
        assert seen["verbosity"] == 40 and not seen["bars"]  # logging.ERROR, no "Loading weights" bars


def test_our_warnings_are_one_line_in_our_clis(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "title": "", "text": ""}\n{"_id": "b", "title": "t", "text": "x"}\n')
    code = ("from pyserini_llama import cli\n"
            "def main(argv):\n"
            "    from pyserini_llama.data.beir import load_corpus\n"
            "    load_corpus(argv[0])\n"
            "cli.run_cli(main, [__import__('sys').argv[1]])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(corpus)], env=default_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0
    assert proc.stderr == f"warning: {corpus}:1: 1 document(s) have no text (kept, as empty documents)\n"

