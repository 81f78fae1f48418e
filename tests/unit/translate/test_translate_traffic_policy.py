"""Subset and port-level policy selection, as Istio's util.go MergeSubsetTrafficPolicy /
GetPortLevelTrafficPolicy do it: whole groups replaced, port-level settings never inherit."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pilotfish.config.decode import decode
from pilotfish.config.networking.destination_rule import Subset, TrafficPolicy
from pilotfish.xds.translate.traffic_policy import cluster_policy, port_policy, subset_policy


def policy(data: dict[str, Any]) -> TrafficPolicy:
    return decode(TrafficPolicy, data)


DESTINATION = policy(
    {
        "loadBalancer": {"simple": "LEAST_CONN"},
        "connectionPool": {"tcp": {"maxConnections": 10}, "http": {"http1MaxPendingRequests": 5}},
        "outlierDetection": {"consecutive5xxErrors": 3},
        "tunnel": {"targetHost": "egress.example.com", "targetPort": 8443},
        "portLevelSettings": [
            {"port": {"number": 9443}, "connectionPool": {"tcp": {"maxConnections": 1}}},
        ],
    }
)


def test_without_port_level_entry_the_policy_applies_as_is():
    assert port_policy(DESTINATION, 9080) == (DESTINATION, False)
    assert port_policy(None, 9080) == (None, False)


def test_port_level_entry_replaces_the_whole_policy():
    picked, is_port_level = port_policy(DESTINATION, 9443)
    assert is_port_level
    assert picked == policy({"connectionPool": {"tcp": {"maxConnections": 1}}})
    # Not inherited from the destination level: defaults apply (Istio API docs, util.go).
    assert picked is not None and picked.load_balancer is None and picked.outlier_detection is None
    assert picked.tunnel is None


def test_subset_group_replaces_the_destination_group_whole():
    subset = policy({"connectionPool": {"http": {"http2MaxRequests": 7}}})
    merged = subset_policy(DESTINATION, subset, 9080)
    assert merged is not None
    assert merged.connection_pool == subset.connection_pool  # no deep merge: tcp is gone
    assert merged.connection_pool is not None and merged.connection_pool.tcp is None
    assert merged.load_balancer == DESTINATION.load_balancer
    assert merged.outlier_detection == DESTINATION.outlier_detection
    assert merged.tunnel == DESTINATION.tunnel
    assert merged.port_level_settings == ()


def test_subset_port_level_entry_takes_all_four_groups():
    subset = policy(
        {
            "loadBalancer": {"simple": "RANDOM"},
            "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "ROUND_ROBIN"}}],
        }
    )
    merged = subset_policy(DESTINATION, subset, 9080)
    assert merged is not None
    assert merged.load_balancer == policy({"loadBalancer": {"simple": "ROUND_ROBIN"}}).load_balancer
    assert merged.connection_pool is None and merged.outlier_detection is None and merged.tls is None
    assert merged.tunnel == DESTINATION.tunnel  # tunnel is not a port-level group
    # On another port the subset's own top-level setting applies over the destination's.
    other = subset_policy(DESTINATION, subset, 8080)
    assert other is not None and other.load_balancer == subset.load_balancer
    assert other.connection_pool == DESTINATION.connection_pool


def test_destination_port_level_entry_is_the_base_of_the_subset_merge():
    subset = policy({"outlierDetection": {"consecutiveGatewayErrors": 2}})
    merged = subset_policy(DESTINATION, subset, 9443)
    assert merged == policy(
        {
            "connectionPool": {"tcp": {"maxConnections": 1}},
            "outlierDetection": {"consecutiveGatewayErrors": 2},
        }
    )


def test_subset_only_groups_replace_only_when_set():
    subset = policy(
        {
            "proxyProtocol": {"version": "V2"},
            "retryBudget": {"percent": 5.0},
        }
    )
    merged = subset_policy(DESTINATION, subset, 9080)
    assert merged is not None
    assert merged.tunnel == DESTINATION.tunnel
    assert merged.proxy_protocol == subset.proxy_protocol
    assert merged.retry_budget == subset.retry_budget


def test_missing_sides():
    subset = policy({"loadBalancer": {"simple": "ROUND_ROBIN"}})
    assert subset_policy(None, subset, 9080) == subset
    assert subset_policy(DESTINATION, None, 9080) == DESTINATION
    assert subset_policy(None, None, 9080) is None


def test_cluster_policy_picks_default_or_subset():
    subset = Subset(
        name="v3", labels={"version": "v3"}, traffic_policy=policy({"loadBalancer": {"simple": "RANDOM"}})
    )
    assert cluster_policy(DESTINATION, 9080) == DESTINATION
    picked = cluster_policy(DESTINATION, 9080, subset)
    assert picked is not None and picked.load_balancer is not None and picked.load_balancer.simple == "RANDOM"
    assert cluster_policy(DESTINATION, 9080, Subset(name="bare")) == DESTINATION


groups = st.fixed_dictionaries(
    {},
    optional={
        "loadBalancer": st.sampled_from([{"simple": "RANDOM"}, {"simple": "ROUND_ROBIN"}]),
        "connectionPool": st.just({"tcp": {"maxConnections": 3}}),
        "outlierDetection": st.just({"consecutive5xxErrors": 1}),
        "tls": st.just({"mode": "SIMPLE"}),
        "proxyProtocol": st.just({"version": "V1"}),
        "retryBudget": st.just({"minRetryConcurrency": 4}),
    },
)


@given(groups, groups)
def test_every_group_comes_from_the_subset_if_set_else_the_destination(top, sub):
    merged = subset_policy(policy(top), policy(sub), 9080)
    assert merged is not None
    for name in (
        "load_balancer",
        "connection_pool",
        "outlier_detection",
        "tls",
        "proxy_protocol",
        "retry_budget",
    ):
        expected = getattr(policy(sub), name) or getattr(policy(top), name)
        assert getattr(merged, name) == expected, name
