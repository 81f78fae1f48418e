"""Locality load balancing rules (``locality.py``) and where a locality comes from."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2

from pilotfish.bootstrap import BootstrapOptions, bootstrap, locality_of
from pilotfish.config.networking.destination_rule import (
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLoadBalancerSetting,
    OutlierDetection,
    TrafficPolicy,
)
from pilotfish.registry.from_registrations import auto_registration
from pilotfish.registry.model import Endpoint
from pilotfish.xds.proxy import parse_node
from pilotfish.xds.translate.locality import lb_priority, locality_groups, locality_match


def endpoint(address: str, locality: str, **labels: str) -> Endpoint:
    return Endpoint("svc", 80, address, 80, labels=labels, locality=locality)


ENDPOINTS = {
    "r1/z1": [endpoint("10.0.0.1", "r1/z1")],
    "r1/z2": [endpoint("10.0.0.2", "r1/z2")],
    "r2/z1": [endpoint("10.0.0.3", "r2/z1")],
}


def policy(setting: LocalityLoadBalancerSetting | None = None, outlier: bool = True) -> TrafficPolicy:
    return TrafficPolicy(
        load_balancer=LoadBalancerSettings(locality_lb_setting=setting) if setting else None,
        outlier_detection=OutlierDetection(consecutive_5xx_errors=1) if outlier else None,
    )


def priorities(groups) -> dict[str, int]:
    return {g.locality: g.priority for g in groups if g.endpoints}


def test_failover_orders_localities_by_what_they_share_with_the_proxy() -> None:
    assert priorities(locality_groups(ENDPOINTS, policy(), "r1/z1", {})) == {
        "r1/z1": 0,
        "r1/z2": 1,
        "r2/z1": 2,
    }
    assert priorities(locality_groups(ENDPOINTS, policy(), "r2/z1", {})) == {
        "r2/z1": 0,
        "r1/z1": 1,
        "r1/z2": 1,
    }


def test_no_failover_without_outlier_detection_or_when_disabled() -> None:
    assert set(priorities(locality_groups(ENDPOINTS, policy(outlier=False), "r1/z1", {})).values()) == {0}
    off = policy(LocalityLoadBalancerSetting(enabled=False))
    assert set(priorities(locality_groups(ENDPOINTS, off, "r1/z1", {})).values()) == {0}


def test_failover_to_a_named_region_puts_the_others_last() -> None:
    endpoints = {**ENDPOINTS, "r3/z1": [endpoint("10.0.0.4", "r3/z1")]}
    setting = LocalityLoadBalancerSetting(failover=(LocalityFailover(from_="r1", to="r3"),))
    got = priorities(locality_groups(endpoints, policy(setting), "r1/z1", {}))
    assert got == {"r1/z1": 0, "r1/z2": 1, "r3/z1": 2, "r2/z1": 3}


def test_distribute_weights_matching_localities_and_empties_the_rest() -> None:
    to = {"r1/*": 80, "r3/*": 20}
    setting = LocalityLoadBalancerSetting(distribute=(LocalityDistribute(from_="r1/*", to=to),))
    groups = {g.locality: g for g in locality_groups(ENDPOINTS, policy(setting, outlier=False), "r1/z1", {})}
    assert (groups["r1/z1"].weight, groups["r1/z2"].weight) == (40, 40)
    assert groups["r2/z1"].endpoints == ()
    other = locality_groups(ENDPOINTS, policy(setting, outlier=False), "r2/z1", {})  # from does not match
    assert all(g.endpoints for g in other)


def test_failover_priority_splits_a_locality_by_labels() -> None:
    endpoints = {
        "r1/z1": [endpoint("10.0.0.1", "r1/z1", version="v1"), endpoint("10.0.0.2", "r1/z1", version="v2")]
    }
    setting = LocalityLoadBalancerSetting(failover_priority=("version",))
    groups = locality_groups(endpoints, policy(setting), "r1/z1", {"version": "v2"})
    assert [(g.priority, [e.address for e in g.endpoints]) for g in groups] == [
        (0, ["10.0.0.2"]),
        (1, ["10.0.0.1"]),
    ]
    forced = LocalityLoadBalancerSetting(failover_priority=("version=v1",))
    groups = locality_groups(endpoints, policy(forced), "r1/z1", {"version": "v2"})
    assert [e.address for e in groups[0].endpoints] == ["10.0.0.1"]


def test_locality_patterns_and_priorities() -> None:
    assert locality_match("r1/z1/s1", "r1/*") and locality_match("r1/z1/s1", "r1")
    assert not locality_match("r1/z1/s1", "r1/z2/*") and locality_match("r9/z", "*")
    assert [lb_priority("r/z/s", x) for x in ("r/z/s", "r/z/t", "r/y", "q")] == [0, 1, 2, 3]


def test_the_proxy_locality_comes_from_the_bootstrap_node() -> None:
    opts = BootstrapOptions("c", "prod", {"app": "c"}, locality="r1/z1/s1")
    node = base_pb2.Node()
    from google.protobuf import json_format

    json_format.ParseDict(bootstrap(opts)["node"], node)
    assert parse_node(node).locality == "r1/z1/s1"
    labelled = BootstrapOptions("c", "prod", {"istio-locality": "r2.z2"})
    json_format.ParseDict(bootstrap(labelled)["node"], node := base_pb2.Node())
    assert parse_node(node).locality == "r2/z2"
    with pytest.raises(ValueError):
        locality_of("r1//s1")


def test_an_auto_registered_proxy_brings_its_locality() -> None:
    lease = auto_registration("g", "prod", "10.0.0.9", {"app": "c"}, "sa", 30.0, "r1/z1")
    assert lease.labels["istio-locality"] == "r1.z1"
