"""The proxy's own workload: which ports it serves (inbound) and the ``inbound|PORT||`` clusters
that reach the app behind them.

pilotfish uses explicit capture (Istio Sidecar ``captureMode: NONE``, no iptables): every workload
has its own IP, the sidecar binds ``<ip>:<port>`` for each port the workload serves and forwards to
the app on loopback. Istio ``pilot/pkg/networking/core/listener_inbound.go``
(``buildInboundChainConfigs``, ``getFilterChainsByServicePort``) and ``cluster.go``
(``buildInboundClusters``):

- with a Sidecar that declares ``ingress``, exactly those ports (Istio's default; service ports
  are merged only behind ``PILOT_ENABLE_SIDECAR_SERVICE_INBOUND_LISTENER_MERGE``); the listener
  binds ``ingress.bind`` or the proxy IP;
- otherwise every endpoint port whose address is the proxy IP (Istio finds the proxy's service
  instances by IP). The port is the endpoint's port (the target port), as Istio names inbound
  clusters by target port; when two services claim one port the first (snapshot order) wins;
- the app: ``ingress.defaultEndpoint`` (``127.0.0.1:P`` / ``[::1]:P`` on loopback, ``0.0.0.0:P``,
  ``[::]:P`` or ``:P`` on the proxy IP, ``unix://PATH``), else node metadata APP_PORTS, else the
  same port on 127.0.0.1;
- an ingress port without a protocol takes its name's (``http-web``: HTTP), else is served as TCP
  (Istio would sniff the protocol; ``registry.from_config.port_protocol``);
- a port whose app address is the listener's own address is left out: it would loop (this is
  what a proxy with the default IP 127.0.0.1 and no APP_PORTS would build).

Inbound clusters are STATIC with the one app endpoint, connect timeout 10s (mesh default), and
HTTP/2 upstream for HTTP2/gRPC ports (``setUpstreamProtocol``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from pilotfish.config.networking.common import is_http
from pilotfish.config.networking.gateway import UNIX_PREFIX
from pilotfish.config.networking.sidecar import IstioIngressListener, split_host_port
from pilotfish.registry.from_config import port_protocol
from pilotfish.registry.model import Endpoint, Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.clusters import (
    CONNECT_TIMEOUT,
    HTTP2_PROTOCOLS,
    complete_http_options,
    duration,
    set_http2,
)
from pilotfish.xds.translate.endpoints import socket_address
from pilotfish.xds.translate.names import inbound_cluster_name
from pilotfish.xds.translate.sidecar_scope import sidecar_for

LOOPBACK = "127.0.0.1"
# defaultEndpoint host → where the app is: loopback as written, a wildcard ("") the proxy IP.
APP_HOSTS: Mapping[str, str] = {"127.0.0.1": "127.0.0.1", "::1": "::1", "0.0.0.0": "", "::": "", "": ""}


@dataclass(frozen=True, slots=True)
class InboundPort:
    """One port the proxy's workload serves, and where its app is."""

    port: int  # the listener port and the cluster's port (Istio: the target port)
    protocol: str  # upper case, as ServicePort.protocol
    bind: str  # the listener address
    app_address: str  # an IP, or ``unix://PATH``
    app_port: int
    hostname: str  # the service (or ``<sidecar>.<namespace>``), for the route's trace operation

    @property
    def cluster_name(self) -> str:
        return inbound_cluster_name(self.port)

    @property
    def is_http(self) -> bool:
        return is_http(self.protocol)

    @property
    def loops(self) -> bool:
        """The app address is the listener itself: forwarding would send traffic back to it."""
        return (self.app_address, self.app_port) == (self.bind, self.port)


def inbound_ports(snapshot: MeshSnapshot, proxy: Proxy) -> list[InboundPort]:
    """The ports the proxy serves, sorted by port (Istio gives chains a stable port order)."""
    if proxy.type != ProxyType.SIDECAR:
        return []
    sidecar = sidecar_for(snapshot, proxy)
    found: Iterable[InboundPort]
    if sidecar is not None and sidecar.spec.ingress:
        name = f"{sidecar.name}.{sidecar.namespace}"
        found = (ingress_port(i, proxy, name) for i in sidecar.spec.ingress)
    else:
        found = endpoint_ports(snapshot, proxy)
    chosen: dict[int, InboundPort] = {}
    for port in found:
        if not port.loops:
            chosen.setdefault(port.port, port)
    return [chosen[p] for p in sorted(chosen)]


def endpoint_ports(snapshot: MeshSnapshot, proxy: Proxy) -> Iterator[InboundPort]:
    """One port per registry endpoint at the proxy IP, in snapshot order (read from an index of
    the snapshot's endpoints by address, built once per snapshot)."""
    services = snapshot.derived(_services_by_host)
    for hostname, service_port, endpoint in snapshot.derived(_endpoints_by_address).get(proxy.ip, ()):
        service = services.get(hostname)
        port = service.port(service_port) if service is not None else None
        if port is None or port.protocol == "UDP":
            continue
        address, app_port = app_endpoint(proxy, endpoint.port, None)
        yield InboundPort(endpoint.port, port.protocol, proxy.ip, address, app_port, hostname)


def _services_by_host(snapshot: MeshSnapshot) -> dict[str, Service]:
    return {s.hostname: s for s in snapshot.services}


def _endpoints_by_address(snapshot: MeshSnapshot) -> dict[str, list[tuple[str, int, Endpoint]]]:
    """Address -> (hostname, service port, endpoint), in snapshot order."""
    out: dict[str, list[tuple[str, int, Endpoint]]] = {}
    for (hostname, service_port), endpoints in snapshot.endpoints.items():
        for endpoint in endpoints:
            out.setdefault(endpoint.address, []).append((hostname, service_port, endpoint))
    return out


def ingress_port(ingress: IstioIngressListener, proxy: Proxy, hostname: str) -> InboundPort:
    number = ingress.port.number
    address, app_port = app_endpoint(proxy, number, ingress.default_endpoint or None)
    protocol = port_protocol(ingress.port.protocol, ingress.port.name)
    return InboundPort(number, protocol, ingress.bind or proxy.ip, address, app_port, hostname)


def app_endpoint(proxy: Proxy, port: int, default_endpoint: str | None) -> tuple[str, int]:
    """Where the app behind ``port`` listens: the defaultEndpoint, else APP_PORTS, else
    ``127.0.0.1:<port>``. A unix socket is ``("unix://PATH", 0)``."""
    if default_endpoint is not None:
        if default_endpoint.startswith(UNIX_PREFIX):
            return default_endpoint, 0
        parts = split_host_port(default_endpoint)
        if parts is not None and parts[0] in APP_HOSTS and parts[1].isdigit():
            return APP_HOSTS[parts[0]] or proxy.ip, int(parts[1])
    return LOOPBACK, proxy.app_ports.get(port, port)


def translate_inbound_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """``inbound|PORT||`` for every port the proxy serves."""
    return [inbound_cluster(p) for p in inbound_ports(snapshot, proxy)]


def inbound_cluster(port: InboundPort) -> cluster_pb2.Cluster:
    """A STATIC cluster holding the app endpoint (Istio ``buildInboundClusters``)."""
    name = port.cluster_name
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration(CONNECT_TIMEOUT),
        load_assignment=load_assignment(name, port),
    )
    cluster.common_lb_config.SetInParent()
    if port.protocol in HTTP2_PROTOCOLS:
        set_http2(cluster)
    complete_http_options(cluster)
    return cluster


def load_assignment(name: str, port: InboundPort) -> endpoint_pb2.ClusterLoadAssignment:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(port.app_address, port.app_port))
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]
    )
