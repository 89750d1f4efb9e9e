"""Named prebuilt indexes: descriptors in YAML, downloads verified by md5, or built locally by a recipe.

A descriptor names a collection, the model that encoded it (``bm25`` for Lucene indexes), the dimension and
dtype of dense vectors, the number of documents, and either download ``urls`` with the archive's ``md5`` and
``size``, or a ``recipe`` that builds the index locally (or both: the download is tried first by ``fetch``).
Indexes live in Pyserini's index cache (``$PYSERINI_CACHE/indexes``, default ``~/.cache/pyserini/indexes``)
as ``<name>/`` with a ``<name>.json`` manifest next to it recording where the index came from and its
checksum: the archive's md5 for downloads, a checksum over the built files for recipes.

Example::

    from pyserini_llama.prebuilt_indexes import resolve_index
    index_dir = resolve_index("beir-v1.0.0-scifact.flat")      # downloaded once, then read from the cache
    index_dir = resolve_index("indexes/my-index")              # a path is returned as it is
"""
from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from ..data.atomic import atomic_write
from ..data.definitions import load_yaml_entries
from ..errors import DataError, UserError
from ..paths import owned_path, remove_tree, safe_name

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)
PACKAGED = Path(__file__).resolve().parent
DESCRIPTOR_KEYS = {"name", "description", "type", "collection", "model", "dimension", "dtype", "documents",
                   "size", "md5", "urls", "recipe"}


@dataclass
class IndexDescriptor:
    """One named index. ``urls`` + ``md5`` to download it, or a ``recipe`` to build it (or both)."""

    name: str
    type: str  # "lucene" or "faiss"
    collection: str
    model: str
    description: str = ""
    dimension: Optional[int] = None
    dtype: Optional[str] = None
    documents: Optional[int] = None
    size: Optional[int] = None  # bytes of the compressed archive
    md5: Optional[str] = None
    urls: List[str] = field(default_factory=list)
    recipe: Optional[Dict[str, Any]] = None
    source: Optional[Path] = None  # the YAML file that defined it

    @classmethod
    def from_entry(cls, entry: dict, path: Path) -> "IndexDescriptor":
        unknown = sorted(set(entry) - DESCRIPTOR_KEYS)
        if unknown:
            raise DataError(path, f"index {entry.get('name')!r}: unknown field(s) {', '.join(unknown)}")
        for key in ("name", "type", "collection", "model"):
            if not entry.get(key):
                raise DataError(path, f"index {entry.get('name')!r}: missing field {key!r}")
        if entry.get("urls") and not entry.get("md5"):
            raise DataError(path, f"index {entry['name']!r}: download urls need an md5")
        if not entry.get("urls") and not entry.get("recipe"):
            raise DataError(path, f"index {entry['name']!r}: give download urls or a recipe")
        _check_entry_types(entry, path)
        try:
            safe_name(entry["name"], "index name")
        except UserError as e:
            raise DataError(path, str(e)) from None
        return cls(**entry, source=path)

    @property
    def sources(self) -> str:
        return "+".join(s for s, ok in (("download", self.urls), ("recipe", self.recipe)) if ok)


# the options the built-in recipes read (the dense and Lucene builders below), with their types
RECIPE_TYPES = {"kind": str, "collection": str, "checkpoint": str, "encoder": str, "dtype": str, "max_length": int,
                "max_tokens_per_batch": int, "threads": int}
ENTRY_TYPES = {"name": str, "description": str, "type": str, "collection": str, "model": str, "dimension": int,
               "dtype": str, "documents": int, "size": int, "md5": str, "urls": list, "recipe": dict}


def _check_entry_types(entry: dict, path: Path) -> None:
    for key, value in entry.items():
        expected = ENTRY_TYPES[key]
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise DataError(path, f"index {entry.get('name')!r}: field {key!r} must be {expected.__name__}, "
                                  f"got {type(value).__name__}")
    if entry.get("type") not in ("lucene", "faiss"):
        raise DataError(path, f"index {entry.get('name')!r}: type must be 'lucene' or 'faiss'")
    if not all(isinstance(u, str) for u in entry.get("urls") or []):
        raise DataError(path, f"index {entry.get('name')!r}: urls must be a list of strings")
    for key, value in (entry.get("recipe") or {}).items():
        expected = RECIPE_TYPES.get(key)  # a registered recipe kind may read options of its own
        if expected is None:
            continue
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise DataError(path, f"index {entry.get('name')!r}: recipe option {key!r} must be "
                                  f"{expected.__name__}, got {value!r}")
        if expected is int and value is not None and value < 1:
            raise DataError(path, f"index {entry.get('name')!r}: recipe option {key!r} must be at least 1, "
                                  f"got {value}")


def load_registry(extra_dirs: Sequence[PathLike] = ()) -> Dict[str, IndexDescriptor]:
    """All descriptors: the packaged ones, then those in ``extra_dirs`` (a later name replaces an earlier)."""
    registry: Dict[str, IndexDescriptor] = {}
    for entry, path in load_yaml_entries([PACKAGED, *extra_dirs]):
        if not isinstance(entry, dict):
            raise DataError(path, f"expected each index entry to be a mapping, got {type(entry).__name__}")
        descriptor = IndexDescriptor.from_entry(entry, path)
        registry[descriptor.name] = descriptor
    return registry


def index_cache_dir() -> Path:
    """Pyserini's index cache: ``$PYSERINI_CACHE/indexes``, default ``~/.cache/pyserini/indexes``."""
    base = os.environ.get("PYSERINI_CACHE") or Path.home() / ".cache" / "pyserini"
    return Path(base).expanduser() / "indexes"


def index_path(name: str) -> Path:
    return owned_path(index_cache_dir(), safe_name(name, "index name"))


def manifest_path(name: str) -> Path:
    return owned_path(index_cache_dir(), safe_name(name, "index name") + ".json")


def read_manifest(name: str) -> Optional[dict]:
    from ..data.jsonl import read_json_object

    path = manifest_path(name)
    return read_json_object(path, "index cache manifest") if path.is_file() else None


def is_cached(name: str) -> bool:
    """Finished indexes have both the folder and the manifest (written last)."""
    return index_path(name).is_dir() and manifest_path(name).exists()


def _write_manifest(descriptor: IndexDescriptor, how: str, **fields: Any) -> dict:
    described = {k: v for k, v in asdict(descriptor).items() if k not in ("source", "recipe", "urls")}
    manifest = dict(described, origin=how, created=datetime.datetime.now().isoformat(timespec="seconds"),
                    **fields)
    with atomic_write(manifest_path(descriptor.name)) as f:
        f.write(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def _discard(name: str) -> None:
    """Drop a half-finished cache entry (a folder without its manifest) before making it again; only ever
    inside the index cache, never through a link."""
    remove_tree(index_path(name), index_cache_dir())
    remove_tree(manifest_path(name), index_cache_dir())


def _clear_for_writing(name: str, overwrite: bool) -> bool:
    """False when a finished copy is cached (and may be kept); else discard leftovers and make room."""
    from ..data.atomic import check_writable_folder

    check_writable_folder(index_cache_dir())  # a cache path under a file, or read-only: said before any work
    if is_cached(name) and not overwrite:
        return False
    _discard(name)
    return True


def fetch_index(descriptor: IndexDescriptor, progress: bool = True, overwrite: bool = False) -> Path:
    """Download, verify (md5) and safely extract a descriptor's archive into the index cache."""
    from ..download import fetch_archive

    if not descriptor.urls:
        raise UserError(f"index {descriptor.name!r} has no download; build it with "
                        f"python -m pyserini_llama.prebuilt_indexes --build {descriptor.name}")
    target = index_path(descriptor.name)
    if is_cached(descriptor.name) and (read_manifest(descriptor.name) or {}).get("archive_md5") != descriptor.md5:
        overwrite = True  # the registry now names another archive: the cached one is stale
    if not _clear_for_writing(descriptor.name, overwrite):
        return target
    fetch_archive(descriptor.urls, target, md5=descriptor.md5, progress=progress)
    _write_manifest(descriptor, "download", url=descriptor.urls[0], archive_md5=descriptor.md5,
                    **_lucene_fields(descriptor, target))
    return target


def _lucene_fields(descriptor: IndexDescriptor, folder: Path) -> dict:
    """For the manifest of a Lucene index: the Lucene major versions that wrote and created it (the index cache
    is shared by every Pyserini on the machine, and Pyserini 1.x cannot read a Lucene 10 index of 2.x)."""
    if descriptor.type != "lucene":
        return {}
    from ..lucene import index_lucene_versions

    versions = index_lucene_versions(folder)
    return {"lucene_written": versions[0], "lucene_created": versions[1]} if versions else {}


def _unreadable(descriptor: IndexDescriptor) -> Optional[str]:
    """Why the installed Pyserini cannot read a cached Lucene index, else None."""
    if descriptor.type != "lucene":
        return None
    from ..lucene import unreadable_reason

    return unreadable_reason(index_path(descriptor.name))


# Recipe kinds: a function (descriptor, recipe options, corpus path, output folder, device) that builds the
# index into the output folder, which must not exist yet. Register more with register_recipe().
Recipe = Callable[[IndexDescriptor, dict, Path, Path, str], None]
RECIPES: Dict[str, Recipe] = {}


def register_recipe(kind: str, builder: Recipe) -> None:
    RECIPES[kind] = builder


def _lucene_recipe(descriptor: IndexDescriptor, options: dict, corpus: Path, output: Path, device: str) -> None:
    from ..lucene import build_lucene_index

    build_lucene_index(corpus, output, threads=int(options.get("threads", 2)))


DENSE_ENCODERS = {"repllama": ("pyserini_llama.encoders.repllama", "RepLlamaEncoder"),
                  "llara": ("pyserini_llama.encoders.llara", "LlaraEncoder")}


def _dense_recipe(descriptor: IndexDescriptor, options: dict, corpus: Path, output: Path, device: str) -> None:
    import importlib

    from ..dense.index import build_index

    kind = options.get("encoder", "repllama")
    if kind not in DENSE_ENCODERS:
        raise UserError(f"index {descriptor.name!r}: recipe encoder {kind!r} is not one of "
                        f"{', '.join(DENSE_ENCODERS)}")
    module, cls = DENSE_ENCODERS[kind]
    encoder = getattr(importlib.import_module(module), cls).from_checkpoint(
        options.get("checkpoint", descriptor.model), device=device, dtype=options.get("dtype"))
    build_index(encoder, corpus, output, max_length=options.get("max_length"),
                max_tokens_per_batch=options.get("max_tokens_per_batch"))


register_recipe("lucene", _lucene_recipe)
register_recipe("dense", _dense_recipe)


def build_index_from_recipe(descriptor: IndexDescriptor, data_dir: Optional[str] = None,
                            device: Optional[str] = None, overwrite: bool = False) -> Path:
    """Build an index locally from its recipe and record its checksum in ``<name>.json``."""
    from ..data.collections import resolve_collection
    from ..download import directory_md5

    recipe = dict(descriptor.recipe or {})
    if not recipe:
        raise UserError(f"index {descriptor.name!r} has no recipe; fetch it with "
                        f"python -m pyserini_llama.prebuilt_indexes --fetch {descriptor.name}")
    kind = recipe.pop("kind", None)
    if kind not in RECIPES:
        raise UserError(f"index {descriptor.name!r}: unknown recipe kind {kind!r} "
                        f"(known: {', '.join(sorted(RECIPES))})")
    from ..data.beir import validate_corpus
    from ..runtime import resolve_device

    # everything the recipe needs is checked before the cached copy is discarded and a model loads
    target = index_path(descriptor.name)
    device = resolve_device(device)
    folder = resolve_collection(recipe.pop("collection", descriptor.collection), data_dir)
    inputs = recipe_inputs(kind, descriptor, recipe, folder.corpus_path)
    if is_cached(descriptor.name) and not overwrite and (read_manifest(descriptor.name) or {}).get("inputs") == inputs:
        return target  # built from exactly these inputs; a cached copy made from others is built again
    validate_corpus(folder.corpus_path)
    if not _clear_for_writing(descriptor.name, True):
        return target
    RECIPES[kind](descriptor, recipe, folder.corpus_path, target, device)
    if not target.is_dir():
        raise UserError(f"index {descriptor.name!r}: recipe {kind!r} did not create {target}")
    _write_manifest(descriptor, "recipe", recipe=dict(descriptor.recipe), corpus=str(folder.corpus_path),
                    inputs=inputs, index_md5=directory_md5(target), **_lucene_fields(descriptor, target))
    return target


def recipe_inputs(kind: str, descriptor: IndexDescriptor, options: dict, corpus: Path) -> dict:
    """What a recipe's index depends on: the recipe, the corpus bytes and, for dense recipes, the model's
    weights and settings (a retrained checkpoint of the same name makes another index)."""
    from ..fingerprint import file_sha256

    inputs = {"kind": kind, "recipe": options, "corpus_sha256": file_sha256(corpus)}
    if kind == "dense":
        from ..stages import model_key

        inputs["model"] = model_key(options.get("checkpoint", descriptor.model))
    return json.loads(json.dumps(inputs, default=str))


def verify_index(name: str) -> bool:
    """Recompute a built index's checksum and compare it with its manifest (downloads: archive checked)."""
    from ..download import directory_md5

    manifest = read_manifest(name)
    if not manifest or not index_path(name).is_dir():
        raise UserError(f"index {name!r} is not in the cache ({index_cache_dir()})")
    expected = manifest.get("index_md5")
    return expected is None or directory_md5(index_path(name)) == expected


def close_names(name: str, names: Iterable[str], n: int = 5) -> List[str]:
    """Registered names that look like ``name``: containing it (``scifact``), or nearly as similar as the most
    similar one (a typo, a missing ``.flat``); BEIR's names share long prefixes, so a fixed cutoff lists many."""
    import difflib

    scored = sorted(((difflib.SequenceMatcher(None, name, m).ratio(), m) for m in names), key=lambda x: -x[0])
    best = scored[0][0] if scored else 0.0
    containing = [m for _, m in scored if name and name in m]
    similar = [m for r, m in scored if r >= max(0.6, best - 0.08) and m not in containing]
    return (containing + similar)[:n]


def unknown_index_message(name: str, names: Iterable[str]) -> str:
    """One line: ``name`` is not a folder nor a registered index, with the closest registered names."""
    close = close_names(name, names)
    hint = f"close names: {', '.join(close)}; " if close else ""
    return (f"unknown index {name!r}: no such folder and no prebuilt index of that name ({hint}list them with "
            f"python -m pyserini_llama.prebuilt_indexes --list)")


def get_descriptor(name: str, extra_dirs: Sequence[PathLike] = ()) -> IndexDescriptor:
    registry = load_registry(extra_dirs)
    if name not in registry:
        raise UserError(unknown_index_message(name, registry))
    return registry[name]


def resolve_index(name_or_path: str, download: bool = True, build: bool = False,
                  data_dir: Optional[str] = None, extra_dirs: Sequence[PathLike] = ()) -> Path:
    """An index folder for a path or a registered name: cached, else downloaded (or built, if ``build``).

    An existing path is returned as it is (what it holds is for the caller to check).
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    descriptor = get_descriptor(name_or_path, extra_dirs)
    if is_cached(descriptor.name):
        reason = _unreadable(descriptor)
        if not reason:
            return index_path(descriptor.name)
        if not (descriptor.recipe and build):
            how = (f"python -m pyserini_llama.prebuilt_indexes --build {descriptor.name} --overwrite"
                   if descriptor.recipe else "a Pyserini that reads it")
            raise UserError(f"index {descriptor.name!r} in the cache ({index_path(descriptor.name)}) cannot be "
                            f"read: {reason}; rebuild it ({how})")
        log.warning("rebuilding index %r: %s", descriptor.name, reason)
        return build_index_from_recipe(descriptor, data_dir, overwrite=True)
    if descriptor.urls and download:
        return fetch_index(descriptor)
    if descriptor.recipe and build:
        return build_index_from_recipe(descriptor, data_dir)
    how = (f"--fetch {descriptor.name}" if descriptor.urls else f"--build {descriptor.name}")
    raise UserError(f"index {descriptor.name!r} is not in the cache ({index_cache_dir()}); get it with "
                    f"python -m pyserini_llama.prebuilt_indexes {how}")
