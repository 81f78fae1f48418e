"""Inputs and readers for the listener tests: Sidecar / Gateway YAML, proxies with node metadata,
and the connection manager or TCP proxy unpacked from a listener."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from translate_builders import proxy

from pilotfish.xds.proxy import Proxy, ProxyType

HCM = http_connection_manager_pb2.HttpConnectionManager


def client(
    namespace: str = "prod",
    labels: Mapping[str, str] | None = None,
    ip: str = "10.0.0.1",
    kind: ProxyType = ProxyType.SIDECAR,
    app_ports: Mapping[int, int] | None = None,
    **metadata: str,
) -> Proxy:
    """A proxy with node metadata (OUTBOUND_BIND=..., GATEWAY_BIND=...) and APP_PORTS."""
    base = proxy(namespace, labels, kind, ip)
    return dataclasses.replace(
        base, metadata=MappingProxyType(dict(metadata)), app_ports=MappingProxyType(dict(app_ports or {}))
    )


def sidecar(name: str, namespace: str, body: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{textwrap.indent(textwrap.dedent(body).strip(), "  ")}
"""


def gateway(name: str, namespace: str, body: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{textwrap.indent(textwrap.dedent(body).strip(), "  ")}
"""


def by_name(listeners: Iterable[listener_pb2.Listener]) -> dict[str, listener_pb2.Listener]:
    return {listener.name: listener for listener in listeners}


def bound(listener: listener_pb2.Listener) -> tuple[str, int]:
    address = listener.address.socket_address
    return address.address, address.port_value


def only_filter(listener: listener_pb2.Listener):
    """The one network filter of the listener; every chain runs the same one (PERMISSIVE mTLS,
    the default, has a TLS chain and a plaintext chain)."""
    first, *others = listener.filter_chains
    assert all(list(chain.filters) == list(first.filters) for chain in others)
    (network_filter,) = first.filters
    return network_filter


def hcm(listener: listener_pb2.Listener) -> HCM:
    network_filter = only_filter(listener)
    assert network_filter.name == "envoy.filters.network.http_connection_manager"
    out = HCM()
    assert network_filter.typed_config.Unpack(out)
    return out


def tcp_proxy(listener: listener_pb2.Listener) -> tcp_proxy_pb2.TcpProxy:
    network_filter = only_filter(listener)
    assert network_filter.name == "envoy.filters.network.tcp_proxy"
    out = tcp_proxy_pb2.TcpProxy()
    assert network_filter.typed_config.Unpack(out)
    return out
