"""The shared checks networking validation is built from (``pilotfish.config.checks``, Istio's
``validation/agent`` helpers) and the selectors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotfish.config import checks
from pilotfish.config.selector import LabelSelector, WorkloadSelector


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("^/api/v[0-9]+/.*$", None),
        ("(?i)^/Reviews", None),
        (r"a\++", None),  # an escaped "+" then a quantifier, not a possessive quantifier
        (r"\\1", None),  # an escaped backslash then "1", not a backreference
        (r"(?<name>v\d)", None),  # RE2 named group spelling
        (r"end\z", None),  # RE2 end-of-text
        ("(?=a)b", "look-around"),
        ("a(?<!b)", "look-around"),
        (r"(a)\1", "backreferences"),
        ("(?P<x>a)(?P=x)", "backreferences"),
        ("(?>ab)", "atomic groups"),
        ("a*+", "possessive"),
        ("(a)?(?(1)b|c)", "conditional"),
        ("(", "does not compile"),
        ("a{4294967296}", "more than 1000"),
        ("a{2,1001}", "more than 1000"),
        (r"a\{2000}", None),  # an escaped brace is a literal, not a repeat
        ("a" * 1025, "too large"),
    ],
)
def test_re2_regex(pattern: str, problem: str | None) -> None:
    result = checks.re2_regex(pattern)
    assert (result is None) if problem is None else (result is not None and problem in result)


@pytest.mark.parametrize(
    ("host", "ok"),
    [("*", True), ("*.example.com", True), ("*foo.example.com", True), ("reviews", True), ("a.b.c.", True),
     ("foo.*.com", False), ("a..com", False), ("example.123", False), ("", False), ("-a.com", False),
     ("a" * 64 + ".com", False)],
)  # fmt: skip
def test_wildcard_domain(host: str, ok: bool) -> None:
    assert (checks.wildcard_domain(host) is None) is ok


def test_fqdn_rejects_wildcards_that_wildcard_domain_accepts() -> None:
    assert checks.fqdn("api.example.com") is None
    assert checks.fqdn("*.example.com") is not None


@pytest.mark.parametrize(
    ("host", "gateway", "problem"),
    [("ns/a.example.com", False, None), ("*/*", False, None), ("~/*", False, None), ("./a.com", True, None),
     ("a.example.com", True, None), ("10.0.0.1", True, None), ("~/*", True, "invalid namespace"),
     ("a.example.com", False, "namespace/dnsName"), ("ns/reviews", True, "short names"),
     ("ns/a*.com", False, "partial wildcard"), ("/a.com", False, "cannot be empty")],
)  # fmt: skip
def test_namespace_slash_host(host: str, gateway: bool, problem: str | None) -> None:
    found = checks.namespace_slash_host(host, gateway=gateway)
    assert (not found) if problem is None else any(problem in p for p in found), found


@pytest.mark.parametrize(
    ("a", "b", "matches", "subset"),
    [("a.com", "a.com", True, True), ("a.foo.com", "*.foo.com", True, True),
     ("*.foo.com", "a.foo.com", True, False), ("*.a.foo.com", "*.foo.com", True, True),
     ("*", "a.com", True, False), ("b.com", "a.com", False, False)],
)  # fmt: skip
def test_host_matches_and_subset_of(a: str, b: str, matches: bool, subset: bool) -> None:
    assert checks.host_matches(a, b) is matches
    assert checks.host_subset_of(a, b) is subset


hosts = st.builds(
    lambda wild, labels: ("*." if wild else "") + ".".join(labels),
    st.booleans(),
    st.lists(st.sampled_from(["a", "b", "foo", "com"]), min_size=1, max_size=3),
)


@given(hosts, hosts)
def test_host_overlap_is_symmetric_and_implied_by_subset(a: str, b: str) -> None:
    assert checks.host_matches(a, b) == checks.host_matches(b, a)
    if checks.host_subset_of(a, b):
        assert checks.host_matches(a, b)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("plain", True), ("100%%", True), ("%HOSTNAME%", True), ("a %START_TIME% b", True),
     ("abc%123", False), ("%%%", False), ("x\ny", False)],
)  # fmt: skip
def test_http_header_value(value: str, ok: bool) -> None:
    assert (checks.http_header_value(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "problem"),
    [(timedelta(milliseconds=1), None), (timedelta(hours=1), None), (timedelta(0), "greater than 1ms"),
     (timedelta(microseconds=1500), "ms precision")],
)  # fmt: skip
def test_duration(value: timedelta, problem: str | None) -> None:
    result = checks.duration(value)
    assert (result is None) if problem is None else (result is not None and problem in result)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("10.0.0.1", True), ("10.0.0.0/8", True), ("10.1.2.3/8", True), ("2001:db8::/32", True),
     ("10.0.0.0/33", False), ("host", False), ("1.2.3.4/8/9", False)],
)  # fmt: skip
def test_ip_subnet(value: str, ok: bool) -> None:
    assert (checks.ip_subnet(value) is None) is ok


def test_selectors_match_when_every_listed_label_is_present() -> None:
    labels = {"app": "reviews", "version": "v2"}
    assert WorkloadSelector({"app": "reviews"}).matches(labels)
    assert not WorkloadSelector({"app": "reviews", "version": "v1"}).matches(labels)
    assert WorkloadSelector().matches(labels)  # an empty selector selects every workload
    assert LabelSelector({"version": "v2"}).matches(labels)
    assert not LabelSelector({"tier": "db"}).matches(labels)
