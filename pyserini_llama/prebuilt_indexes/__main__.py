"""List, download or build named indexes: ``python -m pyserini_llama.prebuilt_indexes --list``.

Example::

    python -m pyserini_llama.prebuilt_indexes --list
    python -m pyserini_llama.prebuilt_indexes --fetch beir-v1.0.0-scifact.flat     # download + md5 + extract
    python -m pyserini_llama.prebuilt_indexes --build beir-v1.0.0-scifact.repllama-smollm2 --device cuda
"""
from __future__ import annotations

from typing import Optional, Sequence

from .. import cli
from .registry import (build_index_from_recipe, fetch_index, get_descriptor, index_cache_dir, index_path,
                       is_cached, load_registry, read_manifest, verify_index)


def _size(n: Optional[int]) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def list_table(registry) -> str:
    rows = [("name", "type", "collection", "model", "dim", "docs", "size", "source", "cached")]
    for d in registry.values():
        rows.append((d.name, d.type, d.collection, d.model, str(d.dimension or "-"),
                     f"{d.documents:,}" if d.documents else "-", _size(d.size), d.sources,
                     "yes" if is_cached(d.name) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.prebuilt_indexes", __doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list the known indexes and whether they are cached")
    action.add_argument("--fetch", metavar="NAME", help="download an index (verified by md5) into the cache")
    action.add_argument("--build", metavar="NAME", help="build an index locally from its recipe")
    action.add_argument("--verify", metavar="NAME", help="recompute a cached index's checksum")
    action.add_argument("--path", metavar="NAME", help="print the cached folder of an index")
    parser.add_argument("--registry", nargs="+", default=[], metavar="DIR",
                        help="extra folders of descriptor YAML files")
    parser.add_argument("--data-dir", help="where collections live (for --build)")
    parser.add_argument("--device", help="device for dense recipes (default: cuda when available)")
    parser.add_argument("--overwrite", action="store_true", help="fetch or build again even when cached")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.device:  # --device cuda without a GPU: the same error as every command, whatever the action
        from ..runtime import resolve_device

        resolve_device(args.device)

    if args.list:
        print(f"index cache: {index_cache_dir()}")
        print(list_table(load_registry(args.registry)))
        return 0
    if args.verify:
        ok = verify_index(args.verify)
        print(f"{args.verify}: {'checksum OK' if ok else 'checksum MISMATCH'} ({index_path(args.verify)})")
        return 0 if ok else 1
    if args.path:
        if not is_cached(args.path):
            get_descriptor(args.path, args.registry)  # an unknown name gets its own error
        print(index_path(args.path) if is_cached(args.path) else f"{args.path}: not cached")
        return 0 if is_cached(args.path) else 1
    descriptor = get_descriptor(args.fetch or args.build, args.registry)
    if args.fetch:
        path = fetch_index(descriptor, progress=not args.quiet, overwrite=args.overwrite)
    else:
        path = build_index_from_recipe(descriptor, args.data_dir, args.device, overwrite=args.overwrite)
    manifest = read_manifest(descriptor.name) or {}
    checksum = manifest.get("archive_md5") or manifest.get("index_md5")
    print(f"{descriptor.name}: {path} (md5 {checksum}, {manifest.get('origin')})")
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
