"""Conformance with Istio's own CRD schemas (tests/oracle/istio-crds.yaml, the test oracle).

For every kind and served version: the model knows every field the schema defines (same JSON
names, same types, same enums, same oneOf groups, same required fields), and the decoder rejects
what the schema rejects — a value of the wrong type, a value outside an enum, an unknown field —
at the right field path. The schema is a verbatim copy
(tests/oracle/README.md names its source), read here, never copied into the product.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
import yaml

from pilotfish.config.decode import Decoder, IntRange, JsonValue, format_path, message_fields
from pilotfish.config.kinds import KINDS

CRDS = Path(__file__).resolve().parents[2] / "oracle" / "istio-crds.yaml"


@cache
def crds() -> list[dict[str, Any]]:
    assert CRDS.exists(), f"the test oracle {CRDS} is missing (it is part of the repository)"
    return [d for d in yaml.safe_load_all(CRDS.read_text()) if d]


def served_versions() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for crd in crds():
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                out.append((crd["spec"]["names"]["kind"], version["name"], spec))
    return out


VERSIONS = served_versions()
IDS = [f"{k}-{v}" for k, v, _ in VERSIONS]


# ---- walking the model's type hints alongside the schema ----------------------------------------


SCALARS: dict[str, type] = {"number": float, "boolean": bool}


def unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def oneof_groups(schema: dict[str, Any]) -> list[frozenset[str]]:
    alternatives = [schema["oneOf"]] if "oneOf" in schema else []
    alternatives += [part["oneOf"] for part in schema.get("allOf", []) if "oneOf" in part]
    groups = []
    for alts in alternatives:
        names = {name for alt in alts for name in alt.get("required", [])}
        groups.append(frozenset(names))
    return groups


def is_duration(schema: dict[str, Any]) -> bool:
    return any(
        "duration(self)" in rule.get("rule", "") for rule in schema.get("x-kubernetes-validations", [])
    )


def mismatches(schema: dict[str, Any], tp: Any, path: tuple[str | int, ...]) -> Iterator[str]:
    """Every way the model type ``tp`` differs from the schema node (empty when they agree)."""
    where = format_path(path)
    tp = unwrap_optional(tp)
    if tp is JsonValue:
        return
    stype = schema.get("type")
    if "properties" in schema or (stype == "object" and "additionalProperties" not in schema):
        if not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            yield f"{where}: schema has an object, model has {tp!r}"
            return
        yield from message_mismatches(schema, tp, path)
    elif stype == "object":
        if get_origin(tp) not in (Mapping, dict, typing.Mapping):
            yield f"{where}: schema has a map, model has {tp!r}"
            return
        yield from mismatches(schema["additionalProperties"], get_args(tp)[1], (*path, "key"))
    elif stype == "array":
        if get_origin(tp) is not tuple:
            yield f"{where}: schema has an array, model has {tp!r}"
            return
        yield from mismatches(schema["items"], get_args(tp)[0], (*path, 0))
    elif "enum" in schema:
        if get_origin(tp) is not Literal or set(get_args(tp)) != set(schema["enum"]):
            yield f"{where}: schema enum {schema['enum']}, model has {tp!r}"
    elif stype == "string":
        want = timedelta if is_duration(schema) else str
        if tp is not want:
            yield f"{where}: schema has a {'duration' if want is timedelta else 'string'}, model has {tp!r}"
    elif stype == "integer":
        yield from integer_mismatches(schema, tp, where)
    elif stype in SCALARS and tp is not SCALARS[stype]:
        yield f"{where}: schema has a {stype}, model has {tp!r}"


def integer_mismatches(schema: dict[str, Any], tp: Any, where: str) -> Iterator[str]:
    fmt = schema.get("format")
    if get_origin(tp) is Annotated:
        rng = next(m for m in get_args(tp)[1:] if isinstance(m, IntRange))
        expected = fmt or (
            "uint32" if schema.get("maximum") == 4294967295 and schema.get("minimum") == 0 else None
        )
        if expected and rng.name != expected:
            yield f"{where}: schema format {expected}, model {rng.name}"
    elif tp is not int:
        yield f"{where}: schema has an integer, model has {tp!r}"
    elif fmt in ("int32", "uint32"):
        yield f"{where}: schema format {fmt}, model has plain int"


def message_mismatches(schema: dict[str, Any], cls: type, path: tuple[str | int, ...]) -> Iterator[str]:
    where = format_path(path) or "spec"
    props = schema.get("properties", {})
    # A field may be known under several spellings (RequestAuthentication's schema lists both
    # jwksUri and jwks_uri); key each field by the spelling the schema uses.
    fields = {}
    for f in message_fields(cls):
        spelled = [s for s in f.spellings if s in props]
        for name in spelled or [f.json]:
            fields[name] = f
    for name in sorted(set(props) - set(fields)):
        yield f"{where}.{name}: in the schema, unknown to the model {cls.__name__}"
    for name in sorted(set(fields) - set(props)):
        yield f"{where}.{name}: in the model {cls.__name__}, not in the schema"
    for name in sorted(
        set(schema.get("required", [])) ^ {n for n, f in fields.items() if f.required and n in props}
    ):
        yield f"{where}.{name}: required in one of schema/model only"
    model_groups = {frozenset(g) for g in getattr(cls, "ONEOFS", ())}
    for group in oneof_groups(schema):
        if group not in model_groups:
            yield f"{where}: schema oneOf {sorted(group)} missing from {cls.__name__}.ONEOFS"
    for name in sorted(set(props) & set(fields)):
        yield from mismatches(props[name], fields[name].type, (*path, name))


@pytest.mark.parametrize(("kind", "version", "schema"), VERSIONS, ids=IDS)
def test_model_knows_every_schema_field(kind: str, version: str, schema: dict[str, Any]) -> None:
    info = KINDS.get(kind)
    assert info is not None, f"{kind} is not in the model"
    assert version in info.versions
    problems = list(message_mismatches(schema, info.spec, ()))
    assert not problems, "\n".join(problems)


# ---- the decoder rejects what the schema rejects ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leaf:
    path: tuple[str | int, ...]  # JSON path under spec; ints are list indexes, "k" is a map key
    schema: dict[str, Any]


def leaves(schema: dict[str, Any], path: tuple[str | int, ...] = ()) -> Iterator[Leaf]:
    yield Leaf(path, schema)
    for name, sub in schema.get("properties", {}).items():
        yield from leaves(sub, (*path, name))
    if "items" in schema:
        yield from leaves(schema["items"], (*path, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from leaves(schema["additionalProperties"], (*path, "k"))


def nest(path: tuple[str | int, ...], value: Any) -> Any:
    for seg in reversed(path):
        value = [value] if isinstance(seg, int) else {seg: value}
    return value


def wrong_value(schema: dict[str, Any]) -> Any:
    """A value of the wrong JSON type for this schema node."""
    stype = schema.get("type")
    if "enum" in schema:
        return "NOT_A_MEMBER_OF_THE_ENUM"
    return {
        "string": 12,
        "integer": "twelve",
        "number": "twelve",
        "boolean": "yes",
        "array": "x",
        "object": "x",
    }.get(stype, 12)


def canonical_paths(kind: str, path: tuple[str | int, ...]) -> set[str]:
    """The path as the decoder reports it: each key in the field's canonical JSON spelling."""
    tp: Any = KINDS[kind].spec
    out: list[str | int] = ["spec"]
    for seg in path:
        tp = unwrap_optional(tp)
        if isinstance(seg, str) and dataclasses.is_dataclass(tp):
            spec = next((f for f in message_fields(tp) if seg in f.spellings), None)
            if spec is None:
                return set()
            out.append(spec.json)
            tp = spec.type
        else:
            out.append(seg)
            args = get_args(tp)
            tp = (args[0] if get_origin(tp) is tuple else args[-1]) if args else Any
    return {format_path(out)}


def decode_problems(kind: str, spec: Any) -> list[tuple[str, str]]:
    decoder = Decoder()
    decoder.decode(KINDS[kind].spec, spec, ("spec",), 1)
    return [(p.path, p.message) for p in decoder.problems]


def sample_leaves() -> list[tuple[str, str, Leaf]]:
    out = []
    for kind, version, schema in VERSIONS:
        for leaf in leaves(schema):
            if leaf.path and not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append((kind, version, leaf))
    return out


LEAVES = sample_leaves()
LEAF_IDS = [f"{k}-{v}-{format_path(leaf.path)}" for k, v, leaf in LEAVES]


@pytest.mark.parametrize(("kind", "version", "leaf"), LEAVES, ids=LEAF_IDS)
def test_wrong_type_enum_and_unknown_fields_are_rejected_at_their_path(
    kind: str, version: str, leaf: Leaf
) -> None:
    assert kind in KINDS, f"{kind} is not in the model"
    want = format_path(("spec", *leaf.path))
    problems = decode_problems(kind, nest(leaf.path, wrong_value(leaf.schema)))
    accepted = {want, *canonical_paths(kind, leaf.path)}
    assert any(path in accepted for path, _ in problems), f"wrong value at {want} accepted: {problems}"
    if "properties" in leaf.schema:
        problems = decode_problems(kind, nest((*leaf.path, "noSuchField"), 1))
        assert (f"{want}.noSuchField", "unknown field") in problems, problems


def test_unknown_top_level_spec_field_is_rejected() -> None:
    for kind, _, _ in VERSIONS:
        assert ("spec.noSuchField", "unknown field") in decode_problems(kind, {"noSuchField": 1})
