"""Reproduce result tables by name: ``python -m pyserini_llama.regressions --regression NAME``.

Example::

    python -m pyserini_llama.regressions --list
    python -m pyserini_llama.regressions --regression bm25-flat.beir-scifact            # runs, compares, exit 1 on FAIL
    python -m pyserini_llama.regressions --regression 'repllama.*' --dry-run          # commands + what is missing
    python -m pyserini_llama.regressions --regression repllama-smollm2.cranfield --limit 2 --device cpu  # quick check
    python -m pyserini_llama.regressions --regression '*smollm2*' --work-dir runs/regressions --record  # one GPU
    python -m pyserini_llama.regressions --write-docs docs/regressions.md
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from ..data.atomic import atomic_write
from .. import cli
from .definitions import load_definitions, record_limited, record_measured, select
from .runner import (Options, check_requirements, command_lines, dry_run_values, format_checks, format_result,
                     run_regression)


def list_table(definitions) -> str:
    rows = [("name", "scale", "stage", "expected", "description")]
    for d in definitions.values():
        expected = ", ".join(f"{m.name}={m.expected:.4f}" for m in d.metrics if m.expected is not None)
        rows.append((d.name, d.scale, d.stage, expected or ("pending" if d.pending else "-"), d.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def dry_run(regression, options: Options) -> str:
    lines = [f"# {regression.name}: {regression.description}",
             f"# reproduces: {regression.reproduces}"]
    if regression.hardware:
        lines.append(f"# needs: {regression.hardware}")
    lines.append("# requirements:")
    lines += ["#" + line[1:] for line in format_checks(check_requirements(regression, options)).splitlines()]
    lines += command_lines(regression, dry_run_values(regression, options))
    for m in regression.metrics:
        expected = "no expected value yet" if m.expected is None else f"{m.expected:.4f} ± {m.tolerance:.4f}"
        lines.append(f"# expect {m.name}: {expected}")
    check = regression.limited
    if check is not None:
        lines.append(f"# quick check, --limit {check.limit} on {check.device}: " + ", ".join(
            f"{m.name} {m.expected:.4f} ± {m.tolerance:.4f}" for m in check.metrics if m.expected is not None))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser("python -m pyserini_llama.regressions", __doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list the regressions")
    action.add_argument("--regression", nargs="+", metavar="NAME", help="names or shell patterns to run")
    action.add_argument("--write-docs", metavar="PATH", help="write the Markdown table of all regressions")
    parser.add_argument("--definitions", nargs="+", metavar="DIR",
                        help="folders of definition YAML files (default: the packaged ones)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and requirements only")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="run only the first N topics over a cut-down corpus (scores are compared only with "
                             "a definition's quick-check values for that limit and device kind)")
    parser.add_argument("--data-dir", help="where collections, topics and qrels live (default: ../shared/ir)")
    parser.add_argument("--work-dir", type=Path, help="where indexes and runs go (default: the cache)")
    parser.add_argument("--device", help="device for encoders and rerankers (default: cuda when available)")
    parser.add_argument("--threads", type=cli.positive_int, default=2)
    parser.add_argument("--no-download", action="store_true", help="never download collections or indexes")
    parser.add_argument("--record", action="store_true",
                        help="write the measured numbers into the definition files, and make them the expected "
                             "values of metrics that have none yet; with --limit, write the quick-check values "
                             "of definitions that have none")
    parser.add_argument("--save", type=Path, metavar="JSON", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.device:
        from ..runtime import resolve_device

        resolve_device(args.device)  # --device cuda without a GPU: the same error as every command, now
    if args.save:
        from ..data.atomic import check_output_path

        check_output_path(args.save, overwrite=True)  # a results file is replaced by each run, by design

    definitions = load_definitions(args.definitions)
    if args.list:
        print(list_table(definitions))
        return 0
    if args.write_docs:
        from .docs import render

        with atomic_write(args.write_docs) as f:
            f.write(render(definitions))
        print(f"wrote {args.write_docs} ({len(definitions)} regressions)")
        return 0

    options = Options(data_dir=args.data_dir, work_root=args.work_dir, limit=args.limit, threads=args.threads,
                      device=args.device, download=not args.no_download)
    chosen = select(definitions, args.regression)
    if args.dry_run:
        print("\n\n".join(dry_run(d, options) for d in chosen))
        return 0
    results = []
    for regression in chosen:
        result = run_regression(regression, options)
        print(format_result(result), flush=True)
        if args.record and args.limit:
            if not record_limited(regression, args.limit, result.device, result.measured_block()):
                print(f"{regression.name}: quick-check values kept (--limit {regression.limited.limit} on "
                      f"{regression.limited.device}); delete them from {regression.source} to record new ones")
        elif args.record:
            record_measured(regression, result.measured_block())
        results.append(result)
    if args.save:
        with atomic_write(args.save) as f:
            json.dump({r.regression.name: dict(r.measured_block(), limit=r.limit,
                                               status={m.spec.name: m.status for m in r.metrics},
                                               commands=r.steps) for r in results}, f, indent=2)
    failed = [r.regression.name for r in results if r.failed]
    if failed:
        print(f"FAIL: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    cli.run_cli(main)
