"""SPIFFE ids: the workload form Istio uses, the SPIFFE syntax rules, trust-domain checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotfish.certs.identity import SpiffeId, SpiffeIdError, in_trust_domain, parse_spiffe_id, workload_id


def test_workload_id_formats_istios_uri_and_principal():
    identity = workload_id("cluster.local", "shop", "web")
    assert identity.uri == "spiffe://cluster.local/ns/shop/sa/web"
    assert str(identity) == identity.uri
    assert identity.principal == "cluster.local/ns/shop/sa/web"


def test_an_empty_service_account_is_default():
    assert workload_id("cluster.local", "shop").uri == "spiffe://cluster.local/ns/shop/sa/default"


def test_parse_round_trips():
    assert parse_spiffe_id("spiffe://td.example/ns/a-b/sa/c_d.e") == SpiffeId("td.example", "a-b", "c_d.e")


@pytest.mark.parametrize(
    "uri",
    [
        "http://cluster.local/ns/a/sa/b",  # wrong scheme
        "SPIFFE://cluster.local/ns/a/sa/b",  # the scheme is lower case
        "spiffe://Cluster.local/ns/a/sa/b",  # trust domains are lower case
        "spiffe:///ns/a/sa/b",  # empty trust domain
        "spiffe://cluster.local:8080/ns/a/sa/b",  # no port
        "spiffe://user@cluster.local/ns/a/sa/b",  # no user info
        "spiffe://cluster.local/ns/a/sa/b?x=1",  # no query
        "spiffe://cluster.local/ns/a/sa/b#f",  # no fragment
        "spiffe://cluster.local/ns/a/sa/",  # empty segment
        "spiffe://cluster.local/ns/../sa/b",  # dot segments
        "spiffe://cluster.local/ns/a/sa/b/extra",  # Istio: exactly ns/<ns>/sa/<sa>
        "spiffe://cluster.local/sa/b/ns/a",
        "spiffe://cluster.local",
        "spiffe://cluster.local/ns/a b/sa/c",
        "spiffe://cluster.local/ns/a/sa/" + "x" * 2048,  # longer than 2048 bytes
    ],
)
def test_invalid_ids_are_refused(uri):
    with pytest.raises(SpiffeIdError):
        parse_spiffe_id(uri)


def test_workload_id_validates_its_parts():
    with pytest.raises(SpiffeIdError):
        workload_id("cluster.local", "a/b", "c")


def test_trust_domain_membership_includes_aliases():
    identity = workload_id("old.td", "shop", "web")
    assert in_trust_domain(identity, "old.td")
    assert not in_trust_domain(identity, "new.td")
    assert in_trust_domain(identity, "new.td", aliases=["old.td"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_the_one_error(text):
    for candidate in (text, "spiffe://" + text, "spiffe://cluster.local/ns/" + text):
        try:
            parsed = parse_spiffe_id(candidate)
        except SpiffeIdError:
            continue
        assert parse_spiffe_id(parsed.uri) == parsed
