"""Plain data → frozen dataclasses, driven by the dataclasses' type hints.

Theory of operation. Each Istio message is a frozen, slotted dataclass whose fields carry their
JSON spelling (camelCase by default, derived from the attribute name; the snake_case proto name is
accepted too, as Istio's JSON parser does). ``decode(cls, data)`` walks the data and the type
hints together and either returns a fully built object or raises one ``ConfigError`` listing
*every* problem (unknown field, wrong type, value outside an enum or an integer range, bad
duration, missing required field, two members of a oneof). Downstream code trusts the objects.

Supported annotations — this table is the whole type system of the config model:

============================  ==================================================
``str`` ``bool`` ``float``    JSON scalar of that type (an int is a valid float)
``int`` / ``Int32`` ...       JSON integer (not a bool) within the type's range (``IntRange``)
``timedelta``                 Go/protobuf duration string: ``1.5s``, ``100ms``, ``1h30m``
``Literal["A", "B"]``         an enum: one of the listed strings
``tuple[X, ...]``             a JSON array of X
``Mapping[str, X]``           a JSON object with arbitrary keys (e.g. labels)
``X | None``                  optional X; YAML null means unset
``JsonValue``                 free-form JSON (protobuf Struct/Value), kept as plain data
a dataclass                   a JSON object with exactly that dataclass's fields
============================  ==================================================
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, NewType, TypeVar, get_args, get_origin

from pilotfish.config.names import snake_to_camel
from pilotfish.config.source import Node, NodeList, to_plain
from pilotfish.errors import ConfigError, Problem

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class IntRange:
    """``Annotated`` marker: the inclusive range of an integer field (protobuf int32, uint32...)."""

    lo: int
    hi: int
    name: str


Int32 = Annotated[int, IntRange(-(2**31), 2**31 - 1, "int32")]
UInt32 = Annotated[int, IntRange(0, 2**32 - 1, "uint32")]
Int64 = Annotated[int, IntRange(-(2**63), 2**63 - 1, "int64")]
UInt64 = Annotated[int, IntRange(0, 2**64 - 1, "uint64")]
JsonValue = NewType("JsonValue", object)
_INT64 = IntRange(-(2**63), 2**63 - 1, "int64")

Path = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """``("spec", "subsets", 1, "name")`` → ``spec.subsets[1].name``."""
    out = ""
    for seg in path:
        if isinstance(seg, int) or "." in seg or "/" in seg:
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else seg
    return out


def field(
    *,
    json: str | None = None,
    required: bool = False,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A dataclass field with its JSON spelling. Without a default, the field is required."""
    meta = {"json": json, "required": required, "aliases": aliases}
    if default is dataclasses.MISSING and default_factory is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """What the decoder knows of one field of a message."""

    attr: str
    json: str
    spellings: tuple[str, ...]
    type: Any
    required: bool


class Message:
    """Mixin for config messages. ``ONEOFS`` lists groups of JSON names of which at most one is set."""

    ONEOFS: ClassVar[tuple[tuple[str, ...], ...]] = ()


@cache
def message_fields(cls: type) -> tuple[FieldSpec, ...]:
    """The fields of a message class, with spellings and resolved type hints."""
    hints = typing.get_type_hints(cls, include_extras=True)
    specs = []
    for f in dataclasses.fields(cls):
        attr = f.name
        base = attr.rstrip("_")
        json = f.metadata.get("json") or snake_to_camel(base)
        spellings = tuple(dict.fromkeys((json, base, *f.metadata.get("aliases", ()))))
        required = bool(f.metadata.get("required")) or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        specs.append(FieldSpec(attr, json, spellings, hints[attr], required))
    return tuple(specs)


@cache
def _spelling_index(cls: type) -> dict[str, FieldSpec]:
    return {s: spec for spec in message_fields(cls) for s in spec.spellings}


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration (``1h30m``, ``100ms``) or protobuf JSON duration (``1.5s``).

    Istio's CRDs validate durations with CEL ``duration()``, which takes Go syntax; protobuf's
    JSON form is the ``s``-suffixed subset of it. Negative durations are rejected (none of
    Istio's duration fields allow them). Raises ``ValueError``.
    """
    s = text.strip()
    if s == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 10s, 100ms, 1h30m)")
    if not math.isfinite(total) or total > 315_576_000_000:
        raise ValueError(f"duration {text!r} out of range")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """A duration in protobuf JSON form (``1.5s``)."""
    seconds = value.total_seconds()
    return f"{seconds:g}s" if seconds != int(seconds) else f"{int(seconds)}s"


class _Invalid:
    """Marker for a value that failed to decode (its problem is already recorded)."""


INVALID: Any = _Invalid()


class Decoder:
    """Decodes one document, collecting every problem instead of stopping at the first."""

    def __init__(self, file: str = "<input>", ref: str = "") -> None:
        self.file = file
        self.ref = ref
        self.problems: list[Problem] = []

    def fail(self, path: Path, message: str, line: int) -> Any:
        self.problems.append(Problem(message, format_path(path), self.file, line, self.ref))
        return INVALID

    def decode(self, tp: Any, value: Any, path: Path, line: int) -> Any:
        line = value.line if isinstance(value, Node | NodeList) else line
        origin = get_origin(tp)
        if tp is typing.Any or tp is JsonValue:
            return to_plain(value)
        if origin is Annotated:
            base, *marks = get_args(tp)
            rng = next((m for m in marks if isinstance(m, IntRange)), _INT64)
            return self._decode_int(rng, value, path, line)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.decode_message(tp, value, path, line)
        if origin is typing.Union or origin is types.UnionType:
            return self._decode_union(tp, value, path, line)
        if origin is Literal:
            allowed = get_args(tp)
            if value in allowed and type(value) is type(allowed[0]):
                return value
            return self.fail(path, f"must be one of {', '.join(map(str, allowed))}; got {value!r}", line)
        if origin is tuple:
            return self._decode_list(get_args(tp)[0], value, path, line)
        if origin in (Mapping, dict, typing.Mapping) or tp is dict:
            return self._decode_map(get_args(tp)[1] if get_args(tp) else typing.Any, value, path, line)
        return self._decode_scalar(tp, value, path, line)

    def _decode_scalar(self, tp: Any, value: Any, path: Path, line: int) -> Any:
        if tp is str:
            if isinstance(value, str):
                return value
            return self.fail(path, f"expected a string, got {_describe(value)}", line)
        if tp is bool:
            if isinstance(value, bool):
                return value
            return self.fail(path, f"expected a boolean, got {_describe(value)}", line)
        if tp is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return self.fail(path, f"expected a number, got {_describe(value)}", line)
        if tp is int:
            return self._decode_int(_INT64, value, path, line)
        if tp is timedelta:
            if not isinstance(value, str):
                return self.fail(path, f"expected a duration string, got {_describe(value)}", line)
            try:
                return parse_duration(value)
            except ValueError as exc:
                return self.fail(path, str(exc), line)
        raise TypeError(f"config model uses an unsupported annotation {tp!r} at {format_path(path)}")

    def _decode_int(self, rng: IntRange, value: Any, path: Path, line: int) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return self.fail(path, f"expected an integer, got {_describe(value)}", line)
        if not rng.lo <= value <= rng.hi:
            return self.fail(path, f"{value} is out of range for {rng.name} [{rng.lo}, {rng.hi}]", line)
        return value

    def _decode_union(self, tp: Any, value: Any, path: Path, line: int) -> Any:
        members = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(members) < len(get_args(tp)):
            return None
        if len(members) == 1:
            return self.decode(members[0], value, path, line)
        for member in members:  # e.g. int | str: the first member that fits silently
            probe = Decoder(self.file, self.ref)
            out = probe.decode(member, value, path, line)
            if not probe.problems:
                return out
        names = " or ".join(getattr(m, "__name__", str(m)) for m in members)
        return self.fail(path, f"expected {names}, got {_describe(value)}", line)

    def _decode_list(self, item_tp: Any, value: Any, path: Path, line: int) -> Any:
        if not isinstance(value, list):
            return self.fail(path, f"expected a list, got {_describe(value)}", line)
        lines = value.item_lines if isinstance(value, NodeList) else [line] * len(value)
        out = [self.decode(item_tp, item, (*path, i), lines[i]) for i, item in enumerate(value)]
        return tuple(out)

    def _decode_map(self, value_tp: Any, value: Any, path: Path, line: int) -> Any:
        if not isinstance(value, dict):
            return self.fail(path, f"expected an object, got {_describe(value)}", line)
        out: dict[str, Any] = {}
        for key, item in value.items():
            key_line = value.key_lines.get(key, line) if isinstance(value, Node) else line
            if isinstance(key, bool | int):
                # Kubernetes converts YAML to JSON, where every key is a string: `8080:` is "8080".
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if not isinstance(key, str):
                self.fail((*path, str(key)), f"keys must be strings, got {_describe(key)}", key_line)
                continue
            out[key] = self.decode(value_tp, item, (*path, key), key_line)
        return out

    def decode_message(self, cls: Any, value: Any, path: Path, line: int) -> Any:
        if not isinstance(value, dict):
            return self.fail(path, f"expected an object, got {_describe(value)}", line)
        index = _spelling_index(cls)
        kwargs: dict[str, Any] = {}
        seen: dict[str, str] = {}
        before = len(self.problems)
        for key, item in value.items():
            key_line = value.key_lines.get(key, line) if isinstance(value, Node) else line
            spec = index.get(key) if isinstance(key, str) else None
            if spec is None:
                self.fail((*path, str(key)), "unknown field", key_line)
                continue
            if spec.attr in seen:
                self.fail((*path, str(key)), f"set twice (also as {seen[spec.attr]!r})", key_line)
                continue
            seen[spec.attr] = str(key)
            if item is None and not _accepts_none(spec.type):
                continue  # null means unset (protobuf JSON; Kubernetes prunes non-nullable nulls)
            kwargs[spec.attr] = self.decode(spec.type, item, (*path, spec.json), key_line)
        for spec in message_fields(cls):
            if spec.required and spec.attr not in kwargs:
                self.fail((*path, spec.json), "required field is missing", line)
        self._check_oneofs(cls, seen, path, line)
        if len(self.problems) > before:
            return INVALID
        return cls(**kwargs)

    def _check_oneofs(self, cls: type, seen: dict[str, str], path: Path, line: int) -> None:
        by_json = {spec.json: spec.attr for spec in message_fields(cls)}
        for group in getattr(cls, "ONEOFS", ()):
            present = [name for name in group if by_json[name] in seen]
            if len(present) > 1:
                self.fail(path, f"only one of {', '.join(group)} may be set; got {', '.join(present)}", line)


def _accepts_none(tp: Any) -> bool:
    return (get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in get_args(tp)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def decode(cls: type[T], data: Any, *, file: str = "<input>", ref: str = "", path: Path = ()) -> T:
    """Decode ``data`` into ``cls`` or raise ``ConfigError`` with every problem found."""
    decoder = Decoder(file, ref)
    line = data.line if isinstance(data, Node | NodeList) else 0
    out = decoder.decode(cls, data, path, line)
    if decoder.problems:
        raise ConfigError(decoder.problems)
    return typing.cast(T, out)
