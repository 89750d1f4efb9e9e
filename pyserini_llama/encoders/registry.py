"""Which of our classes Pyserini's encoder maps get, and putting them there in any import order.

Pyserini picks an encoder class from ``pyserini.encode``'s ``query_encoder_class_map`` and
``document_encoder_class_map``: by ``--encoder-class``, or by the first key that is a substring of the
``--encoder`` name. :func:`register_encoders` puts ours first (so ``--encoder repllama-beir`` finds ``repllama``
before a generic key) and widens the ``--encoder-class`` choices. It runs right after ``pyserini.encode`` is
imported (from ``pyserini_llama_hook``), and at the end of each of our adapter modules
(:func:`register_when_ready`), so that importing an adapter module before ``pyserini.encode`` registers it too, without a circular import.
This module imports nothing heavy.
"""
from __future__ import annotations

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


def register_encoders(encode_module, ready: str = "") -> None:
    """Insert our classes first into ``pyserini.encode``'s class maps (in place: other modules hold them).

    Safe in any import order: a module of ours that is itself still being imported (it imported
    ``pyserini.encode``, which brought us here) is skipped, and registers itself when its body has run
    (:func:`register_when_ready` names it ``ready``).
    """
    import importlib

    for map_name, slot in (("query_encoder_class_map", 1), ("document_encoder_class_map", 2)):
        class_map = getattr(encode_module, map_name, None)
        if class_map is None:
            continue
        ours = {}
        for name, entry in ENCODER_CLASSES.items():
            if entry[slot] is None or (_importing(entry[0]) and entry[0] != ready):
                continue
            try:
                ours[name] = getattr(importlib.import_module(entry[0]), entry[slot])
            except (ImportError, AttributeError) as e:  # a broken optional part must not break pyserini
                print(f"pyserini-llama: encoder {name!r} unavailable: {e}", file=sys.stderr)
        # ours first, in our order (the more specific name first: the first substring match wins)
        merged = {k: ours.get(k, class_map.get(k)) for k in ENCODER_CLASSES if k in ours or k in class_map}
        rest = {k: v for k, v in class_map.items() if k not in merged}
        class_map.clear()
        class_map.update(merged)
        class_map.update(rest)
    _widen_encoder_class_choices()


def register_when_ready(module_name: str) -> None:
    """Called at the end of our adapter module ``module_name``: register it (and the others) unless
    ``pyserini.encode`` is still being imported (then its hook registers everything when it finishes)."""
    encode_module = sys.modules.get("pyserini.encode")
    if encode_module is not None and not _importing("pyserini.encode"):
        register_encoders(encode_module, ready=module_name)


def _importing(module_name: str) -> bool:
    """True while ``module_name``'s own import is under way (its body has not finished)."""
    module = sys.modules.get(module_name)
    spec = getattr(module, "__spec__", None)
    return module is not None and bool(getattr(spec, "_initializing", False))


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
