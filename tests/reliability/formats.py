"""Every input format the commands read, as data: how to write a good file, and the ways users' files go wrong.

A :class:`Mutation` turns the good input (already written at ``path``) into a bad one and says what must happen:
``error`` (exit 2; the last line matches ``message``, where ``{path}`` stands for the input's path and ``{tmp}``
for the case's folder; the command stops before it loads a model unless ``late``), ``same`` (the ecosystem reads
this: the command succeeds and its result equals the clean input's), or ``ok`` (it succeeds). Adding a format or
a mutation here adds a case to every command that reads that format.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import world as W

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Mutation:
    name: str
    klass: str  # bad-encoding | bad-shape | ecosystem
    apply: Callable[[Path, "W.World"], None]
    expect: str  # error | same | ok
    message: str = ""  # regex, {path} = re.escape(str(path))
    late: bool = False  # the error may come after a model is loaded (it depends on the model)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _joined(lines: List[str], sep: str = "\n") -> bytes:
    return "".join(line + sep for line in lines).encode("utf-8")


def text_mutations(good: Callable[[], List[str]], bad_lines: Dict[str, tuple], extra: List[Mutation] = (),
                   empty: str = "") -> List[Mutation]:
    """The mutations every line-based format gets, plus its own bad lines (name -> (line, regex)).

    Bad lines replace the second line; ``last-line-<name>`` puts the first of them on the last line, which a
    command must find before it starts the work (a full validation pass takes a second)."""
    def replace(index_of: Callable[[List[str]], int], line: str):
        def apply(path: Path, w) -> None:
            lines = good()
            lines[index_of(lines)] = line
            _write(path, _joined(lines))
        return apply

    def bad_byte(path: Path, w) -> None:
        lines = [line.encode("utf-8") for line in good()]
        lines[1] = lines[1][:3] + b"\xff" + lines[1][3:]
        _write(path, b"".join(line + b"\n" for line in lines))

    out = [Mutation("invalid-utf8", "bad-encoding", bad_byte, "error", r"{path}:2: not valid UTF-8"),
           Mutation("utf8-bom", "ecosystem", lambda p, w: _write(p, BOM + _joined(good())), "same"),
           Mutation("crlf-line-ends", "ecosystem", lambda p, w: _write(p, _joined(good(), "\r\n")), "same"),
           Mutation("empty-file", "bad-shape", lambda p, w: _write(p, b""), "error", r"{path}: " + empty)]
    for name, (line, message) in bad_lines.items():
        out.append(Mutation(name, "bad-shape", replace(lambda lines: 1, line), "error", r"{path}:2: " + message))
    name, (line, message) = next(iter(bad_lines.items()))
    out.append(Mutation(f"last-line-{name}", "bad-shape", replace(lambda lines: len(lines) - 1, line), "error",
                        r"{path}:%d: " % len(good()) + message))
    return out + list(extra)


def _append(line: str):
    def apply(path: Path, w) -> None:
        path.write_bytes(path.read_bytes() + line.encode("utf-8") + b"\n")
    return apply


def _each_line(suffix: str, good: Callable[[], List[str]]):
    return lambda path, w: _write(path, _joined([line + suffix for line in good()]))


TEXT: Dict[str, tuple] = {
    # kind: (file name, good lines, bad lines, extra mutations, what an empty file is called)
    "corpus": ("corpus.jsonl", W.corpus_lines, {
        "malformed-json": ('{"_id": "d2", "text": "unterminated', r"malformed JSON"),
        "missing-text-field": ('{"_id": "d2", "body": "text under another name"}', r"missing field 'text'"),
        "text-not-a-string": ('{"_id": "d2", "text": 5}', r"field 'text' must be a string"),
        "not-an-object": ('["d2", "a list"]', r"expected a JSON object"),
        "id-with-space": ('{"_id": "d 2", "title": "", "text": "x"}', r"field '_id' 'd 2' contains whitespace"),
        "no-id-field": ('{"doc": "d2", "text": "x"}', r"missing id field"),
        "duplicate-id": ('{"_id": "d1", "title": "", "text": "again"}', r"duplicate document id 'd1'"),
    }, [], r"corpus is empty"),
    "queries": ("queries.jsonl", W.queries_lines, {
        "malformed-json": ('{"_id": "q2", "text": ', r"malformed JSON"),
        "no-text": ('{"_id": "q2"}', r"query 'q2' has no text"),
        "id-with-tab": ('{"_id": "q\\t2", "text": "x"}', r"field '_id' 'q\\t2' contains whitespace"),
        "duplicate-id": ('{"_id": "q1", "text": "again"}', r"duplicate query id 'q1'"),
    }, [], r"no queries"),
    "topics": ("topics.tsv", W.topics_lines, {
        "no-tab": ("q2 cancer gene expression", r"expected 'qid<TAB>query text'"),
        "id-with-space": ("q 2\tcancer gene expression", r"query id 'q 2' contains whitespace"),
        "empty-text": ("q2\t ", r"empty query id or text"),
        "duplicate-id": ("q1\tagain", r"duplicate query id 'q1'"),
    }, [Mutation("extra-columns", "ecosystem", _each_line("\tignored column", W.topics_lines), "same")],
        r"no topics"),
    "run": ("run.trec", W.run_lines, {
        "five-columns": ("q1 Q0 d2 2 2.0", r"expected 6 columns \(TREC\) or 3 columns \(MS MARCO\), got 5"),
        "score-not-a-number": ("q1 Q0 d2 2 high toy", r"score 'high' is not a number"),
        "nan-score": ("q1 Q0 d2 2 nan toy", r"score is NaN"),
        "duplicate-hit": ("q1 Q0 d1 2 2.0 toy", r"document 'd1' listed twice for query 'q1'"),
    }, [], r"run is empty"),
    "qrels-train": ("qrels-train.tsv", lambda: W.beir_qrels_lines(W.TRAIN_QRELS), {
        "two-columns": ("q1\td1", r"expected 3 columns"),
        "fractional-grade": ("q1\td1\t0.5", r"relevance '0.5' is not an integer grade"),
        "grade-not-a-number": ("q1\td1\tyes", r"relevance 'yes' is not a number"),
        "id-with-space": ("q 1\td1\t1", r"query id 'q 1' contains whitespace"),
    }, [Mutation("negative-grade", "ecosystem", _append("q1\td6\t-1"), "ok")], r"qrels file has no judgments"),
    "qrels-test": ("test.tsv", lambda: W.beir_qrels_lines(W.TEST_QRELS), {
        "two-columns": ("q3\td3", r"expected 3 columns"),
        "fractional-grade": ("q3\td3\t0.5", r"relevance '0.5' is not an integer grade"),
        "grade-not-a-number": ("q3\td3\tyes", r"relevance 'yes' is not a number"),
    }, [Mutation("negative-grade", "ecosystem", _append("q3\td5\t-1"), "ok"),
        Mutation("query-not-in-topics", "bad-shape", _append("q99\td4\t1"), "error",
                 r"{path}: 1 judged queries are not in the topics \(e\.g\. 'q99'\)")], r"qrels file has no judgments"),
    "qrels-trec": ("qrels.txt", lambda: W.trec_qrels_lines(W.TEST_QRELS), {
        "three-columns": ("q3 0 d3", r"expected 4 columns"),
        "fractional-grade": ("q3 0 d3 0.5", r"relevance '0.5' is not an integer grade"),
        "grade-not-a-number": ("q3 0 d3 high", r"relevance 'high' is not a number"),
    }, [Mutation("negative-grade", "ecosystem", _append("q3 0 d5 -1"), "ok")], r"qrels file has no judgments"),
    "negatives": ("negatives.jsonl", W.negatives_lines, {
        "unknown-document": ('{"query_id": "q2", "negatives": ["d404"]}',
                             r"negative 'd404' of query 'q2' is not in the corpus"),
        "malformed-json": ('{"query_id": "q2", ', r"malformed JSON"),
        "negatives-not-a-list": ('{"query_id": "q2", "negatives": "d4"}', r"expected"),
    }, [], r""),
}


def text_kind_mutations(kind: str) -> List[Mutation]:
    _, good, bad, extra, empty = TEXT[kind]
    return text_mutations(good, bad, extra, empty)


def write_text_kind(kind: str, path: Path) -> Path:
    return W.write_lines(path, TEXT[kind][1]())


# --- folders: checkpoints, dense indexes, YAML definition folders --------------------------------------------

def _copy_from(source: Callable[["W.World"], Path]):
    def fresh(path: Path, w) -> None:
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(source(w), path)
    return fresh


def _json_file(name: str, content, source):
    def apply(path: Path, w) -> None:
        _copy_from(source)(path, w)
        data = content if isinstance(content, (bytes, str)) else json.dumps(content(json.loads(
            (path / name).read_text())) if callable(content) else content)
        (path / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return apply


def _updated(**changes):
    return lambda data: {**data, **changes}


def _without(*keys):
    return lambda data: {k: v for k, v in data.items() if k not in keys}


def _delete(name: str, source):
    def apply(path: Path, w) -> None:
        _copy_from(source)(path, w)
        (path / name).unlink()
    return apply


def _truncate(name: str, keep: int, source):
    def apply(path: Path, w) -> None:
        _copy_from(source)(path, w)
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[:keep] if keep >= 0 else data[:keep])
    return apply


CONFIG = "pyserini_llama.json"
ADAPTER = "adapter_config.json"


def checkpoint_mutations(source: Callable[["W.World"], Path], adapter: Callable[["W.World"], Path]) -> List[Mutation]:
    """A checkpoint folder gone wrong: ``source`` is the good full model, ``adapter`` a good LoRA adapter over it.
    Errors in the weights or an adapter's peft fields come after the base model loads (``late``)."""
    def with_bom(path: Path, w) -> None:
        _copy_from(source)(path, w)
        (path / CONFIG).write_bytes(BOM + (path / CONFIG).read_bytes())

    return [
        Mutation("no-config-json", "bad-shape", _delete("config.json", source), "error", r"{path}: not a checkpoint"),
        Mutation("config-field-of-wrong-type", "bad-shape", _json_file(CONFIG, _updated(query_max_length="16"),
                                                                       source),
                 "error", r"{path}/pyserini_llama\.json: query_max_length must be an integer"),
        Mutation("config-out-of-range", "bad-shape", _json_file(CONFIG, _updated(passage_max_length=0), source),
                 "error", r"{path}/pyserini_llama\.json: passage_max_length must be at least 1"),
        Mutation("config-garbled", "bad-shape", _json_file(CONFIG, '{"kind": ', source), "error",
                 r"{path}/pyserini_llama\.json:1: malformed JSON"),
        Mutation("config-not-an-object", "bad-shape", _json_file(CONFIG, "[1, 2]", source), "error",
                 r"{path}/pyserini_llama\.json: expected a JSON object"),
        Mutation("config-invalid-utf8", "bad-encoding", _json_file(CONFIG, b'{"kind": "rep\xffllama"}', source),
                 "error", r"{path}/pyserini_llama\.json: .*UTF-8"),
        Mutation("config-with-bom", "ecosystem", with_bom, "same"),
        Mutation("weights-truncated", "bad-shape", _truncate("model.safetensors", 1000, source), "error",
                 r"{path}: cannot load the model", late=True),
        Mutation("adapter-config-garbled", "bad-shape", _json_file(ADAPTER, '{"peft_type": ', adapter), "error",
                 r"{path}/adapter_config\.json:1: malformed JSON"),
        Mutation("adapter-config-not-an-object", "bad-shape", _json_file(ADAPTER, "[]", adapter), "error",
                 r"{path}/adapter_config\.json: expected a JSON object"),
        Mutation("adapter-config-field-of-wrong-type", "bad-shape", _json_file(ADAPTER, _updated(r="four"), adapter),
                 "error", r"{path}/adapter_config\.json: .*\br\b", late=True),
        Mutation("adapter-config-without-base", "bad-shape",
                 lambda p, w: (_json_file(ADAPTER, _without("base_model_name_or_path"), adapter)(p, w),
                               (p / CONFIG).unlink()),
                 "error", r"{path}/adapter_config\.json: no base_model_name_or_path"),
        Mutation("adapter-config-invalid-utf8", "bad-encoding", _json_file(ADAPTER, b'{"r": "\xff"}', adapter),
                 "error", r"{path}/adapter_config\.json: .*UTF-8"),
        Mutation("adapter-for-another-base", "bad-shape", _rebased(adapter), "error",
                 r"{path}: adapter does not fit base model .*other-base", late=True),
    ]


def _rebased(adapter: Callable[["W.World"], Path]):
    """The adapter, its config naming a base of another size (the world's hidden-32 model)."""
    def apply(path: Path, w) -> None:
        _copy_from(adapter)(path, w)
        data = json.loads((path / ADAPTER).read_text())
        (path / ADAPTER).write_text(json.dumps({**data, "base_model_name_or_path": str(w.other_base)}))
    return apply


def _index(mutate: Callable[[Path], None]):
    def apply(path: Path, w) -> None:
        _copy_from(lambda w: w.index)(path, w)
        mutate(path)
    return apply


def _docids(transform):
    def mutate(path: Path) -> None:
        (path / "docid").write_bytes(transform((path / "docid").read_bytes()))
    return mutate


def _info(content: str):
    def mutate(path: Path) -> None:
        (path / "index_info.json").write_text(content)
    return mutate


def _info_update(**changes):
    def mutate(path: Path) -> None:
        info = json.loads((path / "index_info.json").read_text())
        info.update(changes)
        (path / "index_info.json").write_text(json.dumps(info))
    return mutate


def _truncate_index(path: Path) -> None:
    data = (path / "index").read_bytes()
    (path / "index").write_bytes(data[:-12])


DENSE_INDEX = [
    Mutation("index-truncated", "bad-shape", _index(_truncate_index), "error", r"{path}/index: .*truncated"),
    Mutation("nan-vector", "bad-shape", lambda p, w: (shutil.rmtree(p, ignore_errors=True), W.nan_index(w.index, p)),
             "error", r"{path}.*(NaN|non-finite)"),
    Mutation("info-garbled", "bad-shape", _index(_info('{"dimension": ')), "error",
             r"{path}/index_info\.json: garbled index info"),
    Mutation("info-not-an-object", "bad-shape", _index(_info("[64]")), "error",
             r"{path}/index_info\.json: garbled index info"),
    Mutation("info-encoder-of-wrong-type", "bad-shape", _index(_info_update(encoder=5)), "error",
             r"{path}/index_info\.json: .*encoder"),
    Mutation("info-invalid-utf8", "bad-encoding", _index(lambda p: (p / "index_info.json").write_bytes(
        b'{"encoder": "\xff"}')), "error", r"{path}/index_info\.json: .*(UTF-8|utf-8)"),
    Mutation("docid-line-missing", "bad-shape", _index(_docids(lambda b: b"".join(b.splitlines(True)[:-1]))),
             "error", r"{path}: index has 6 vectors but docid has 5 lines"),
    Mutation("docid-with-space", "bad-shape", _index(_docids(lambda b: b.replace(b"d2\n", b"d 2\n"))), "error",
             r"{path}/docid:2: .*whitespace"),
    Mutation("docid-invalid-utf8", "bad-encoding", _index(_docids(lambda b: b.replace(b"d2\n", b"d\xff2\n"))),
             "error", r"{path}/docid:2: not valid UTF-8"),
    Mutation("docid-with-bom", "ecosystem", _index(_docids(lambda b: BOM + b)), "same"),
    Mutation("not-an-index", "bad-shape", lambda p, w: p.mkdir(parents=True, exist_ok=True), "error",
             r"{path}"),
    Mutation("other-dimension", "bad-shape", lambda p, w: _copy_from(lambda w: w.index32)(p, w), "error",
             r"{path}: the index holds 32-dimensional vectors but the query encoder makes 64", late=True),
]


def _yaml_file(name: str, make: Callable[[Path, "W.World"], object], raw: Optional[bytes] = None):
    def apply(path: Path, w) -> None:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        import yaml

        (path / name).write_bytes(raw if raw is not None else yaml.safe_dump(make(path, w)).encode("utf-8"))
    return apply


def registry_mutations(good: Callable[[Path, "W.World"], dict]) -> List[Mutation]:
    f = "test.yaml"

    def entry(**changes):
        def make(path, w):
            data = good(path, w)
            data["entries"][0].update(changes)
            return data
        return make

    def with_victim(name: Callable[[Path], str]):
        """The entry's name points at a folder holding someone's data (made here, so the case checks it is
        left unchanged)."""
        def apply(path: Path, w) -> None:
            victim = path.parent.parent / "out" / "victim"
            victim.mkdir(parents=True, exist_ok=True)
            (victim / "precious.txt").write_text("someone's data\n")
            _yaml_file(f, entry(name=name(victim)))(path, w)
        return apply

    import yaml

    return [
        Mutation("invalid-yaml", "bad-shape", _yaml_file(f, None, b"entries: [unclosed\n"), "error",
                 r"{path}/test\.yaml(:\d+)?: invalid YAML"),
        Mutation("top-level-list", "bad-shape", _yaml_file(f, None, b"- 1\n- 2\n"), "error",
                 r"{path}/test\.yaml: expected a mapping"),
        Mutation("entries-not-a-list", "bad-shape", _yaml_file(f, None, b"entries: 5\n"), "error",
                 r"{path}/test\.yaml: 'entries' must be a list"),
        Mutation("entry-not-a-mapping", "bad-shape", _yaml_file(f, None, b"entries: [5]\n"), "error",
                 r"{path}/test\.yaml: expected each index entry to be a mapping"),
        Mutation("name-climbs-out", "bad-shape", with_victim(lambda v: "../../victim"), "error",
                 r"{path}/test\.yaml: index name '\.\./\.\./victim' cannot name a folder"),
        Mutation("name-is-absolute", "bad-shape", with_victim(str), "error",
                 r"{path}/test\.yaml: index name '{tmp}/out/victim' cannot name a folder"),
        Mutation("field-of-wrong-type", "bad-shape", _yaml_file(f, entry(dimension="64")), "error",
                 r"{path}/test\.yaml: index 'toy\.dense': field 'dimension' must be int"),
        Mutation("unknown-field", "bad-shape", _yaml_file(f, entry(colour="red")), "error",
                 r"{path}/test\.yaml: index 'toy\.dense': unknown field\(s\) colour"),
        Mutation("recipe-option-of-wrong-type", "bad-shape", _yaml_file(f, entry(recipe=dict(
            kind="dense", max_length="long"))), "error", r"{path}/test\.yaml: index 'toy\.dense': .*max_length"),
        Mutation("invalid-utf8", "bad-encoding", _yaml_file(f, None, b"entries:\n- name: caf\xe9\n"), "error",
                 r"{path}/test\.yaml(:\d+)?: not valid UTF-8"),
        Mutation("utf8-bom", "ecosystem", lambda p, w: (p.mkdir(parents=True, exist_ok=True), (p / f).write_bytes(
            BOM + yaml.safe_dump(good(p, w)).encode())), "same"),
    ]


def regression_mutations(good: Callable[[Path, "W.World"], dict]) -> List[Mutation]:
    f = "toy.yaml"

    def changed(**changes):
        def make(path, w):
            data = good(path, w)
            data.update(changes)
            return {k: v for k, v in data.items() if v is not None or k not in changes}
        return make

    import yaml

    return [
        Mutation("invalid-yaml", "bad-shape", _yaml_file(f, None, b"name: [unclosed\n"), "error",
                 r"{path}/toy\.yaml(:\d+)?: invalid YAML"),
        Mutation("top-level-list", "bad-shape", _yaml_file(f, None, b"- 1\n"), "error",
                 r"{path}/toy\.yaml: expected a mapping"),
        Mutation("metrics-not-a-mapping", "bad-shape", _yaml_file(f, changed(metrics=5)), "error",
                 r"{path}/toy\.yaml: regression 'toy\.fusion': 'metrics' must map"),
        Mutation("tolerance-not-a-number", "bad-shape", _yaml_file(f, changed(
            metrics={"nDCG@10": {"expected": 0.5, "tolerance": "tight"}})), "error",
                 r"{path}/toy\.yaml: regression 'toy\.fusion': metric 'nDCG@10'.*tolerance"),
        Mutation("commands-not-a-list", "bad-shape", _yaml_file(f, changed(commands="python -m x")), "error",
                 r"{path}/toy\.yaml: regression 'toy\.fusion': 'commands' must be a non-empty list"),
        Mutation("group-climbs-out", "bad-shape", _yaml_file(f, changed(group="../../victim")), "error",
                 r"{path}/toy\.yaml: regression 'toy\.fusion': .*group '\.\./\.\./victim' cannot name a folder"),
        Mutation("creates-climbs-out", "bad-shape", _yaml_file(f, changed(commands=[
            {"cmd": "python -m pyserini_llama.convert x {out}", "creates": "{work}/../../victim"}])), "error",
                 r"{path}/toy\.yaml: regression 'toy\.fusion': .*creates"),
        Mutation("unknown-field", "bad-shape", _yaml_file(f, changed(colour="red")), "error",
                 r"{path}/toy\.yaml: regression 'toy\.fusion': unknown field\(s\) colour"),
        Mutation("invalid-utf8", "bad-encoding", _yaml_file(f, None, b"name: caf\xe9\n"), "error",
                 r"{path}/toy\.yaml(:\d+)?: not valid UTF-8"),
        Mutation("utf8-bom", "ecosystem", lambda p, w: (p.mkdir(parents=True, exist_ok=True), (p / f).write_bytes(
            BOM + yaml.safe_dump(good(p, w)).encode())), "same"),
    ]
