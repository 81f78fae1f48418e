"""Proxy identity from an Envoy Node, Istio style; anything else is a PeerError."""

from __future__ import annotations

import pytest
import xds_unit_builders as b
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from pilotfish.errors import PeerError
from pilotfish.xds.proxy import Proxy, ProxyType, parse_node


def test_a_sidecar_node_parses_with_its_metadata() -> None:
    proxy = parse_node(
        b.node(
            NAMESPACE="default",
            LABELS={"app": "reviews", "version": "v1"},
            SERVICE_ACCOUNT="bookinfo-reviews",
            WORKLOAD_NAME="reviews-v1",
            CLUSTER_ID="Kubernetes",
            ISTIO_VERSION="1.24.0",
        )
    )
    assert proxy == Proxy(
        id=b.NODE_ID,
        type=ProxyType.SIDECAR,
        ip="10.0.0.1",
        name="reviews-v1-abc",
        namespace="default",
        dns_domain="default.svc.cluster.local",
        labels={"app": "reviews", "version": "v1"},
        service_account="bookinfo-reviews",
        workload_name="reviews-v1",
        cluster_id="Kubernetes",
        istio_version="1.24.0",
    )
    with pytest.raises(TypeError):
        proxy.labels["app"] = "x"  # type: ignore[index]


def test_a_router_with_ipv6_and_namespace_only_in_metadata() -> None:
    proxy = parse_node(
        b.node("router~fd00::1~ingress~istio-system.svc.cluster.local", NAMESPACE="istio-system")
    )
    assert (proxy.type, proxy.ip, proxy.name, proxy.namespace) == (
        ProxyType.ROUTER,
        "fd00::1",
        "ingress",
        "istio-system",
    )
    assert proxy.labels == {} and proxy.service_account == ""


@pytest.mark.parametrize(
    ("node_id", "metadata", "message"),
    [
        ("", {}, "node.id is empty"),
        ("sidecar~10.0.0.1~a.ns", {}, "must have the form"),
        ("gateway~10.0.0.1~a.ns~ns.svc.cluster.local", {}, "neither 'sidecar' nor 'router'"),
        ("sidecar~10.0.0.300~a.ns~ns.svc.cluster.local", {}, "not an IP address"),
        ("sidecar~10.0.0.1~~ns.svc.cluster.local", {}, "must not be empty"),
        ("sidecar~10.0.0.1~a~ns.svc.cluster.local", {}, "no namespace"),
        ("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", {"NAMESPACE": "other"}, "metadata says 'other'"),
        ("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", {"LABELS": "app=x"}, "LABELS must be a struct"),
        ("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", {"LABELS": {"n": 1}}, "LABELS.n must be a string"),
        ("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", {"SERVICE_ACCOUNT": True}, "SERVICE_ACCOUNT must be"),
    ],
)
def test_malformed_nodes_raise_peer_error(node_id: str, metadata: dict[str, object], message: str) -> None:
    with pytest.raises(PeerError, match=message):
        parse_node(b.node(node_id, **metadata))


def test_listener_metadata_parses_into_metadata_and_app_ports() -> None:
    proxy = parse_node(
        b.node(
            NAMESPACE="default",
            APP_PORTS={"9080": "19080", "9090": 19090},
            OUTBOUND_BIND="127.0.0.21",
            GATEWAY_BIND="::1",
            UNRELATED="ignored",
        )
    )
    assert proxy.app_ports == {9080: 19080, 9090: 19090}
    assert proxy.metadata == {"OUTBOUND_BIND": "127.0.0.21", "GATEWAY_BIND": "::1"}
    with pytest.raises(TypeError):
        proxy.app_ports[1] = 2  # type: ignore[index]
    bare = parse_node(b.node(NAMESPACE="default"))
    assert bare.app_ports == {} and bare.metadata == {}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"APP_PORTS": "9080=19080"}, "APP_PORTS must be a struct"),
        ({"APP_PORTS": {"http": "19080"}}, "'http' is not a port number"),
        ({"APP_PORTS": {"9080": "0"}}, "'0' is not a port number"),
        ({"APP_PORTS": {"9080": 1.5}}, "must be a port number"),
        ({"APP_PORTS": {"9080": "70000"}}, "'70000' is not a port number"),
        ({"OUTBOUND_BIND": "localhost"}, "OUTBOUND_BIND: 'localhost' is not an IP address"),
        ({"GATEWAY_BIND": 1}, "GATEWAY_BIND must be a string"),
    ],
)
def test_malformed_listener_metadata_is_a_peer_error(metadata: dict[str, object], message: str) -> None:
    with pytest.raises(PeerError, match=message):
        parse_node(b.node(NAMESPACE="default", **metadata))


def test_no_node_at_all_is_a_peer_error() -> None:
    with pytest.raises(PeerError):
        parse_node(None)


_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_keys = st.sampled_from(
    [
        "NAMESPACE",
        "LABELS",
        "SERVICE_ACCOUNT",
        "WORKLOAD_NAME",
        "CLUSTER_ID",
        "APP_PORTS",
        "OUTBOUND_BIND",
        "OTHER",
    ]
)
_parts = st.sampled_from(
    ["sidecar", "router", "10.0.0.1", "::1", "a.ns", "ns", "", "x~y", "ns.svc.cluster.local"]
)


@given(
    st.lists(_parts, max_size=5).map("~".join) | st.text(max_size=30),
    st.dictionaries(_keys, _values, max_size=4),
)
def test_any_node_parses_or_raises_peer_error(node_id: str, metadata: dict[str, object]) -> None:
    struct = struct_pb2.Struct()
    struct.update(metadata)
    try:
        proxy = parse_node(base_pb2.Node(id=node_id, metadata=struct))
    except PeerError:
        return
    assert proxy.id == node_id and proxy.namespace and proxy.name
