"""A sidecar's outbound route configuration ``"<port>"``, the way istiod builds it.

Istio ``pilot/pkg/networking/core/httproute.go`` (``buildSidecarOutboundHTTPRouteConfig``,
``BuildSidecarOutboundVirtualHosts``, ``selectVirtualServices``, ``buildCatchAllVirtualHost``) and
``route/route.go`` (``BuildSidecarVirtualHostWrapper``, ``buildSidecarVirtualHostsForVirtualService``,
``separateVSHostsAndServices``, ``buildSidecarVirtualHostForService``,
``BuildDefaultHTTPOutboundRoute``); ``model/sidecar.go`` ``computeWildcardHostVirtualServiceIndex``:

1. The egress listener for the port picks the services and the mesh VirtualServices
   (``route_scope.py``). Services are cut down to the port; VirtualServices are kept when a host
   names one of those services, or overlaps one by wildcard (port 80 keeps all: Istio's legacy
   rule).
2. Every VirtualService with routes on this port (``http_routes.py``) makes a virtual host for
   each of its hosts that is no service, and one for each service it claims: a service named
   exactly, or one for which its wildcard host is the most specific VirtualService host.
3. Every other HTTP service gets Istio's default route to ``outbound|<port>||<host>``.
4. Virtual hosts are named ``<host>:<port>``; the first claim on a name or on a domain wins
   (``virtual_hosts.py``). They are sorted by name and followed by the catch-all: ``allow_any``
   to the PassthroughCluster (or the Sidecar's egressProxy) under ALLOW_ANY, ``block_all`` (502)
   under REGISTRY_ONLY.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from pilotfish.config import checks
from pilotfish.config.networking.common import Destination
from pilotfish.config.networking.destination_rule import ConsistentHashLB
from pilotfish.registry.model import Service, ServicePort
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.destination_rules import is_wildcard, more_specific
from pilotfish.xds.translate.http_routes import RouteOptions, build_http_routes, destination_cluster
from pilotfish.xds.translate.names import outbound_cluster_name
from pilotfish.xds.translate.route_hash import HashLookup, hash_lookup, hash_policies
from pilotfish.xds.translate.route_match import RouteMatch
from pilotfish.xds.translate.route_policies import default_retry_policy, set_timeout
from pilotfish.xds.translate.route_scope import REGISTRY_ONLY, egress_scope, outbound_traffic_mode
from pilotfish.xds.translate.sidecar_scope import sidecar_for
from pilotfish.xds.translate.virtual_hosts import (
    Route,
    RouteConfiguration,
    VirtualHost,
    dedupe_domains,
    domain_name,
    ipv6_compliant,
    route_configuration,
    service_domains,
    virtual_host,
)
from pilotfish.xds.translate.virtual_services import AppliedVirtualService

MESH_GATEWAY = "mesh"
DEFAULT_ROUTE_NAME = "default"
PASSTHROUGH = "allow_any"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACK_HOLE = "block_all"
BLACK_HOLE_STATUS = 502
LEGACY_ALL_HOSTS_PORT = 80  # Istio keeps VirtualServices of any host on port 80
# Istio protocol.IsHTTPOrSniffed: these, and any protocol Istio does not know (sniffed).
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})
NON_HTTP_PROTOCOLS = frozenset({"HTTPS", "TLS", "TCP", "UDP", "MONGO", "REDIS", "MYSQL"})


def is_http_or_sniffed(port: ServicePort) -> bool:
    protocol = port.protocol.upper()
    return protocol in HTTP_PROTOCOLS or protocol not in NON_HTTP_PROTOCOLS


# ---- the default route (BuildDefaultHTTPOutboundRoute) --------------------------------------------


def default_outbound_route(cluster: str, operation: str, hashing: ConsistentHashLB | None) -> Route:
    """Istio ``BuildDefaultHTTPOutboundRoute``: everything to the cluster, no timeout, the mesh's
    default retries (with the previous-hosts predicate even when the route hashes)."""
    route = Route(name=DEFAULT_ROUTE_NAME, match=RouteMatch(prefix="/"))
    route.decorator.operation = operation
    route.route.cluster = cluster
    route.route.retry_policy.CopyFrom(default_retry_policy(consistent_hash=False))
    set_timeout(route.route, None)
    route.route.hash_policy.extend(hash_policies(hashing))
    return route


def trace_operation(host: str, port: int) -> str:
    """Istio ``telemetry.TraceOperation``."""
    return f"{domain_name(host, port)}/*"


# ---- sidecar outbound (BuildSidecarOutboundVirtualHosts) -------------------------------------------


@dataclass(frozen=True, slots=True)
class VirtualHostWrapper:
    """Istio ``VirtualHostWrapper``: routes, and the hosts and services they serve on a port."""

    port: int
    services: tuple[Service, ...]
    virtual_service_hosts: tuple[str, ...]
    routes: tuple[Route, ...]


def sidecar_route_configuration(snapshot: MeshSnapshot, proxy: Proxy, port: int) -> RouteConfiguration:
    """Istio ``buildSidecarOutboundHTTPRouteConfig`` for route ``"<port>"``."""
    hosts = sorted(sidecar_virtual_hosts(snapshot, proxy, port), key=lambda v: v.name)
    hosts.append(catch_all_virtual_host(snapshot, proxy))
    return route_configuration(str(port), hosts)


def sidecar_virtual_hosts(snapshot: MeshSnapshot, proxy: Proxy, port: int) -> list[VirtualHost]:
    scope = egress_scope(snapshot, proxy, port)
    if scope is None:
        return []
    services = port_services(scope.services, port)
    virtual_services = scope.virtual_services
    if port != LEGACY_ALL_HOSTS_PORT:
        virtual_services = tuple(vs for vs in virtual_services if selects_service(vs, services))
    hashes = hash_lookup(snapshot, proxy)
    options = RouteOptions(proxy, port, frozenset({MESH_GATEWAY}), services, hashes)
    wrappers = virtual_host_wrappers(virtual_services, services, options, hashes)
    return build_virtual_hosts(wrappers, port, proxy.dns_domain)


def port_services(services: Iterable[Service], port: int) -> dict[str, Service]:
    """The services with ``port``, cut down to that port, by lower-case hostname (Istio's
    ``servicesByName``: a route to such a service without a port uses the listener port)."""
    out: dict[str, Service] = {}
    for service in services:
        service_port = service.port(port)
        if service_port is not None:
            out[service.hostname.lower()] = replace(service, ports=(service_port,))
    return out


def selects_service(service: AppliedVirtualService, services: Mapping[str, Service]) -> bool:
    """Istio ``selectVirtualServices``: a host names a service, or overlaps one by wildcard."""
    for host in (h.lower() for h in service.spec.hosts):
        if host in services:
            return True
        candidates = services if is_wildcard(host) else [h for h in services if is_wildcard(h)]
        if any(checks.host_matches(host, name) for name in candidates):
            return True
    return False


def virtual_host_wrappers(
    virtual_services: Sequence[AppliedVirtualService],
    services: Mapping[str, Service],
    options: RouteOptions,
    hashes: HashLookup,
) -> list[VirtualHostWrapper]:
    """Istio ``BuildSidecarVirtualHostWrapper``: VirtualService hosts first, then the default
    route of every HTTP service no VirtualService claimed (in hostname order)."""
    claims = most_specific_claims(virtual_services, services)
    out: list[VirtualHostWrapper] = []
    for service in virtual_services:
        out.extend(virtual_service_wrappers(service, services, claims, options))
    claimed = {s.hostname for wrapper in out for s in wrapper.services}
    for hostname in sorted(services):
        unclaimed = services[hostname]
        if unclaimed.hostname not in claimed:
            out.extend(default_wrappers(unclaimed, hashes))
    return out


def default_wrappers(service: Service, hashes: HashLookup) -> Iterable[VirtualHostWrapper]:
    """Istio ``buildSidecarVirtualHostForService`` for each HTTP port of the service."""
    for port in service.ports:
        if not is_http_or_sniffed(port):
            continue
        cluster = outbound_cluster_name(service.hostname, port.number)
        operation = trace_operation(service.hostname, port.number)
        route = default_outbound_route(cluster, operation, hashes.for_service(service, port.number))
        yield VirtualHostWrapper(port.number, (service,), (), (route,))


def virtual_service_wrappers(
    service: AppliedVirtualService,
    services: Mapping[str, Service],
    claims: Mapping[str, tuple[str, str]],
    options: RouteOptions,
) -> list[VirtualHostWrapper]:
    """Istio ``buildSidecarVirtualHostsForVirtualService``."""
    routes = build_http_routes(service, options)
    if not routes:
        return []
    hosts, matching = split_hosts(service, services, claims)
    by_port: dict[int, list[Service]] = {}
    for matched in matching:
        for port in matched.ports:
            if is_http_or_sniffed(port):
                by_port.setdefault(port.number, []).append(matched)
    if not by_port and options.listener_port == LEGACY_ALL_HOSTS_PORT:
        by_port[LEGACY_ALL_HOSTS_PORT] = []
    return [VirtualHostWrapper(p, tuple(s), tuple(hosts), tuple(routes)) for p, s in by_port.items()]


def split_hosts(
    service: AppliedVirtualService, services: Mapping[str, Service], claims: Mapping[str, tuple[str, str]]
) -> tuple[list[str], list[Service]]:
    """Istio ``separateVSHostsAndServices``: (hosts that are no service, services it claims)."""
    hosts: list[str] = []
    matching: list[Service] = []
    wildcards = [h for h in service.spec.hosts if is_wildcard(h)]
    for host in service.spec.hosts:
        if not is_wildcard(host):
            found = services.get(host)
            if found is not None:
                matching.append(found)
            else:
                hosts.append(host)
    for host in wildcards:
        overlapping = [name for name in services if checks.host_matches(name, host)]
        matching.extend(services[name] for name in overlapping if claims.get(name) == service.key)
        if not overlapping:
            hosts.append(host)
    return hosts, matching


def most_specific_claims(
    virtual_services: Sequence[AppliedVirtualService], services: Mapping[str, Service]
) -> dict[str, tuple[str, str]]:
    """Istio ``computeWildcardHostVirtualServiceIndex``: for each service, the VirtualService whose
    host matches it most specifically (an exact host first); the first one wins a tie."""
    exact: dict[str, tuple[str, str]] = {}
    wildcard: dict[str, tuple[str, str]] = {}
    for service in virtual_services:
        for host in service.spec.hosts:
            (wildcard if is_wildcard(host) else exact).setdefault(host, service.key)
    out: dict[str, tuple[str, str]] = {}
    for name in services:
        if not is_wildcard(name) and name in exact:
            out[name] = exact[name]
            continue
        best = None
        for host in wildcard:
            if checks.host_subset_of(name, host) and (best is None or more_specific(host, best)):
                best = host
        if best is not None:
            out[name] = wildcard[best]
    return out


def build_virtual_hosts(
    wrappers: Sequence[VirtualHostWrapper], port: int, proxy_domain: str
) -> list[VirtualHost]:
    """Istio ``BuildSidecarOutboundVirtualHosts``' virtual-host loop for the listener port."""
    known_fqdns = {
        n for w in wrappers for s in w.services for n in (domain_name(s.hostname, w.port), s.hostname)
    }
    names: set[str] = set()
    claimed: set[str] = set()
    out: list[VirtualHost] = []
    for wrapper in wrappers:
        if not wrapper.routes or wrapper.port != port:
            continue
        candidates: list[tuple[str, list[str], list[str]]] = [
            (host.lower(), [ipv6_compliant(host.lower())], []) for host in wrapper.virtual_service_hosts
        ]
        candidates.extend((s.hostname, *service_domains(s, proxy_domain)) for s in wrapper.services)
        for hostname, domains, alt_hosts in candidates:
            name = domain_name(hostname, wrapper.port)
            if name in names:
                continue
            names.add(name)
            kept = dedupe_domains(domains, claimed, alt_hosts, known_fqdns)
            if kept:
                out.append(virtual_host(name, kept, wrapper.routes))
    return out


def catch_all_virtual_host(snapshot: MeshSnapshot, proxy: Proxy) -> VirtualHost:
    """Istio ``buildCatchAllVirtualHost``: unknown hosts go to the PassthroughCluster (or the
    Sidecar's egressProxy) under ALLOW_ANY, and get 502 under REGISTRY_ONLY."""
    route = Route(match=RouteMatch(prefix="/"))
    if outbound_traffic_mode(snapshot, proxy) == REGISTRY_ONLY:
        route.name = BLACK_HOLE
        route.direct_response.status = BLACK_HOLE_STATUS
        return virtual_host(BLACK_HOLE, ["*"], [route])
    route.name = PASSTHROUGH
    route.route.cluster = egress_cluster(snapshot, proxy)
    set_timeout(route.route, None)
    return virtual_host(PASSTHROUGH, ["*"], [route])


def egress_cluster(snapshot: MeshSnapshot, proxy: Proxy) -> str:
    sidecar = sidecar_for(snapshot, proxy)
    policy = sidecar.spec.outbound_traffic_policy if sidecar is not None else None
    proxy_target: Destination | None = policy.egress_proxy if policy is not None else None
    return PASSTHROUGH_CLUSTER if proxy_target is None else destination_cluster(proxy_target, None, 0)
