"""No silent gaps: every field the config model accepts is translated or warned about.

The walk starts at every kind's spec type (``KINDS``) and follows every message-typed field
(through optionals, lists and maps), so a field added anywhere in the model fails here until
``pilotfish.config.coverage`` classifies it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from config_support import KindDocs

from pilotfish.config.coverage import TRANSLATED, UNSUPPORTED, UNTRANSLATED, message_key
from pilotfish.config.decode import message_fields
from pilotfish.config.kinds import KINDS


def message_types(hint: Any) -> Iterator[type]:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        yield from message_types(typing.get_args(hint)[0])
    elif origin in (typing.Union, types.UnionType, tuple, list, dict, collections.abc.Mapping):
        for arg in typing.get_args(hint):
            if arg is not Ellipsis:
                yield from message_types(arg)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        yield hint


def reachable_messages() -> dict[str, type]:
    found: dict[str, type] = {}

    def visit(cls: type) -> None:
        key = message_key(cls)
        if key in found:
            assert found[key] is cls, f"two messages share the key {key}"
            return
        found[key] = cls
        for spec in message_fields(cls):
            for inner in message_types(spec.type):
                visit(inner)

    for info in KINDS.values():
        visit(info.spec)
    return found


MESSAGES = reachable_messages()


def translated(key: str, name: str) -> bool:
    return name in TRANSLATED.get(key, frozenset())


def test_every_field_is_translated_or_listed_as_unsupported_with_a_reason() -> None:
    unclassified, both = [], []
    for key, cls in MESSAGES.items():
        for spec in message_fields(cls):
            is_translated = translated(key, spec.json)
            unsupported = UNSUPPORTED.get((key, spec.json))
            if not is_translated and unsupported is None:
                unclassified.append(f"{key}.{spec.json}")
            # a field may be both only when the gap is for some values (a predicate says which)
            if is_translated and unsupported is not None and unsupported.applies is None:
                both.append(f"{key}.{spec.json}")
    assert unclassified == [], "classify these in pilotfish.config.coverage"
    assert both == []
    assert len(MESSAGES) > 90  # the walk reached the whole model


def test_the_tables_name_only_fields_that_exist() -> None:
    fields = {(key, spec.json) for key, cls in MESSAGES.items() for spec in message_fields(cls)}
    assert set(TRANSLATED) <= set(MESSAGES)
    for key, names in TRANSLATED.items():
        assert {(key, n) for n in names} <= fields, key
    assert set(UNSUPPORTED) <= fields
    assert all(entry.reason for entry in UNSUPPORTED.values())


PROXY_PROTOCOL = "host: a\ntrafficPolicy: {proxyProtocol: {version: V1}}"
TUNNEL = (
    "host: a\nsubsets: [{name: v1, labels: {v: '1'}, "
    "trafficPolicy: {tunnel: {targetHost: h, targetPort: 1}}}]"
)
UNIX_EGRESS = "egress: [{port: {number: 0, name: s, protocol: HTTP}, bind: 'unix:///s.sock', hosts: ['*/*']}]"
IPTABLES = (
    "ingress: [{port: {number: 80, name: http, protocol: HTTP}, captureMode: IPTABLES, "
    "defaultEndpoint: '127.0.0.1:8080'}]"
)
UNIX_GATEWAY = (
    "servers: [{port: {number: 0, name: http, protocol: HTTP}, hosts: ['*'], bind: 'unix:///gw.sock'}]"
)
PROBE = "template: {}\nprobe: {exec: {command: [cat, /tmp/healthy]}}"


@pytest.mark.parametrize(
    ("kind", "spec", "path"),
    [
        ("DestinationRule", PROXY_PROTOCOL, "spec.trafficPolicy.proxyProtocol"),
        ("DestinationRule", TUNNEL, "spec.subsets[0].trafficPolicy.tunnel"),
        ("Sidecar", UNIX_EGRESS, "spec.egress[0].bind"),
        ("Sidecar", IPTABLES, "spec.ingress[0].captureMode"),
        ("WorkloadEntry", "address: 10.0.0.1\nnetwork: west", "spec.network"),
        ("Gateway", UNIX_GATEWAY, "spec.servers[0].bind"),
        ("WorkloadGroup", PROBE, "spec.probe"),
    ],
)
def test_validate_warns_about_what_is_accepted_but_not_translated(kind: str, spec: str, path: str) -> None:
    from pilotfish.config.loader import parse_resource

    _, warnings = parse_resource(KindDocs(kind).document(spec), "<test>", 1)
    untranslated = [w for w in warnings if w.message.startswith(UNTRANSLATED)]
    assert [w.path for w in untranslated] == [path], warnings
    assert all(w.severity == "warning" for w in untranslated)


def test_translated_values_give_no_such_warning() -> None:
    from pilotfish.config.loader import parse_resource

    spec = "egress: [{bind: 127.0.0.2, captureMode: NONE, hosts: ['*/*']}]"
    _, warnings = parse_resource(KindDocs("Sidecar").document(spec), "<test>", 1)
    assert not [w for w in warnings if w.message.startswith(UNTRANSLATED)]
