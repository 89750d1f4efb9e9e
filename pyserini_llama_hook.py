"""Plug our encoders into the unmodified Pyserini CLIs.

Pyserini has no plugin mechanism: ``python -m pyserini.encode`` and ``pyserini.search.faiss`` pick an encoder
class from two dicts in ``pyserini.encode`` (by ``--encoder-class``, or by the first key found in the
``--encoder`` name) and restrict ``--encoder-class`` to a hard-coded ``choices`` list. The installed
``pyserini_llama.pth`` calls :func:`install`, which adds an import hook that
  * before ``pyserini`` is first imported, points the JVM at a Java >= 21 (see :mod:`pyserini_llama.java`);
  * right after ``pyserini.encode`` is imported, puts our classes at the front of both dicts (so
    ``--encoder repllama`` wins over generic keys such as ``ance``) and widens the ``--encoder-class`` choices.
This module runs at every interpreter start, so it imports nothing heavy (no torch, no pyserini), and it is a
top-level module so that the ``pyserini_llama`` package itself is imported only when needed (from the first
``pyserini_llama`` on ``sys.path``, e.g. a source checkout, not always the installed copy).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Dict

# name -> (module, query encoder class, document encoder class or None)
ENCODER_CLASSES: Dict[str, tuple] = {
    "repllama-onnx": ("pyserini_llama.encoders.onnx_adapters", "RepLlamaOnnxQueryEncoder",
                      "RepLlamaOnnxDocumentEncoder"),
    "repllama": ("pyserini_llama.encoders.pyserini_adapters", "RepLlamaQueryEncoder",
                 "RepLlamaDocumentEncoder"),
    "llara": ("pyserini_llama.encoders.llara_adapters", "LlaraQueryEncoder", "LlaraDocumentEncoder"),
}


def register_encoders(encode_module) -> None:
    """Insert our classes first into ``pyserini.encode``'s class maps (in place: other modules hold them)."""
    import importlib

    for map_name, slot in (("query_encoder_class_map", 1), ("document_encoder_class_map", 2)):
        class_map = getattr(encode_module, map_name, None)
        if class_map is None:
            continue
        ours = {}
        for name, entry in ENCODER_CLASSES.items():
            if entry[slot] is None:
                continue
            try:
                ours[name] = getattr(importlib.import_module(entry[0]), entry[slot])
            except (ImportError, AttributeError) as e:  # a broken optional part must not break pyserini
                print(f"pyserini-llama: encoder {name!r} unavailable: {e}", file=sys.stderr)
        rest = {k: v for k, v in class_map.items() if k not in ours}
        class_map.clear()
        class_map.update(ours)
        class_map.update(rest)
    _widen_encoder_class_choices()


def _widen_encoder_class_choices() -> None:
    import argparse

    container = argparse._ActionsContainer
    if getattr(container.add_argument, "_pyserini_llama", False):
        return
    original = container.add_argument

    def add_argument(self, *args, **kwargs):
        if "--encoder-class" in args and kwargs.get("choices") is not None:
            kwargs["choices"] = list(kwargs["choices"]) + [
                n for n in ENCODER_CLASSES if n not in kwargs["choices"]]
        return original(self, *args, **kwargs)

    add_argument._pyserini_llama = True  # type: ignore[attr-defined]
    container.add_argument = add_argument


class _Loader(importlib.abc.Loader):
    def __init__(self, wrapped, after):
        self._wrapped, self._after = wrapped, after

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module):
        self._wrapped.exec_module(module)
        self._after(module)

    def __getattr__(self, name):  # get_code etc., used by runpy
        return getattr(self._wrapped, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "pyserini":
            _prepare_java()
            return None
        if fullname != "pyserini.encode":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, register_encoders)
        return spec


def _prepare_java() -> None:
    """Best effort: a missing Java must not break the parts of pyserini that need none."""
    try:
        from pyserini_llama.java import ensure_java
        ensure_java()
    except Exception as e:  # noqa: BLE001
        print(f"pyserini-llama: {e}", file=sys.stderr)


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
