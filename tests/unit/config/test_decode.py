"""The decoding framework: spellings, types, ranges, durations, oneofs, lines, YAML edge cases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import pytest

from pilotfish.config.decode import Int32, Message, UInt32, decode, field, format_path, parse_duration
from pilotfish.config.source import line_at, parse_documents
from pilotfish.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Inner(Message):
    ONEOFS = (("exact", "prefix"),)
    exact: str = ""
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Outer(Message):
    host: str = field(required=True)
    port_number: UInt32 = 0
    delta: Int32 = 0
    mode: Literal["A", "B"] = "A"
    timeout: timedelta | None = None
    items: tuple[Inner, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    from_: Inner | None = None
    ratio: float = 0.0


def problems(text: str) -> list[tuple[str, int, str]]:
    doc = parse_documents(text, "t.yaml")[0]
    with pytest.raises(ConfigError) as exc:
        decode(Outer, doc.data, file="t.yaml")
    return [(p.path, p.line, p.message) for p in exc.value.problems]


def test_camel_and_snake_spellings_decode_to_the_same_object() -> None:
    camel = parse_documents("host: h\nportNumber: 80\nfrom: {exact: x}\n")[0].data
    snake = parse_documents("host: h\nport_number: 80\nfrom: {exact: x}\n")[0].data
    assert (
        decode(Outer, camel)
        == decode(Outer, snake)
        == Outer(host="h", port_number=80, from_=Inner(exact="x"))
    )


def test_every_problem_is_reported_with_its_line_and_path() -> None:
    text = "\n".join(
        [
            "host: 1",
            "portNumber: -1",
            "mode: C",
            "items:",
            "- {exact: a, prefix: b}",
            "- {bogus: 1}",
            "timeout: 5 s",
            "",
        ]
    )
    got = problems(text)
    assert ("host", 1, "expected a string, got int 1") in got
    assert ("portNumber", 2, "-1 is out of range for uint32 [0, 4294967295]") in got
    assert any(p == "mode" and line == 3 and "one of A, B" in m for p, line, m in got)
    assert any(p == "items[0]" and line == 5 and "only one of exact, prefix" in m for p, line, m in got)
    assert ("items[1].bogus", 6, "unknown field") in got
    assert any(p == "timeout" and line == 7 for p, line, _ in got)


def test_required_field_missing_and_spelling_given_twice() -> None:
    assert ("host", 1, "required field is missing") in problems("mode: A\n")
    got = problems("host: a\nportNumber: 1\nport_number: 2\n")
    assert any(p == "port_number" and "set twice" in m for p, _, m in got)


def test_null_means_unset_and_ints_are_not_bools() -> None:
    assert decode(Outer, {"host": "h", "mode": None}) == Outer(host="h")
    with pytest.raises(ConfigError):
        decode(Outer, {"host": "h", "delta": True})
    assert decode(Outer, {"host": "h", "ratio": 3}).ratio == 3.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("1h30m", 5400),
        ("0", 0),
        ("250us", 0.00025),
        ("2m0.5s", 120.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "-1s", "1x", "s", "1s2", "1 s", "1e3s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_yaml_errors_become_config_errors_with_lines() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_documents("a: 1\na: 2\n", "dup.yaml")
    assert str(exc.value.problems[0]) == "dup.yaml:2: duplicate key 'a'"
    with pytest.raises(ConfigError) as exc:
        parse_documents("a: [1,\nb: 2\n", "bad.yaml")
    assert exc.value.problems[0].line >= 1 and "invalid YAML" in exc.value.problems[0].message


def test_line_at_follows_paths_and_spellings() -> None:
    data = parse_documents("spec:\n  subsets:\n  - name: a\n  - name: b\n    traffic_policy: {}\n")[0].data
    assert line_at(data, ("spec", "subsets", 1, "name")) == 4
    assert line_at(data, ("spec", "subsets", 1, "trafficPolicy")) == 5
    assert line_at(data, ("spec", "subsets", 7, "name")) == 2


def test_format_path() -> None:
    assert (
        format_path(("spec", "http", 0, "match", 2, "headers", "end-user"))
        == "spec.http[0].match[2].headers.end-user"
    )
    assert format_path(("spec", "selector", "matchLabels", "app.kubernetes.io/name")) == (
        "spec.selector.matchLabels[app.kubernetes.io/name]"
    )
