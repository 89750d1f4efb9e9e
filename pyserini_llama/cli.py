"""What every ``python -m pyserini_llama.X`` command shares: its parser, argument groups, checks and exit.

A CLI module parses its arguments with :func:`parser` and the ``add_*`` groups below, calls the library and
prints a summary; :func:`run_cli` is the one place that turns any failure into one line on stderr and an exit
status: user errors and bad arguments (2), operating-system errors such as a full disk or a read-only folder
(1), running out of memory (1), an interrupt (130). Genuine bugs keep their traceback.

Example::

    def build_parser():
        p = parser("python -m pyserini_llama.search", __doc__)
        add_checkpoint(p, "--encoder", default=None, what="query encoder")
        add_device(p)
        add_output(p)
        return p

    if __name__ == "__main__":
        run_cli(main)
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from typing import Callable, NoReturn, Optional, Sequence

from .errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError

EXIT_FAILURE = 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <prog>: argument --x: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def parser(prog: str, doc: Optional[str] = None, **kwargs) -> ArgumentParser:
    """A parser whose description is the module docstring's first line and whose epilog is the rest."""
    lines = (doc or "").strip().splitlines()
    return ArgumentParser(prog=prog, description=lines[0] if lines else None,
                          epilog="\n".join(lines[1:]).strip() or None,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


# --- argument types: a bad value is argparse's one-line error, before anything runs --------------------------

def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


# --- argument groups -------------------------------------------------------------------------------------

def add_device(p: argparse.ArgumentParser, dtype: bool = True, compile: bool = False) -> None:
    """``--device`` (auto, cpu, cuda, cuda:N), ``--dtype`` and optionally ``--compile``."""
    p.add_argument("--device", default="auto", help="auto (this rank's GPU when there is one, else cpu), cpu, "
                                                    "cuda or cuda:N (default: auto)")
    if dtype:
        p.add_argument("--dtype", default="auto", help="auto (the checkpoint's on a GPU, float32 on a CPU), "
                                                       "bfloat16, float16, float32, or fp8 (matmuls in float8 "
                                                       "on GPUs of compute capability >= 8.9; best with --compile)")
    if compile:
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the model: faster on GPUs for large inputs; the first batch compiles "
                            "(a minute on a GPU, much longer on a CPU)")


def add_backend(p: argparse.ArgumentParser, default: str = "torch") -> None:
    """``--backend`` (torch, onnx, auto) and ``--precision`` (of the onnx graph)."""
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default=default,
                   help="torch, or onnx: onnxruntime on the CPU, the checkpoint exported once and cached "
                        f"(auto: onnx on a CPU, torch on a GPU; default: {default})")
    from .onnxrt.quantize import PRECISIONS  # numpy only: no onnx import here

    p.add_argument("--precision", choices=PRECISIONS,
                   help="with the onnx backend: fp32, int8 (per-token scales where activations have outliers, "
                        "per-tensor elsewhere), int8-token or int8-dynamic (onnxruntime's quantize_dynamic); "
                        "default: the checkpoint's measured CPU default, else fp32")


def add_checkpoint(p: argparse.ArgumentParser, flag: str, default: Optional[str], what: str,
                   required: bool = False) -> None:
    """A checkpoint argument (folder, built-in name, packaged name or hub id) and ``--trust-remote-code``."""
    shown = f" (default: {default})" if default else ""
    p.add_argument(flag, default=default, required=required,
                   help=f"{what}: a checkpoint folder, a built-in or packaged name, or a hub id{shown}")
    if not any("--trust-remote-code" in a.option_strings for a in p._actions):
        p.add_argument("--trust-remote-code", action="store_true",
                       help="allow model code shipped inside a checkpoint to run (only for checkpoints you trust)")


def add_output(p: argparse.ArgumentParser, flag: str = "--output", required: bool = True,
               help: str = "file to write") -> None:
    """An output path and ``--overwrite`` (outputs are never replaced silently)."""
    p.add_argument(flag, required=required, help=help)
    add_overwrite(p)


def add_overwrite(p: argparse.ArgumentParser) -> None:
    if not any("--overwrite" in a.option_strings for a in p._actions):
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs (and discard any "
                                                                "unfinished or cached work for them)")


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show third-party warnings and logs (quiet by default)")


# --- running ---------------------------------------------------------------------------------------------

VERBOSE_ENV = "PYSERINI_LLAMA_VERBOSE"
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
             "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
NOISY_MODULES = r"(transformers|peft|torch|huggingface_hub|accelerate|tqdm|pyserini|sklearn|jnius)(\.|$)"


def quiet_third_parties(verbose: Optional[bool] = None) -> None:
    """Silence the libraries' warnings, logs and progress bars the project starts (transformers' deprecation
    warnings and "Loading weights" bars, huggingface_hub, peft, torch.compile logs) and the JVM's start-up
    warnings (see :mod:`.java`); ``-v`` (or ``PYSERINI_LLAMA_VERBOSE=1``, which Pyserini's own CLIs honour)
    shows them. Our own warnings (``pyserini_llama``) always show. Works before and after the libraries are
    imported, so the Pyserini adapters can call it too."""
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV, "0") not in ("", "0")
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # read by java.py and inherited by subprocesses (Lucene indexing)
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)
    for name in ("transformers", "huggingface_hub", "peft", "torch._dynamo", "torch._inductor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # The environment variables above are read when a library is imported: if it already is, ask it directly.
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def describe_os_error(e: OSError) -> str:
    """``<file>: <what the system said>`` plus what usually fixes it."""
    where = e.filename if e.filename is not None else "system call"
    hint = {errno.ENOSPC: "free some disk space and rerun", errno.EROFS: "write somewhere writable",
            errno.EACCES: "check the permissions", errno.EISDIR: "give a file path, not a folder",
            errno.ENOTDIR: "a part of the path is a file, not a folder"}.get(e.errno)
    return f"{where}: {e.strerror or e}" + (f" ({hint})" if hint else "")


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Run a CLI ``main(argv)`` and exit with its status; every expected failure is one line on stderr.

    A module whose work survives an interrupt says how to continue it in ``RESUME_HINT``; the interrupt line
    adds it (every other command has nothing to resume: its outputs appear only when complete)."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    verbose = bool({"-v", "--verbose"} & set(sys.argv[1:]))
    quiet_third_parties(True if verbose else None)
    if not verbose:
        # the warnings that remain are ours and name their file and line themselves: one line each, as errors
        # are, without Python's "<source file>:<line>: UserWarning:" prefix and source excerpt
        warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"warning: {message}\n"
    try:
        status = main(argv)
    except UserError as e:
        _fail(f"error: {e}", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        hint = getattr(sys.modules.get(getattr(main, "__module__", ""), None), "RESUME_HINT", "")
        _fail("error: interrupted; no output was left half-written" + (f"; {hint}" if hint else ""),
              EXIT_INTERRUPTED)
    except BrokenPipeError:
        _fail("", EXIT_FAILURE)
    except OSError as e:
        _fail(f"error: {describe_os_error(e)}", EXIT_FAILURE)
    except MemoryError:
        _fail("error: out of memory; use a smaller batch (token budget) or a machine with more memory",
              EXIT_FAILURE)
    except RuntimeError as e:
        if "out of memory" not in str(e).lower():
            raise
        _fail(f"error: the device ran out of memory ({str(e).splitlines()[0][:120]}); use a smaller batch "
              f"(token budget) or a larger device", EXIT_FAILURE)
    sys.exit(status or 0)


def _fail(message: str, status: int) -> NoReturn:
    if message:
        try:
            print(message, file=sys.stderr)
        except (BrokenPipeError, OSError):
            pass
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        # the reader went away (| head): nothing more can be said there, and Python must not complain at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(status)
