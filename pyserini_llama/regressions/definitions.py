"""Regression definitions: YAML files of (model, collection, stage) with commands and expected scores.

One file holds one definition, ``entries: [...]``, or a ``template`` expanded over ``each`` item's ``vars``
(``${dataset}``), as in Pyserini's 2CR files. Fields of a definition::

    name: bm25-flat.beir-scifact          # what --regression takes
    description: ...                      # one line: what runs
    reproduces: ...                       # where the expected numbers come from
    scale: small | paper
    stage: bm25 | dense | fusion | rerank
    model: bm25 | repllama | ...
    collection: beir-scifact              # name or folder: gives {corpus} and {corpus_dir}
    topics: topics-and-qrels/topics...    # a file relative to the data dir, or {collection: X, split: test}
    qrels: beir-scifact/qrels/test.tsv    # likewise
    requires: [{checkpoint: repllama}, {module: pyserini_llama.rerank, how: ...}, {index: NAME}, {file: PATH}]
    group: repllama.msmarco-passage      # definitions of one group share a work folder (a rerank reuses
                                          # the first stage's output)
    commands:                             # strings, or {cmd: ..., creates: PATH} (skipped once PATH exists;
      - python -m pyserini.search.lucene ...  # the command writes {out}, renamed to PATH when it succeeds)
    run: "{work}/run.trec"                # the run file evaluated (default)
    metrics:                              # expected: null while no number has been measured yet
      nDCG@10: {expected: 0.6789, tolerance: 0.0005}
    pending: why expected values are missing
    hardware: what it needs (e.g. one GPU, ~10 min)
    measured: {metrics: {...}, hardware: ..., seconds: ..., date: ...}   # last measured, by --record
                                          # (which also fills in expected values that are still null)
    limited:                              # optional: the quick check, expected scores of a --limit run on
      limit: 2                            # one kind of device (a --limit run is compared only with these,
      device: cpu                         # when both its limit and its device kind match; --record --limit
      metrics: {nDCG@10: {expected: 0.75, tolerance: 0.005}}   # writes the block when there is none)
      measured: {hardware: ..., seconds: ..., date: ...}
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..data.atomic import atomic_write
from ..errors import DataError, UserError
from ..paths import safe_name

PathLike = Union[str, os.PathLike]
PACKAGED = Path(__file__).resolve().parent
DEFAULT_TOLERANCE = 0.0005
STAGES = ("bm25", "dense", "fusion", "rerank")
SCALES = ("small", "paper")
FIELDS = {"name", "description", "reproduces", "scale", "stage", "model", "collection", "topics", "qrels",
          "requires", "group", "commands", "run", "metrics", "pending", "hardware", "measured", "limited"}
REQUIREMENT_KINDS = ("checkpoint", "collection", "module", "index", "file")
DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class Step:
    cmd: str
    creates: Optional[str] = None


@dataclass(frozen=True)
class MetricSpec:
    name: str
    expected: Optional[float]
    tolerance: float = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class LimitedCheck:
    """Expected scores of a ``--limit N`` run (first N topics, cut-down corpus) on one kind of device: a check
    that a CPU can afford, against numbers measured on a CPU (fp32) rather than the GPU's (bf16)."""

    limit: int
    device: str  # one of DEVICE_KINDS
    metrics: List[MetricSpec]
    measured: Optional[Dict[str, Any]] = None


def device_kind(device: str) -> str:
    """``cuda:1`` -> ``cuda``: the expected values depend on the kind of device, not on which one."""
    return device.split(":", 1)[0]


@dataclass
class Requirement:
    kind: str  # one of REQUIREMENT_KINDS
    value: str
    how: Optional[str] = None


@dataclass
class Regression:
    """One regression: run ``commands``, evaluate ``run`` against ``qrels``, compare with ``metrics``."""

    name: str
    description: str
    reproduces: str
    scale: str
    stage: str
    model: str
    topics: Union[str, Dict[str, str]]
    qrels: Union[str, Dict[str, str]]
    commands: List[Step]
    metrics: List[MetricSpec]
    collection: Optional[str] = None
    requires: List[Requirement] = field(default_factory=list)
    group: Optional[str] = None
    run: str = "{work}/run.trec"
    pending: Optional[str] = None
    hardware: Optional[str] = None
    measured: Optional[Dict[str, Any]] = None
    limited: Optional[LimitedCheck] = None
    source: Optional[Path] = None

    @property
    def has_expected(self) -> bool:
        return any(m.expected is not None for m in self.metrics)


def _parse_source(value: Any, what: str, path: Path, name: str) -> Union[str, Dict[str, str]]:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and value.get("collection") and value.get("split"):
        return {"collection": str(value["collection"]), "split": str(value["split"])}
    raise DataError(path, f"regression {name!r}: {what} must be a file relative to the data dir or "
                          f"{{collection: NAME, split: SPLIT}}")


def _parse_metrics(value: Any, path: Path, name: str) -> List[MetricSpec]:
    if not isinstance(value, dict) or not value:
        raise DataError(path, f"regression {name!r}: 'metrics' must map metric names to expected values")
    specs = []
    for metric, spec in value.items():
        if spec is None or isinstance(spec, (int, float)):
            spec = {"expected": spec}
        if not isinstance(spec, dict) or set(spec) - {"expected", "tolerance"}:
            raise DataError(path, f"regression {name!r}: metric {metric!r} must be a number or "
                                  f"{{expected, tolerance}}")
        expected, tolerance = spec.get("expected"), spec.get("tolerance", DEFAULT_TOLERANCE)
        if expected is not None and not isinstance(expected, (int, float)):
            raise DataError(path, f"regression {name!r}: metric {metric!r}: expected must be a number or null")
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not 0 <= tolerance < 1:
            raise DataError(path, f"regression {name!r}: metric {metric!r}: tolerance must be a number in [0, 1), "
                                  f"got {tolerance!r}")
        specs.append(MetricSpec(str(metric), None if expected is None else float(expected), float(tolerance)))
    return specs


def _parse_limited(value: Any, path: Path, name: str, metric_names: set) -> Optional[LimitedCheck]:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"limit", "device", "metrics", "measured"}:
        raise DataError(path, f"regression {name!r}: 'limited' must be {{limit, device, metrics, measured}}")
    limit, device = value.get("limit"), value.get("device")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0 or device not in DEVICE_KINDS:
        raise DataError(path, f"regression {name!r}: 'limited' needs a positive integer 'limit' and a 'device' "
                              f"among {', '.join(DEVICE_KINDS)}")
    metrics = _parse_metrics(value.get("metrics"), path, f"{name} (limited)")
    unknown = sorted({m.name for m in metrics} - metric_names)
    if unknown:
        raise DataError(path, f"regression {name!r}: 'limited' names metric(s) {', '.join(unknown)} that its "
                              f"'metrics' do not")
    return LimitedCheck(limit, device, metrics, value.get("measured"))


def _parse_requirements(value: Any, path: Path, name: str) -> List[Requirement]:
    requirements = []
    for item in value or []:
        kinds = [k for k in REQUIREMENT_KINDS if k in (item or {})]
        if len(kinds) != 1 or set(item) - {kinds[0], "how"}:
            raise DataError(path, f"regression {name!r}: each requirement names one of "
                                  f"{', '.join(REQUIREMENT_KINDS)} (plus an optional 'how')")
        requirements.append(Requirement(kinds[0], str(item[kinds[0]]), item.get("how")))
    return requirements


def _parse_steps(value: Any, path: Path, name: str) -> List[Step]:
    if not isinstance(value, list) or not value:
        raise DataError(path, f"regression {name!r}: 'commands' must be a non-empty list")
    steps = []
    for item in value:
        if isinstance(item, str):
            steps.append(Step(item.strip()))
        elif isinstance(item, dict) and isinstance(item.get("cmd"), str) and set(item) <= {"cmd", "creates"}:
            creates = item.get("creates")
            # an output is made, replaced and deleted by the runner: it must lie inside the work folder
            if creates is not None and (not isinstance(creates, str) or not creates.startswith("{work}/") or
                                        ".." in Path(creates).parts):
                raise DataError(path, f"regression {name!r}: creates must be a path under {{work}}/ without '..', "
                                      f"got {creates!r}")
            steps.append(Step(item["cmd"].strip(), creates))
        else:
            raise DataError(path, f"regression {name!r}: a command is a string or {{cmd, creates}}")
    return steps


def parse_regression(entry: dict, path: Path) -> Regression:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(path, "a regression without a 'name'")
    unknown = sorted(set(entry) - FIELDS)
    if unknown:
        raise DataError(path, f"regression {name!r}: unknown field(s) {', '.join(unknown)}")
    for key in ("description", "reproduces", "scale", "stage", "model", "topics", "qrels", "commands",
                "metrics"):
        if entry.get(key) in (None, "", [], {}):
            raise DataError(path, f"regression {name!r}: missing field {key!r}")
    if entry["scale"] not in SCALES or entry["stage"] not in STAGES:
        raise DataError(path, f"regression {name!r}: scale must be one of {SCALES}, stage one of {STAGES}")
    try:  # the group (else the name) names the work folder
        safe_name(entry.get("group") or name, "regression group" if entry.get("group") else "regression name")
    except UserError as e:
        raise DataError(path, f"regression {name!r}: {e}") from None
    metrics = _parse_metrics(entry["metrics"], path, name)
    return Regression(
        name=name, description=str(entry["description"]).strip(), reproduces=str(entry["reproduces"]).strip(),
        scale=entry["scale"], stage=entry["stage"], model=str(entry["model"]),
        topics=_parse_source(entry["topics"], "topics", path, name),
        qrels=_parse_source(entry["qrels"], "qrels", path, name),
        commands=_parse_steps(entry["commands"], path, name),
        metrics=metrics,
        collection=entry.get("collection"), requires=_parse_requirements(entry.get("requires"), path, name),
        group=entry.get("group"), run=entry.get("run") or "{work}/run.trec", pending=entry.get("pending"),
        hardware=entry.get("hardware"), measured=entry.get("measured"),
        limited=_parse_limited(entry.get("limited"), path, name, {m.name for m in metrics}), source=path)


def load_definitions(dirs: Optional[Sequence[PathLike]] = None) -> Dict[str, Regression]:
    """Definitions from ``dirs`` (default: the packaged ones), by name; duplicate names are an error."""
    from ..data.definitions import load_yaml_entries

    definitions: Dict[str, Regression] = {}
    for entry, path in load_yaml_entries(dirs or [PACKAGED]):
        regression = parse_regression(entry, path)
        if regression.name in definitions:
            raise DataError(path, f"regression {regression.name!r} is also defined in "
                                  f"{definitions[regression.name].source}")
        definitions[regression.name] = regression
    _check_shared_outputs(definitions.values())
    return definitions


def _check_shared_outputs(definitions) -> None:
    """A ``creates`` path shared within a group must come from one command: the first definition run makes
    it and the others reuse it, so two different commands would make the results depend on the order."""
    made: Dict[tuple, tuple] = {}
    for d in definitions:
        for step in d.commands:
            if not step.creates:
                continue
            key = (d.group or d.name, step.creates)
            cmd, first = made.setdefault(key, (step.cmd, d.name))
            if cmd != step.cmd:
                raise DataError(d.source, f"regression {d.name!r}: the step that creates {step.creates} differs "
                                          f"from regression {first!r}'s (both in work folder {key[0]!r})")


def select(definitions: Dict[str, Regression], patterns: Sequence[str]) -> List[Regression]:
    """Definitions matching names or shell patterns (``bm25-flat.*``), in the order given."""
    import fnmatch

    chosen: List[Regression] = []
    for pattern in patterns:
        matches = [d for name, d in definitions.items() if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise UserError(f"no regression named {pattern!r}; list them with "
                            f"python -m pyserini_llama.regressions --list")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def record_measured(regression: Regression, measured: Dict[str, Any]) -> None:
    """Write ``measured`` into the definition's YAML file (the item that defines it), and make its values the
    expected ones of metrics that have none yet (an existing expected value is never changed)."""
    path = regression.source
    data, target, from_template = _yaml_item(regression)
    values = measured.get("metrics") or {}
    missing = [m for m in regression.metrics if m.expected is None and m.name in values]
    if missing:
        metrics = target.setdefault("metrics", {})  # in a template's item: merged over the template's
        for m in missing:
            metrics[m.name] = {"expected": values[m.name], "tolerance": m.tolerance}
        if all(m.expected is not None or m.name in values for m in regression.metrics) and regression.pending:
            if from_template and data["template"].get("pending"):
                target["pending"] = None  # the template's note no longer applies to this item
            else:
                target.pop("pending", None)
    target["measured"] = measured
    with atomic_write(path) as f:
        f.write(dump_yaml(data))


def record_limited(regression: Regression, limit: int, device: str, measured: Dict[str, Any]) -> bool:
    """Write a ``limited`` block (``measured``'s metrics as the expected values) when the definition has none;
    an existing block is never changed. Returns whether one was written."""
    if regression.limited is not None:
        return False
    data, target, _ = _yaml_item(regression)
    values = measured.get("metrics") or {}
    target["limited"] = {
        "limit": limit, "device": device_kind(device),
        "metrics": {m.name: {"expected": values[m.name], "tolerance": m.tolerance}
                    for m in regression.metrics if m.name in values},
        "measured": {k: v for k, v in measured.items() if k != "metrics"}}
    with atomic_write(regression.source) as f:
        f.write(dump_yaml(data))
    return True


def _yaml_item(regression: Regression):
    """The definition file's data, the item that defines ``regression`` in it, and whether it is a template's."""
    import yaml

    from ..data.definitions import expand_entries

    path = regression.source
    data = yaml.safe_load(path.read_text())
    from_template = isinstance(data, dict) and "template" in data
    if from_template:
        names = [e.get("name") for e in expand_entries(data, path)]
        target = data["each"][names.index(regression.name)]
    elif isinstance(data, dict) and "entries" in data:
        target = next(e for e in data["entries"] if e.get("name") == regression.name)
    else:
        target = data
    return data, target, from_template


def dump_yaml(data: Any) -> str:
    """The one YAML style these files are written in (so --record rewrites them without noise)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=True, default_flow_style=False)
