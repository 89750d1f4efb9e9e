"""``pyserini_llama.json``: how a checkpoint turns text into model inputs and model outputs into vectors/scores.

It sits next to the weights (as peft's ``adapter_config.json`` does), so a checkpoint folder says how to use
itself. Every field is checked for its type when read: a hand-edited file with ``"query_max_length": "32"``
is refused with the file and field named, never half-used.
"""
from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import DataError

CONFIG_NAME = "pyserini_llama.json"
KINDS = ("repllama", "rankllama", "llara")
POOLINGS = ("eos", "mean_last_k")


@dataclass
class CheckpointConfig:
    """How a checkpoint encodes; saved as JSON next to the weights."""

    kind: str = "repllama"  # repllama | rankllama | llara
    base_model: Optional[str] = None  # for adapters: the base model name or path
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    query_max_length: int = 32
    passage_max_length: int = 196
    pooling: str = "eos"  # eos: hidden state at the appended EOS | mean_last_k: llara's last-k mean
    pooling_k: int = 8
    normalize: bool = True
    append_eos: bool = True
    dtype: str = "bfloat16"
    padding_side: str = "right"
    query_suffix: str = ""
    passage_suffix: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self, where: object = "checkpoint config") -> None:
        problems = []
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not _check(value, hints[f.name]):
                problems.append(f"{f.name} must be {_type_name(hints[f.name])}, got {value!r}")
        if not problems:
            if self.kind not in KINDS:
                problems.append(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
            if self.pooling not in POOLINGS:
                problems.append(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
            if self.padding_side not in ("left", "right"):
                problems.append(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
            for name in ("query_max_length", "passage_max_length", "pooling_k"):
                if getattr(self, name) < 1:
                    problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if problems:
            raise DataError(where, "; ".join(problems))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def save(self, folder: Path) -> None:
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: object = "checkpoint config") -> "CheckpointConfig":
        if not isinstance(data, dict):
            raise DataError(where, f"expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise DataError(where, f"unknown keys {unknown}")
        config = cls.__new__(cls)
        defaults = cls()
        for f in fields(cls):
            setattr(config, f.name, data.get(f.name, getattr(defaults, f.name)))
        config.validate(where)
        return config

    @classmethod
    def load(cls, folder: Path) -> Optional["CheckpointConfig"]:
        """The folder's config, ``None`` when it has none; a malformed file is a DataError naming it."""
        path = Path(folder, CONFIG_NAME)
        if not path.is_file():
            return None
        from .load import read_json

        return cls.from_dict(read_json(path), path)


def _check(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_check(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}
    if typing.get_origin(hint) is typing.Union:
        return " or ".join(names.get(a, "null") for a in typing.get_args(hint))
    return names.get(typing.get_origin(hint) or hint, str(hint))
