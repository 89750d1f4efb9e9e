"""Recipes per collection: built-in names carry the lengths and layout the published numbers were made with,
Pyserini's name matching reaches them, the BEIR regressions use them, and the docs say the same."""
from __future__ import annotations

import pytest

from conftest import REPO
from pyserini_llama.models.presets import BUILTIN, find_builtin

DENSE = [name for name, entry in BUILTIN.items() if entry.config.kind in ("repllama", "llara")]


def test_one_checkpoint_two_recipes():
    marco, beir = BUILTIN["repllama"], BUILTIN["repllama-beir"]
    assert marco.path == beir.path == "castorini/repllama-v1-7b-lora-passage"
    assert (marco.config.query_max_length, marco.config.passage_max_length) == (32, 196)
    assert (beir.config.query_max_length, beir.config.passage_max_length) == (512, 512)
    assert find_builtin("castorini/repllama-v1-7b-lora-passage") == "repllama"  # a hub id: the first recipe
    assert BUILTIN["llara"].config.max_length_scope == BUILTIN["llara-beir"].config.max_length_scope == "text"


def test_pyserini_name_matching_picks_our_class_for_every_name():
    """Pyserini takes the first class-map key found in the lower-cased --encoder name."""
    pe = pytest.importorskip("pyserini.encode")
    import pyserini_llama.encoders.llara_adapters  # noqa: F401 - registers, whatever the import order
    import pyserini_llama.encoders.pyserini_adapters  # noqa: F401

    for name in DENSE:
        kind = BUILTIN[name].config.kind
        for class_map in (pe.query_encoder_class_map, pe.document_encoder_class_map):
            key = next(k for k in class_map if k in name.lower())
            assert key == kind and class_map[key].__module__.startswith("pyserini_llama."), (name, key)


def test_beir_regressions_use_the_beir_recipe():
    from pyserini_llama.regressions.definitions import load_definitions

    beir = [r for name, r in load_definitions().items() if ".beir-v1.0.0-" in name and r.model != "bm25"]
    assert beir
    for regression in beir:
        encoders = [c.cmd.split("--encoder ")[1].split()[0] for c in regression.commands if "--encoder " in c.cmd]
        assert encoders and set(encoders) == {"repllama-beir"}, regression.name
        assert any(q.kind == "checkpoint" and q.value == "repllama-beir" for q in regression.requires)


def test_docs_list_every_recipe_as_presets_define_it():
    text = (REPO / "docs" / "repllama.md").read_text()
    for name, entry in BUILTIN.items():
        c = entry.config
        lengths = f"{c.query_max_length} / {c.passage_max_length}"
        row = f"| `{name}` | `{entry.path}` | {lengths}"
        assert row in text, row
        if c.kind != "llara":
            assert f"{row} | {c.input_layout} |" in text, name
