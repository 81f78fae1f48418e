"""Istio's cluster names (pilot/pkg/model/service.go BuildSubsetKey & co.)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotfish.xds.translate.names import (
    ClusterKey,
    dns_srv_subset_key,
    inbound_cluster_name,
    outbound_cluster_name,
    parse_cluster_name,
    subset_key,
)


def test_outbound_names_match_istio():
    assert outbound_cluster_name("reviews.default.svc.cluster.local", 9080) == (
        "outbound|9080||reviews.default.svc.cluster.local"
    )
    assert outbound_cluster_name("reviews.default.svc.cluster.local", 9080, "v1") == (
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    )
    assert subset_key("outbound", "v2", "a.b", 80) == "outbound|80|v2|a.b"


def test_inbound_name_has_neither_subset_nor_host():
    assert inbound_cluster_name(9080) == "inbound|9080||"


def test_sni_form():
    assert dns_srv_subset_key("outbound", "v1", "reviews.default.svc.cluster.local", 9080) == (
        "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
    )
    assert dns_srv_subset_key("outbound", "", "r.ns", 80) == "outbound_.80_._.r.ns"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (
            "outbound|9080|v1|reviews.prod.svc.cluster.local",
            ClusterKey("outbound", 9080, "v1", "reviews.prod.svc.cluster.local"),
        ),
        ("outbound|80||*.example.com", ClusterKey("outbound", 80, "", "*.example.com")),
        ("inbound|9080||", ClusterKey("inbound", 9080, "", "")),
        ("outbound_.9080_.v1_.reviews.prod", ClusterKey("outbound", 9080, "v1", "reviews.prod")),
    ],
)
def test_parse(name, key):
    assert parse_cluster_name(name) == key


@pytest.mark.parametrize(
    "name", ["BlackHoleCluster", "PassthroughCluster", "outbound|x||h", "sideways|80||h", "outbound|80|h", ""]
)
def test_parse_rejects_other_names(name):
    assert parse_cluster_name(name) is None


subsets = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True) | st.just("")
hosts = st.from_regex(r"(\*\.)?[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535)
directions = st.sampled_from(["inbound", "outbound"])


@given(directions, subsets, hosts, ports)
def test_both_forms_parse_back(direction, subset, host, port):
    key = ClusterKey(direction, port, subset, host)
    assert parse_cluster_name(subset_key(direction, subset, host, port)) == key
    assert parse_cluster_name(dns_srv_subset_key(direction, subset, host, port)) == key
