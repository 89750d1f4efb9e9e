"""Prebuilt indexes by name: ``resolve_index("beir-v1.0.0-scifact.flat")`` works wherever an index path does.

See :mod:`pyserini_llama.prebuilt_indexes.registry`; CLI: ``python -m pyserini_llama.prebuilt_indexes --list``.
"""
from .registry import (IndexDescriptor, build_index_from_recipe, fetch_index, index_cache_dir, load_registry,
                       register_recipe, resolve_index)

__all__ = ["IndexDescriptor", "build_index_from_recipe", "fetch_index", "index_cache_dir", "load_registry",
           "register_recipe", "resolve_index"]
