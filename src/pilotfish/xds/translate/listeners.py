"""(MeshSnapshot, Proxy) → Envoy Listeners, with explicit capture (no iptables).

Theory of operation. Istio's sidecars catch traffic with iptables and two virtual listeners; a
Sidecar with ``captureMode: NONE`` instead binds one real listener per port. pilotfish always works
the second way (``pilot/pkg/networking/core/listener.go`` ``buildSidecarOutboundListeners``,
``listener_inbound.go`` ``inboundCustomListener``, ``gateway.go`` ``buildGatewayListeners``):

- **outbound** (sidecar): per egress listener of the proxy's Sidecar (``sidecar_scope.py``, shared
  with the routes so a listener's port and its route configuration import the same services; one
  catch-all ``*/*`` without a Sidecar), an egress listener with a ``port`` makes that one listener;
  a catch-all makes one listener per port of the services its hosts select (UDP left out). The
  first listener on a port wins: explicit egress ports are taken before the catch-all, and of
  services sharing a port the first decides HTTP or TCP (Istio's conflict rule, without protocol
  sniffing). Address ``<bind>:<port>``, name ``<bind>_<port>``; bind = ``egress.bind``, else node
  metadata OUTBOUND_BIND, else 127.0.0.1. HTTP ports: an HTTP connection manager on RDS route
  ``"<port>"``; TCP and TLS ports: the first service's ``tcp``/``tls`` VirtualService rules as
  ``tcp_proxy`` filter chains (``tcp_routes.py``), else ``tcp_proxy`` to
  ``outbound|<port>||<host>``. An egress port without a protocol takes its name's, else the
  service's. ``unix://`` egress binds (port 0) are not built (``validate`` warns).
- **inbound** (sidecar): per port of ``inbound.inbound_ports``, ``<ip>_<port>`` bound to
  ``<ip>:<port>``, with the route config INLINE (Istio: "no RDS for inbound traffic"), named
  ``inbound|<port>||``: one ``*`` virtual host sending everything to cluster
  ``inbound|<port>||`` with no timeout (``BuildDefaultHTTPInboundRoute``). An outbound listener
  that would bind the same address and port as an inbound one is dropped: the workload's own
  port wins. The workload's PeerAuthentication mode for the port shapes the filter chains
  (``mtls.secure_inbound``: STRICT mTLS only, PERMISSIVE mTLS or plaintext, DISABLE plaintext).
- **gateway** (router): servers of every Gateway whose ``selector`` is a subset of the proxy's
  labels (any namespace, Istio's default); plain HTTP servers (HTTP, HTTP2, GRPC) on one port merge
  into one listener ``0.0.0.0_<port>`` on RDS route ``http.<port>``, bound to the first server's
  ``bind``, else node metadata GATEWAY_BIND, else the proxy IP. HTTPS servers that terminate TLS
  (``gateway_tls.py``) on another port make one listener ``0.0.0.0_<port>`` per port with a
  ``tls_inspector`` and one chain per server, matched by SNI, each with its own TLS context and
  RDS route ``https.<port>.<portName>.<gateway>.<namespace>``. TLS passthrough, TLS servers that
  terminate into TCP routes and TCP servers (``gateway_l4.py``) add their chains to their port's
  listener (two chains matching alike: the first wins).

Every HTTP connection manager follows ``listener_builder.go`` ``buildHTTPConnectionManager``:
codec AUTO, path normalization from the mesh ``pathNormalization`` (DEFAULT = BASE:
``normalize_path`` on), websocket upgrades, no stream idle timeout, ``server_name`` istio-envoy,
``use_remote_address`` only on gateways, and the HTTP filters fault, cors, router (fault and cors
do nothing without per-route config, which VirtualService routes carry).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import message as pb_message
from google.protobuf import wrappers_pb2

from pilotfish.config.networking.common import is_http, is_tls
from pilotfish.config.networking.gateway import UNIX_PREFIX, Server
from pilotfish.config.networking.sidecar import IstioEgressListener
from pilotfish.config.networking.virtual_service import MESH_GATEWAY
from pilotfish.registry.from_config import named_protocol
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.authz import authz_filters_for
from pilotfish.xds.translate.clusters import HTTP2_PROTOCOLS, duration
from pilotfish.xds.translate.endpoints import visible_destinations, visible_services_in
from pilotfish.xds.translate.gateway_l4 import L4Server, l4_servers, server_chains
from pilotfish.xds.translate.gateway_tls import HttpsServer, https_servers, server_tls_context
from pilotfish.xds.translate.inbound import InboundPort, inbound_ports
from pilotfish.xds.translate.mtls import peer_authn, secure_inbound, tls_inspector, transport_socket
from pilotfish.xds.translate.names import outbound_cluster_name
from pilotfish.xds.translate.netpol import guard_egress_chains, guard_ingress
from pilotfish.xds.translate.route_scope import egress_scope
from pilotfish.xds.translate.sidecar_scope import egress_listeners, egress_services, sidecar_for
from pilotfish.xds.translate.tcp_routes import (
    L4Scope,
    destination_policies,
    has_sni_match,
    host_selects,
    tcp_chains,
    tls_chains,
)
from pilotfish.xds.translate.tcp_routes import tcp_proxy_filter as tcp_proxy_filter

Listener: TypeAlias = listener_pb2.Listener
HCM: TypeAlias = http_connection_manager_pb2.HttpConnectionManager
HttpFilter: TypeAlias = http_connection_manager_pb2.HttpFilter

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
SERVER_NAME = "istio-envoy"  # Istio EnvoyServerName
DEFAULT_OUTBOUND_BIND = "127.0.0.1"
WILDCARD = "0.0.0.0"
OUTBOUND_BIND = "OUTBOUND_BIND"
GATEWAY_BIND = "GATEWAY_BIND"
NO_TIMEOUT = timedelta(0)

# The HTTP filters of every connection manager, in order; the router must be last.
HTTP_FILTERS: tuple[tuple[str, type[pb_message.Message]], ...] = (
    ("envoy.filters.http.fault", fault_pb2.HTTPFault),
    ("envoy.filters.http.cors", cors_pb2.Cors),
    ("envoy.filters.http.router", router_pb2.Router),
)

# Mesh pathNormalization → (normalize_path, merge_slashes, path_with_escaped_slashes_action).
PATH_NORMALIZATION: Mapping[str, tuple[bool, bool, int]] = {
    "NONE": (False, False, HCM.KEEP_UNCHANGED),
    "DEFAULT": (True, False, HCM.KEEP_UNCHANGED),
    "BASE": (True, False, HCM.KEEP_UNCHANGED),
    "MERGE_SLASHES": (True, True, HCM.KEEP_UNCHANGED),
    "DECODE_AND_MERGE_SLASHES": (True, True, HCM.UNESCAPE_AND_FORWARD),
}


@dataclass(frozen=True, slots=True)
class ListenerClass:
    """What differs between Istio's listener classes (``istionetworking.ListenerClass``)."""

    direction: int  # core TrafficDirection
    use_remote_address: bool
    forward_client_cert: int  # ForwardClientCertDetails (ProxyHeaders defaults)


INBOUND = ListenerClass(base_pb2.INBOUND, False, HCM.APPEND_FORWARD)
OUTBOUND = ListenerClass(base_pb2.OUTBOUND, False, HCM.SANITIZE)
GATEWAY = ListenerClass(base_pb2.OUTBOUND, True, HCM.SANITIZE_SET)


# ---- entry points --------------------------------------------------------------------------------


def translate_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Listener]:
    """Every listener of ``proxy``: a gateway's, or a sidecar's outbound then inbound ones."""
    if proxy.type == ProxyType.ROUTER:
        return guard_ingress(snapshot, proxy, gateway_listeners(snapshot, proxy))
    authz = authz_filters_for(snapshot, proxy)
    authn = peer_authn(snapshot, proxy.namespace, proxy.labels)
    inbound = [
        secure_inbound(inbound_listener(p, snapshot, authz), authn.port_mode(p.port))
        for p in inbound_ports(snapshot, proxy)
    ]
    guard_ingress(snapshot, proxy, inbound)  # NetworkPolicy ingress, first in every chain
    taken = {_bound(listener) for listener in inbound}
    outbound = [
        guard_egress_chains(snapshot, proxy, listener)  # NetworkPolicy egress on TCP chains
        for listener in (outbound_listener(p, snapshot, proxy) for p in outbound_ports(snapshot, proxy))
        if _bound(listener) not in taken
    ]
    return [*outbound, *inbound]


def route_names(listeners: Iterable[Listener]) -> list[str]:
    """The RDS route names the listeners' connection managers subscribe to, first-seen order."""
    names: dict[str, None] = {}
    for listener in listeners:
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                manager = _connection_manager(network_filter)
                if manager is not None and manager.HasField("rds"):
                    names.setdefault(manager.rds.route_config_name)
    return list(names)


def _connection_manager(network_filter: listener_components_pb2.Filter) -> HCM | None:
    if not network_filter.typed_config.Is(HCM.DESCRIPTOR):
        return None
    manager = HCM()
    network_filter.typed_config.Unpack(manager)
    return manager


def _bound(listener: Listener) -> tuple[str, int]:
    address = listener.address.socket_address
    return address.address, address.port_value


# ---- outbound ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundPort:
    bind: str
    port: int
    protocol: str
    service: Service | None  # the first service on the port (the TCP destination)

    @property
    def name(self) -> str:
        return f"{self.bind}_{self.port}"


def outbound_ports(snapshot: MeshSnapshot, proxy: Proxy) -> list[OutboundPort]:
    """One port per listener, egress listeners in order, the first claim on a port winning.
    A function of the proxy's namespace, its Sidecar and its bind address only, so computed once
    per snapshot for each such triple (a thousand sidecars of a namespace share it)."""
    sidecar = sidecar_for(snapshot, proxy)
    default_bind = proxy.metadata.get(OUTBOUND_BIND) or DEFAULT_OUTBOUND_BIND
    sidecar_key = sidecar.key if sidecar is not None else None
    return list(snapshot.derived_for(_outbound_ports, (proxy.namespace, sidecar_key, default_bind)))


def _outbound_ports(
    snapshot: MeshSnapshot, key: tuple[str, tuple[str, str, str] | None, str]
) -> tuple[OutboundPort, ...]:
    namespace, sidecar_key, default_bind = key
    sidecar = next((s for s in snapshot.of_kind("Sidecar") if s.key == sidecar_key), None)
    visible = visible_services_in(snapshot, namespace)
    chosen: dict[int, OutboundPort] = {}
    for egress in egress_listeners(sidecar):
        services = egress_services(visible, egress.hosts, namespace)
        for port in egress_ports(egress, services, egress.bind or default_bind):
            chosen.setdefault(port.port, port)
    return tuple(chosen.values())


def egress_ports(
    egress: IstioEgressListener, services: Sequence[Service], bind: str
) -> Iterator[OutboundPort]:
    """The ports one egress listener asks for: its own port, or every port of its services."""
    if egress.port is None:
        for service in services:
            for port in service.ports:
                if port.protocol != "UDP":
                    yield OutboundPort(bind, port.number, port.protocol, service)
        return
    number = egress.port.number
    if number == 0 or bind.startswith(UNIX_PREFIX):
        return
    on_port = [s for s in services if s.port(number) is not None]
    first = on_port[0] if on_port else None
    declared = first.port(number) if first is not None else None
    named = named_protocol(egress.port.name)  # the port's protocol, else its name's, else the service's
    protocol = (egress.port.protocol or named or (declared.protocol if declared else "TCP")).upper()
    if is_http(protocol) or first is not None:
        yield OutboundPort(bind, number, protocol, first)


def outbound_listener(port: OutboundPort, snapshot: MeshSnapshot, proxy: Proxy | None = None) -> Listener:
    """HTTP ports: a connection manager on RDS. TCP and TLS ports: the service's ``tcp`` or
    ``tls`` VirtualService rules as filter chains (``tcp_routes.py``; ``proxy`` is whom the
    rules' source matches are checked against), the service itself by default."""
    name = port.name
    if is_http(port.protocol) or port.service is None:
        manager = connection_manager(f"outbound_{name}", OUTBOUND, snapshot)
        manager.rds.CopyFrom(rds(str(port.port)))
        return listener(name, port.bind, port.port, OUTBOUND, hcm_filter(manager))
    default = outbound_cluster_name(port.service.hostname, port.port)
    if proxy is None:
        return listener(name, port.bind, port.port, OUTBOUND, tcp_proxy_filter(default))
    out = listener(name, port.bind, port.port, OUTBOUND, None)
    chains = outbound_l4_chains(snapshot, proxy, port.service, port.port, is_tls(port.protocol))
    out.filter_chains.extend(chains)
    if has_sni_match(chains):
        out.listener_filters.append(tls_inspector())
    return out


def outbound_l4_chains(
    snapshot: MeshSnapshot, proxy: Proxy, service: Service, port: int, tls: bool
) -> list[listener_components_pb2.FilterChain]:
    """The chains of a sidecar's TCP (or TLS) port for ``service``: the ``tcp`` (``tls``) rules
    of the VirtualServices the proxy sees on the port whose hosts select the service."""
    scope = egress_scope(snapshot, proxy, port)
    candidates = scope.virtual_services if scope is not None else ()
    selecting = [vs for vs in candidates if host_selects(vs, service.hostname)]
    destinations = visible_destinations(snapshot, proxy)
    services = {host: service for host, (service, _) in destinations.items()}
    policies = destination_policies(destinations)
    l4 = L4Scope(proxy, port, frozenset({MESH_GATEWAY}), services, policies)
    default = outbound_cluster_name(service.hostname, port)
    return tls_chains(selecting, l4, default) if tls else tcp_chains(selecting, l4, default)


# ---- inbound -------------------------------------------------------------------------------------


def inbound_listener(port: InboundPort, snapshot: MeshSnapshot, authz: Sequence[HttpFilter] = ()) -> Listener:
    """``authz``: the authorization filters when a security policy selects the workload (``authz.py``)."""
    name = f"{port.bind}_{port.port}"
    if not port.is_http:
        return listener(name, port.bind, port.port, INBOUND, tcp_proxy_filter(port.cluster_name))
    manager = connection_manager(f"inbound_{port.port}", INBOUND, snapshot, authz)
    manager.route_config.CopyFrom(inbound_route_config(port))
    manager.set_current_client_cert_details.CopyFrom(
        HCM.SetCurrentClientCertDetails(subject=wrappers_pb2.BoolValue(value=True), uri=True, dns=True)
    )
    if port.protocol in HTTP2_PROTOCOLS:
        manager.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    return listener(name, port.bind, port.port, INBOUND, hcm_filter(manager))


def inbound_route_config(port: InboundPort) -> route_pb2.RouteConfiguration:
    """Istio ``buildSidecarInboundHTTPRouteConfig``: everything to the inbound cluster."""
    action = route_components_pb2.RouteAction(
        cluster=port.cluster_name,
        timeout=duration(NO_TIMEOUT),
        max_stream_duration=route_components_pb2.RouteAction.MaxStreamDuration(
            max_stream_duration=duration(NO_TIMEOUT), grpc_timeout_header_max=duration(NO_TIMEOUT)
        ),
    )
    route = route_components_pb2.Route(
        name="default",
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=action,
        decorator=route_components_pb2.Decorator(operation=f"{port.hostname}:{port.port}/*"),
    )
    host = route_components_pb2.VirtualHost(name=f"inbound|http|{port.port}", domains=["*"], routes=[route])
    return route_pb2.RouteConfiguration(
        name=port.cluster_name, virtual_hosts=[host], validate_clusters=wrappers_pb2.BoolValue(value=False)
    )


# ---- gateway -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayPort:
    bind: str
    port: int

    @property
    def name(self) -> str:
        return f"{WILDCARD}_{self.port}"


def gateway_ports(snapshot: MeshSnapshot, proxy: Proxy) -> list[GatewayPort]:
    """One port per plain-HTTP server port of the Gateways that select the proxy."""
    default_bind = proxy.metadata.get(GATEWAY_BIND) or proxy.ip
    servers: dict[int, list[Server]] = {}
    for server in selected_servers(snapshot, proxy):
        if is_http(server.port.protocol) and not server.bind.startswith(UNIX_PREFIX):
            servers.setdefault(server.port.number, []).append(server)
    return [
        GatewayPort(next((s.bind for s in group if s.bind), default_bind), number)
        for number, group in servers.items()
    ]


def selected_servers(snapshot: MeshSnapshot, proxy: Proxy) -> Iterator[Server]:
    """Servers of the Gateways whose selector is a subset of the proxy's labels (any namespace)."""
    for gateway in snapshot.of_kind("Gateway"):
        selector: Mapping[str, str] = gateway.spec.selector
        if all(proxy.labels.get(k) == v for k, v in selector.items()):
            yield from gateway.spec.servers


def gateway_listeners(snapshot: MeshSnapshot, proxy: Proxy) -> list[Listener]:
    """Plain HTTP ports first; then per other port one listener holding the chains of its HTTPS
    servers (``https_chains``) and of its TCP / TLS servers (``gateway_l4.py``)."""
    authz = authz_filters_for(snapshot, proxy)
    plain = [gateway_listener(p, snapshot, authz) for p in gateway_ports(snapshot, proxy)]
    taken = {_bound(listener)[1] for listener in plain}
    https: dict[int, list[HttpsServer]] = {}
    for server in https_servers(snapshot, proxy):
        if server.server.port.number not in taken:  # a port serves plain HTTP or HTTPS, not both
            https.setdefault(server.server.port.number, []).append(server)
    l4: dict[int, list[L4Server]] = {}
    for l4_server in l4_servers(snapshot, proxy):
        if l4_server.port not in taken:
            l4.setdefault(l4_server.port, []).append(l4_server)
    default_bind = proxy.metadata.get(GATEWAY_BIND) or proxy.ip
    out = list(plain)
    for number in dict.fromkeys([*https, *l4]):
        binds = [s.server.bind for s in https.get(number, ()) if s.server.bind]
        binds += [s.server.bind for s in l4.get(number, ()) if s.server.bind]
        port = GatewayPort(binds[0] if binds else default_bind, number)
        chains = https_chains(https.get(number, ()), port, snapshot, authz)
        for l4_server in l4.get(number, ()):
            chains.extend(server_chains(snapshot, proxy, l4_server))
        if chains:  # a server no rule routes for makes no listener (Envoy needs a chain)
            out.append(chained_listener(port, _distinct_chains(chains)))
    return out


def https_chains(
    servers: Sequence[HttpsServer], port: GatewayPort, snapshot: MeshSnapshot, authz: Sequence[HttpFilter]
) -> list[listener_components_pb2.FilterChain]:
    """One port's HTTPS servers: a chain per server, chosen by SNI, each terminating TLS."""
    out = []
    for server in servers:
        manager = connection_manager(f"outbound_{port.name}", GATEWAY, snapshot, authz)
        manager.rds.CopyFrom(rds(server.route_name))
        chain = listener_components_pb2.FilterChain(filters=[hcm_filter(manager)])
        chain.filter_chain_match.server_names.extend(server.server_names)
        chain.transport_socket.CopyFrom(transport_socket(server_tls_context(server.tls)))
        out.append(chain)
    return out


def chained_listener(port: GatewayPort, chains: Sequence[listener_components_pb2.FilterChain]) -> Listener:
    """A gateway listener with ``chains``; a ``tls_inspector`` when one of them reads the SNI or
    terminates TLS."""
    out = listener(port.name, port.bind, port.port, GATEWAY, None)
    out.filter_chains.extend(chains)
    if any(c.filter_chain_match.server_names or c.HasField("transport_socket") for c in chains):
        out.listener_filters.append(tls_inspector())
    return out


def _distinct_chains(
    chains: Iterable[listener_components_pb2.FilterChain],
) -> list[listener_components_pb2.FilterChain]:
    """The first chain of each match: Envoy refuses two chains that match alike."""
    seen: set[bytes] = set()
    out = []
    for chain in chains:
        key = chain.filter_chain_match.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            out.append(chain)
    return out


def gateway_listener(port: GatewayPort, snapshot: MeshSnapshot, authz: Sequence[HttpFilter] = ()) -> Listener:
    manager = connection_manager(f"outbound_{port.name}", GATEWAY, snapshot, authz)
    manager.rds.CopyFrom(rds(f"http.{port.port}"))
    return listener(port.name, port.bind, port.port, GATEWAY, hcm_filter(manager))


# ---- building blocks -----------------------------------------------------------------------------


def listener(name: str, bind: str, port: int, klass: ListenerClass, network_filter: Any) -> Listener:
    """A listener with one chain holding ``network_filter`` (no chain when it is ``None``)."""
    address = address_pb2.Address(socket_address=address_pb2.SocketAddress(address=bind, port_value=port))
    chains = [listener_components_pb2.FilterChain(filters=[network_filter])] if network_filter else []
    return Listener(name=name, address=address, filter_chains=chains, traffic_direction=klass.direction)


def connection_manager(
    stat_prefix: str, klass: ListenerClass, snapshot: MeshSnapshot, authz: Sequence[HttpFilter] = ()
) -> HCM:
    """Istio ``buildHTTPConnectionManager`` without a route (the caller sets RDS or inline).
    ``authz`` goes first: Istio runs its authorization filters before fault and router."""
    normalize, merge_slashes, escaped_slashes = PATH_NORMALIZATION[
        snapshot.mesh.path_normalization.normalization
    ]
    return HCM(
        codec_type=HCM.AUTO,
        stat_prefix=stat_prefix,
        http_filters=[
            *authz,
            *(http_filter(name, config()) for name, config in HTTP_FILTERS),
        ],
        normalize_path=wrappers_pb2.BoolValue(value=normalize),
        merge_slashes=merge_slashes,
        path_with_escaped_slashes_action=escaped_slashes,
        use_remote_address=wrappers_pb2.BoolValue(value=klass.use_remote_address),
        upgrade_configs=[HCM.UpgradeConfig(upgrade_type="websocket")],
        stream_idle_timeout=duration(NO_TIMEOUT),
        server_name=SERVER_NAME,
        forward_client_cert_details=klass.forward_client_cert,
    )


def rds(route_name: str) -> http_connection_manager_pb2.Rds:
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        initial_fetch_timeout=duration(NO_TIMEOUT),
        resource_api_version=config_source_pb2.V3,
    )
    return http_connection_manager_pb2.Rds(config_source=source, route_config_name=route_name)


def http_filter(name: str, config: pb_message.Message) -> http_connection_manager_pb2.HttpFilter:
    out = http_connection_manager_pb2.HttpFilter(name=name)
    out.typed_config.Pack(config)
    return out


def hcm_filter(manager: HCM) -> listener_components_pb2.Filter:
    out = listener_components_pb2.Filter(name=HCM_FILTER)
    out.typed_config.Pack(manager)
    return out
