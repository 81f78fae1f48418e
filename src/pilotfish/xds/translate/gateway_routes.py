"""A gateway's route configuration ``http.<port>``, the way istiod builds it.

Istio ``pilot/pkg/networking/core/gateway.go`` (``buildGatewayHTTPRouteConfig``,
``buildNameToServiceMapForHTTPRoutes``, ``collapseDuplicateRoutes``), ``route/route.go``
(``SortVHostRoutes``), ``pilot/pkg/model/gateway.go`` (``MergeGateways``: plain HTTP servers share
route ``http.<port>``; ``sanitizeServerHostNamespace``) and ``pkg/config/host/names.go``
(``NamesForNamespace``, ``Intersection``):

1. The servers: every plain-HTTP server on the port of every Gateway whose ``selector`` is a
   subset of the proxy's labels (in any namespace), Gateways in name order. Each server belongs
   to its Gateway ``namespace/name``. A route ``https.<port>.<portName>.<gateway>.<namespace>``
   has the one HTTPS server it is named after (``gateway_tls.py``).
2. For each server, each VirtualService bound to that Gateway and visible to the proxy's
   namespace (``virtual_services.py``): the server hosts it may use (``ns/host`` entries only for
   its own namespace or ``*/``; ``./host`` is the Gateway's namespace) intersected with its hosts
   (of two overlapping hosts, the narrower). No intersection, no routes.
3. Its routes for this Gateway and port (``http_routes.py``; destinations resolve to the service in
   the VirtualService's namespace when the proxy may see it, else the one the proxy sees) go to one
   virtual host per intersecting host, named ``<host>:<port>`` with that one domain; a host
   already seen gets the routes appended. A server with ``tls.httpsRedirect`` makes its hosts
   require TLS.
4. Virtual hosts whose route lists are the same are collapsed into the alphabetically first;
   catch-all routes move to the end of each; virtual hosts are sorted by name. With none at all,
   one ``blackhole:<port>`` virtual host without routes: every request gets 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotfish.config import checks
from pilotfish.config.networking.common import is_http
from pilotfish.config.networking.gateway import Server
from pilotfish.config.resource import Resource
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.endpoints import visible_services
from pilotfish.xds.translate.gateway_tls import https_servers
from pilotfish.xds.translate.http_routes import RouteOptions, build_http_routes
from pilotfish.xds.translate.route_hash import HashLookup, hash_lookup
from pilotfish.xds.translate.route_match import is_catch_all
from pilotfish.xds.translate.virtual_hosts import (
    Route,
    RouteConfiguration,
    VirtualHost,
    domain_name,
    empty_route_configuration,
    route_configuration,
    virtual_host,
)
from pilotfish.xds.translate.virtual_services import (
    AppliedVirtualService,
    virtual_service_index,
    virtual_services_for_gateway,
)

GATEWAY_ROUTE_PREFIX = "http."
BLACKHOLE_HOST = "blackhole"
ANY_NAMESPACE = "*"
GATEWAY_NAMESPACE = "."


@dataclass(frozen=True, slots=True)
class GatewayServer:
    """One server of a Gateway that selects the proxy, and the Gateway's ``namespace/name``."""

    gateway: str
    namespace: str
    server: Server


@dataclass(slots=True)
class HostRoutes:
    """A virtual host being assembled (Istio's ``vHostDedupMap`` entries)."""

    name: str
    domains: list[str]
    routes: list[Route] = field(default_factory=list)
    require_tls: bool = False

    def same_routes(self, other: HostRoutes) -> bool:
        """Istio ``vhostMergeable``: the very same routes, and the same TLS requirement."""
        same = len(self.routes) == len(other.routes) and all(
            a is b for a, b in zip(self.routes, other.routes, strict=True)
        )
        return same and self.require_tls == other.require_tls


# ---- which servers ------------------------------------------------------------------------------


def route_port(name: str) -> int | None:
    """The port of a gateway route name ``http.<port>``; ``None`` for any other name."""
    port = name.removeprefix(GATEWAY_ROUTE_PREFIX)
    return int(port) if name.startswith(GATEWAY_ROUTE_PREFIX) and port.isascii() and port.isdigit() else None


def selects(gateway: Resource[Any], proxy: Proxy) -> bool:
    """A Gateway's selector is a subset of the gateway proxy's labels."""
    return all(proxy.labels.get(k) == v for k, v in gateway.spec.selector.items())


def http_servers(snapshot: MeshSnapshot, proxy: Proxy, port: int) -> list[GatewayServer]:
    """Istio ``MergeGateways`` for route ``http.<port>``: plain HTTP servers on the port."""
    gateways = sorted(snapshot.of_kind("Gateway"), key=lambda r: (r.name, r.namespace))
    return [
        GatewayServer(f"{gw.namespace}/{gw.name}", gw.namespace, server)
        for gw in gateways
        if selects(gw, proxy)
        for server in gw.spec.servers
        if server.port.number == port and is_http(server.port.protocol)
    ]


def route_servers(snapshot: MeshSnapshot, proxy: Proxy, name: str) -> tuple[int | None, list[GatewayServer]]:
    """The port and servers of a gateway route: ``http.<port>``'s plain HTTP servers, or the
    HTTPS server whose route name it is."""
    port = route_port(name)
    if port is not None:
        return port, http_servers(snapshot, proxy, port)
    https = [s for s in https_servers(snapshot, proxy) if s.route_name == name]
    servers = [GatewayServer(s.gateway, s.namespace, s.server) for s in https]
    return (https[0].server.port.number if https else None), servers


def server_hosts(server: GatewayServer, namespace: str) -> list[str]:
    """Istio ``NamesForNamespace`` after ``sanitizeServerHostNamespace``: the hosts of the server
    a VirtualService in ``namespace`` may use."""
    out: list[str] = []
    for entry in server.server.hosts:
        scope, slash, host = entry.partition("/")
        if not slash:
            out.append(entry)
        elif (server.namespace if scope == GATEWAY_NAMESPACE else scope) in (namespace, ANY_NAMESPACE):
            out.append(host)
    return out


def intersection(server: Sequence[str], service: Sequence[str]) -> list[str]:
    """Istio ``Names.Intersection``: for each overlapping pair, the narrower host, once."""
    out: list[str] = []
    for a in server:
        for b in service:
            narrower = a if checks.host_subset_of(a, b) else b if checks.host_subset_of(b, a) else None
            if narrower is not None and narrower not in out:
                out.append(narrower)
    return out


# ---- which services destinations name ------------------------------------------------------------


def destination_hosts(service: AppliedVirtualService) -> Iterator[str]:
    for rule in service.spec.http:
        if rule.mirror is not None:
            yield rule.mirror.host
        yield from (m.destination.host for m in rule.mirrors)
        yield from (d.destination.host for d in rule.route)


def services_for(
    snapshot: MeshSnapshot, proxy: Proxy, service: AppliedVirtualService, visible: Mapping[str, Service]
) -> dict[str, Service]:
    """Istio ``buildNameToServiceMapForHTTPRoutes``: a destination host's service in the
    VirtualService's namespace when the proxy may see it, else the one the proxy sees."""
    out: dict[str, Service] = {}
    for host in destination_hosts(service):
        if host in out:
            continue
        own = next(
            (s for s in snapshot.services if s.hostname == host and s.namespace == service.namespace), None
        )
        found = own if own is not None and own.visible_from(proxy.namespace) else visible.get(host)
        if found is not None:
            out[host] = found
    return out


# ---- the route configuration --------------------------------------------------------------------


def gateway_route_configuration(snapshot: MeshSnapshot, proxy: Proxy, name: str) -> RouteConfiguration:
    """Istio ``buildGatewayHTTPRouteConfig`` for route ``http.<port>`` or an HTTPS server's."""
    port, servers = route_servers(snapshot, proxy, name)
    if port is None or not servers:
        return empty_route_configuration(name)
    hosts = gateway_hosts(snapshot, proxy, port, servers)
    if not hosts:
        blackhole = VirtualHost(name=domain_name(BLACKHOLE_HOST, port), domains=["*"])
        return route_configuration(name, [blackhole])
    virtual_hosts = [finished(h) for h in collapse_duplicates(hosts)]
    return route_configuration(name, sorted(virtual_hosts, key=lambda v: v.name))


def gateway_hosts(
    snapshot: MeshSnapshot, proxy: Proxy, port: int, servers: Iterable[GatewayServer]
) -> dict[str, HostRoutes]:
    """Istio's ``vHostDedupMap``: virtual hosts by host, routes in server and VirtualService order."""
    index = virtual_service_index(snapshot)
    hashes = hash_lookup(snapshot, proxy)
    visible = {s.hostname: s for s in visible_services(snapshot, proxy)}
    cache: dict[tuple[str, tuple[str, str]], list[Route]] = {}
    hosts: dict[str, HostRoutes] = {}
    for server in servers:
        redirect = server.server.tls is not None and server.server.tls.https_redirect
        for service in virtual_services_for_gateway(index, proxy.namespace, server.gateway):
            matching = intersection(server_hosts(server, service.namespace), service.spec.hosts)
            if not matching:
                continue
            key = (server.gateway, service.key)
            if key not in cache:
                services = services_for(snapshot, proxy, service, visible)
                cache[key] = gateway_routes(service, server, port, proxy, services, hashes)
            for host in (h.lower() for h in matching):
                entry = hosts.setdefault(host, HostRoutes(domain_name(host, port), [host]))
                entry.routes.extend(cache[key])
                entry.require_tls = entry.require_tls or redirect
        if redirect:
            require_tls(hosts, server, port)
    return hosts


def gateway_routes(
    service: AppliedVirtualService,
    server: GatewayServer,
    port: int,
    proxy: Proxy,
    services: Mapping[str, Service],
    hashes: HashLookup,
) -> list[Route]:
    options = RouteOptions(
        proxy, port, frozenset({server.gateway}), services, hashes, is_tls=server.server.tls is not None
    )
    return build_http_routes(service, options)


def require_tls(hosts: dict[str, HostRoutes], server: GatewayServer, port: int) -> None:
    """An ``httpsRedirect`` server's hosts require TLS, with or without routes."""
    for entry in server.server.hosts:
        host = entry.rpartition("/")[2].lower()
        hosts.setdefault(host, HostRoutes(domain_name(host, port), [host])).require_tls = True


def collapse_duplicates(hosts: Mapping[str, HostRoutes]) -> list[HostRoutes]:
    """Istio ``collapseDuplicateRoutes``: hosts with the very same routes share one virtual host,
    the alphabetically first, which takes the others' domains."""
    kept: list[HostRoutes] = []
    for host in sorted(hosts):
        entry = hosts[host]
        primary = next((k for k in kept if k.same_routes(entry)), None)
        if primary is None:
            kept.append(HostRoutes(entry.name, list(entry.domains), list(entry.routes), entry.require_tls))
        else:
            primary.domains.extend(entry.domains)
    return kept


def finished(entry: HostRoutes) -> VirtualHost:
    """Istio ``SortVHostRoutes``: catch-all routes last, the others in order."""
    routes = [r for r in entry.routes if not is_catch_all(r.match)]
    routes.extend(r for r in entry.routes if is_catch_all(r.match))
    out = virtual_host(entry.name, entry.domains, routes)
    if entry.require_tls:
        out.require_tls = VirtualHost.ALL
    return out
