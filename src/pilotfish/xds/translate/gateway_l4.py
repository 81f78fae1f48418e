"""Gateway servers that carry TCP or TLS without HTTP: their filter chains (pure).

Istio ``pilot/pkg/networking/core/gateway.go`` (``buildGatewayListeners``,
``createGatewayTCPFilterChainOpts``, ``buildGatewayNetworkFiltersFromTCPRoutes``,
``buildGatewayNetworkFiltersFromTLSRoutes``, ``buildOutboundAutoPassthroughFilterStack``):

- a server with protocol TLS or HTTPS and ``tls.mode`` PASSTHROUGH routes by SNI without
  terminating: one chain per ``tls`` match of the VirtualServices bound to the Gateway whose hosts
  meet the server's, its SNI hosts cut down to those under the server's hosts (``tcp_routes.py``);
- AUTO_PASSTHROUGH: one chain on the server's hosts whose ``sni_cluster`` filter sends the
  connection to the cluster named by the SNI itself (``outbound_.<port>_.<subset>_.<host>``,
  the name a sidecar's mTLS SNI carries) before the ``tcp_proxy`` to ``BlackHoleCluster`` that the
  filter overrides; the gateway gets those SNI-named clusters (``sni_dnat_clusters``);
- a TLS server that terminates (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL): one chain on
  the server's hosts with the server's TLS context (``gateway_tls.server_tls_context``) offering
  no ALPN (the client and the backend speak whatever they speak), then the first ``tcp`` rule
  that applies, as for a TCP server;
- a TCP server (TCP, MONGO, MYSQL, REDIS): one chain, the first ``tcp`` rule whose matches apply
  (``l4MultiMatch``); no rule, no chain (Istio builds none either).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.sni_cluster.v3 import sni_cluster_pb2

from pilotfish.config.networking.common import is_http
from pilotfish.config.networking.gateway import UNIX_PREFIX, Server
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.endpoints import visible_destinations
from pilotfish.xds.translate.gateway_routes import GatewayServer, intersection, server_hosts
from pilotfish.xds.translate.gateway_tls import TERMINATING_MODES, server_tls_context
from pilotfish.xds.translate.mtls import sni, transport_socket
from pilotfish.xds.translate.names import parse_cluster_name
from pilotfish.xds.translate.tcp_routes import (
    FilterChain,
    L4Scope,
    chain,
    destination_policies,
    match_applies,
    route_filter,
    tcp_proxy_filter,
    tls_chains,
)
from pilotfish.xds.translate.virtual_services import (
    AppliedVirtualService,
    virtual_service_index,
    virtual_services_for_gateway,
)

PASSTHROUGH, AUTO_PASSTHROUGH = "PASSTHROUGH", "AUTO_PASSTHROUGH"
PASSTHROUGH_MODES = frozenset({PASSTHROUGH, AUTO_PASSTHROUGH})
TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})
SNI_CLUSTER_FILTER = "envoy.filters.network.sni_cluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"


@dataclass(frozen=True, slots=True)
class L4Server:
    """A server of a Gateway that selects the proxy and carries no HTTP the gateway reads."""

    gateway: str  # namespace/name
    namespace: str
    server: Server

    @property
    def port(self) -> int:
        return self.server.port.number

    @property
    def mode(self) -> str:
        return self.server.tls.mode if self.server.tls is not None else ""

    @property
    def server_names(self) -> list[str]:
        """The hosts without their namespace; none for ``*`` (any SNI)."""
        hosts = [entry.rpartition("/")[2] for entry in self.server.hosts]
        return [] if "*" in hosts else hosts


def is_l4(server: Server) -> bool:
    """TLS passthrough (TLS or HTTPS), TLS terminated into TCP routes, or plain TCP."""
    protocol = server.port.protocol.upper()
    if server.bind.startswith(UNIX_PREFIX) or is_http(protocol):
        return False
    mode = server.tls.mode if server.tls is not None else ""
    if protocol == "HTTPS":
        return mode in PASSTHROUGH_MODES
    if protocol == "TLS":
        return mode in PASSTHROUGH_MODES or mode in TERMINATING_MODES
    return protocol != "UDP"


def l4_servers(snapshot: MeshSnapshot, proxy: Proxy) -> list[L4Server]:
    """The L4 servers of the Gateways that select the proxy, Gateways in name order."""
    gateways = sorted(snapshot.of_kind("Gateway"), key=lambda r: (r.name, r.namespace))
    return [
        L4Server(f"{gw.namespace}/{gw.name}", gw.namespace, server)
        for gw in gateways
        if all(proxy.labels.get(k) == v for k, v in gw.spec.selector.items())
        for server in gw.spec.servers
        if is_l4(server)
    ]


def bound_virtual_services(
    snapshot: MeshSnapshot, proxy: Proxy, server: L4Server
) -> list[tuple[AppliedVirtualService, list[str]]]:
    """The VirtualServices bound to the server's Gateway whose hosts meet the server's, each with
    the hosts they share."""
    index = virtual_service_index(snapshot)
    wrapped = GatewayServer(server.gateway, server.namespace, server.server)
    out = []
    for service in virtual_services_for_gateway(index, proxy.namespace, server.gateway):
        shared = intersection(server_hosts(wrapped, service.namespace), service.spec.hosts)
        if shared:
            out.append((service, shared))
    return out


def server_chains(snapshot: MeshSnapshot, proxy: Proxy, server: L4Server) -> list[FilterChain]:
    destinations = visible_destinations(snapshot, proxy)
    services: Mapping[str, Service] = {host: service for host, (service, _) in destinations.items()}
    policies = destination_policies(destinations)
    scope = L4Scope(proxy, server.port, frozenset({server.gateway}), services, policies, match_source=False)
    bound = bound_virtual_services(snapshot, proxy, server)
    if server.mode == AUTO_PASSTHROUGH:
        auto = chain(tcp_proxy_filter(BLACKHOLE_CLUSTER), server_names=server.server_names or ["*"])
        auto_passthrough_filters(auto)
        return [auto]
    if server.mode == PASSTHROUGH:
        out: list[FilterChain] = []
        for service, shared in bound:
            out.extend(tls_chains([service], scope, None, allowed_sni=shared))
        return _distinct(out)
    network_filter = first_tcp_route(bound, scope)
    if network_filter is None:
        return []
    if server.mode in TERMINATING_MODES:
        assert server.server.tls is not None
        out_chain = chain(network_filter, server_names=server.server_names or ["*"])
        context = server_tls_context(server.server.tls)
        # No ALPN: the stream inside is not HTTP the gateway speaks, so offering h2 would make an
        # HTTP client send HTTP/2 to a backend that never agreed to it (Istio offers
        # istio-peer-exchange, h2, http/1.1 here for its metadata exchange, which pilotfish lacks).
        context.common_tls_context.ClearField("alpn_protocols")
        out_chain.transport_socket.CopyFrom(transport_socket(context))
        return [out_chain]
    return [chain(network_filter)]


def first_tcp_route(
    bound: Sequence[tuple[AppliedVirtualService, list[str]]], scope: L4Scope
) -> listener_components_pb2.Filter | None:
    """``buildGatewayNetworkFiltersFromTCPRoutes``: the first ``tcp`` rule with no matches or a
    match that applies."""
    for service, _ in bound:
        for rule in service.spec.tcp:
            if rule.route and (not rule.match or any(match_applies(m, scope) for m in rule.match)):
                return route_filter(rule.route, scope, service)
    return None


def auto_passthrough_filters(chain_: FilterChain) -> None:
    """Put ``sni_cluster`` in front of an AUTO_PASSTHROUGH chain's ``tcp_proxy``."""
    sni_filter = listener_components_pb2.Filter(name=SNI_CLUSTER_FILTER)
    sni_filter.typed_config.Pack(sni_cluster_pb2.SniCluster())
    chain_.filters.insert(0, sni_filter)


def _distinct(chains: Iterable[FilterChain]) -> list[FilterChain]:
    seen: set[bytes] = set()
    out = []
    for item in chains:
        key = item.filter_chain_match.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


# ---- AUTO_PASSTHROUGH clusters -------------------------------------------------------------------


def has_auto_passthrough(snapshot: MeshSnapshot, proxy: Proxy) -> bool:
    return any(s.mode == AUTO_PASSTHROUGH for s in l4_servers(snapshot, proxy))


def sni_dnat_clusters(
    snapshot: MeshSnapshot, proxy: Proxy, clusters: Iterable[Any]
) -> list[cluster_pb2.Cluster]:
    """For a gateway with an AUTO_PASSTHROUGH server: ``BlackHoleCluster`` and, per outbound
    cluster, a copy named by its SNI (``outbound_.<port>_.<subset>_.<host>``) without TLS, since
    the client's own TLS passes through (Istio ``BuildClusters`` with ``SniDnatClusterNameFormat``).
    EDS copies keep the original cluster's endpoints (``service_name``)."""
    if not has_auto_passthrough(snapshot, proxy):
        return []
    out = [cluster_pb2.Cluster(name=BLACKHOLE_CLUSTER, type=cluster_pb2.Cluster.STATIC)]
    out[0].connect_timeout.FromSeconds(10)
    for cluster in clusters:
        key = parse_cluster_name(cluster.name)
        if key is None or key.direction != "outbound":
            continue
        copy = cluster_pb2.Cluster()
        copy.CopyFrom(cluster)
        copy.name = sni(key.hostname, key.port, key.subset or None)
        copy.ClearField("transport_socket")
        copy.ClearField("transport_socket_matches")
        copy.ClearField("alt_stat_name")
        if copy.type == cluster_pb2.Cluster.EDS and not copy.eds_cluster_config.service_name:
            copy.eds_cluster_config.service_name = cluster.name
        elif copy.HasField("load_assignment"):
            copy.load_assignment.cluster_name = copy.name
        out.append(copy)
    return out
