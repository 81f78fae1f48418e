"""The domains of a sidecar's outbound virtual host — every Host header that names the service.

Istio ``pilot/pkg/networking/core/httproute.go``: ``generateVirtualHostDomains`` (the hostname,
its alternative names, the service's addresses), ``GenerateAltVirtualHosts`` (the absolute FQDN
``name.`` — ``PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN``, on by default — and the short forms the
proxy's DNS search domain allows), ``generateAltVirtualHostsForKubernetesService``
(``reviews``, ``reviews.prod.svc`` and ``reviews.prod`` for a proxy in ``prod``;
``reviews.prod`` and ``reviews.prod.svc`` from elsewhere), ``getUniqueAndSharedDNSDomain`` and
``dedupeDomains`` (a domain an earlier virtual host claimed is dropped, and so is a short form
that is another service's full name).

Envoy sidecars match hosts with ``ignore_port_in_host_matching`` (Istio ``SidecarIgnorePort``),
so no domain carries a ``:port`` suffix: ``reviews:9080`` matches the domain ``reviews``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2, route_pb2

from pilotfish.registry.model import Service

RouteConfiguration: TypeAlias = route_pb2.RouteConfiguration
VirtualHost: TypeAlias = route_components_pb2.VirtualHost
Route: TypeAlias = route_components_pb2.Route

SVC_MARKER = ".svc."
UNSPECIFIED_IP = "0.0.0.0"
MAX_DIRECT_RESPONSE_BODY = 1024 * 1024  # Istio DefaultMaxDirectResponseBodySizeBytes


def virtual_host(name: str, domains: Sequence[str], routes: Iterable[Route]) -> VirtualHost:
    """A virtual host as Istio builds them (request attempt counts on: ``ProxyHeaders`` default)."""
    return VirtualHost(name=name, domains=domains, routes=routes, include_request_attempt_count=True)


def empty_route_configuration(name: str) -> RouteConfiguration:
    """What Istio sends for a route name it cannot build: no virtual hosts (Envoy answers 404)."""
    out = RouteConfiguration(name=name)
    out.validate_clusters.value = False
    return out


def route_configuration(name: str, hosts: Iterable[VirtualHost]) -> RouteConfiguration:
    """An outbound or gateway RouteConfiguration: cluster names are not validated (clusters may
    arrive later), direct responses up to 1 MiB, the port ignored when matching hosts."""
    out = empty_route_configuration(name)
    out.virtual_hosts.extend(hosts)
    out.ignore_port_in_host_matching = True
    out.max_direct_response_body_size_bytes.value = MAX_DIRECT_RESPONSE_BODY
    return out


def domain_name(host: str, port: int) -> str:
    """Istio ``util.DomainName``: ``host:port`` (the virtual host's name)."""
    return f"{host}:{port}"


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ipv6_compliant(host: str) -> str:
    """Istio ``util.IPv6Compliant``: an IPv6 address in brackets, as it appears in a Host header."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def service_address(address: str) -> str:
    """A ServiceEntry address as Istio keeps it: a single-host CIDR becomes its address."""
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return address
    if "/" in address and network.num_addresses == 1:
        return str(network.network_address)
    return address


def kubernetes_alt_hosts(hostname: str, proxy_domain: str) -> list[str]:
    """Istio ``generateAltVirtualHostsForKubernetesService`` (without ports)."""
    svc = hostname.find(SVC_MARKER)
    if svc <= 0:
        return []
    dot = hostname.index(".")
    if dot + 1 >= len(hostname) or dot + 1 > svc:
        return []
    if hostname[dot + 1 : svc] == proxy_domain[: proxy_domain.index(SVC_MARKER)]:
        return [hostname[:dot], hostname[:svc] + ".svc", hostname[:svc]]
    return [hostname[:svc], hostname[:svc] + ".svc"]


def unique_and_shared(hostname: str, proxy_domain: str) -> tuple[list[str], list[str]]:
    """Istio ``getUniqueAndSharedDNSDomain``: the host's labels before and within the suffix it
    shares with the proxy's domain."""
    host_labels, domain_labels = hostname.split("."), proxy_domain.split(".")
    shared = 0
    for a, b in zip(reversed(host_labels), reversed(domain_labels), strict=False):
        if a != b:
            break
        shared += 1
    if shared == 0:
        return host_labels, []
    return host_labels[: len(host_labels) - shared], host_labels[len(host_labels) - shared :]


def alt_virtual_hosts(hostname: str, proxy_domain: str) -> list[str]:
    """Istio ``GenerateAltVirtualHosts`` for a sidecar (no port suffixes)."""
    out = [] if is_ip(hostname) else [hostname + "."]
    if SVC_MARKER in proxy_domain:
        suffix = proxy_domain[proxy_domain.index(SVC_MARKER) :]
        return out + kubernetes_alt_hosts(hostname, proxy_domain) if hostname.endswith(suffix) else out
    unique, shared = unique_and_shared(hostname, proxy_domain)
    if not shared:
        return out
    short = ".".join(unique)
    out.append(short)
    if len(unique) == 2:
        out.append(f"{short}.{shared[0]}")
    return out


def service_domains(service: Service, proxy_domain: str) -> tuple[list[str], list[str]]:
    """Istio ``generateVirtualHostDomains``: (domains, the alternative names among them)."""
    alt = alt_virtual_hosts(service.hostname, proxy_domain)
    addresses = (service_address(a) for a in service.addresses)
    domains = [ipv6_compliant(service.hostname), *alt]
    domains.extend(ipv6_compliant(a) for a in addresses if a and a != UNSPECIFIED_IP)
    return domains, alt


def dedupe_domains(
    domains: Iterable[str], claimed: set[str], alt_hosts: Iterable[str], known_fqdns: set[str]
) -> list[str]:
    """Istio ``dedupeDomains``; records what it keeps in ``claimed`` (lower case)."""
    alternatives = set(alt_hosts)
    out: list[str] = []
    for domain in domains:
        if domain.lower() in claimed or (domain in alternatives and domain in known_fqdns):
            continue
        out.append(domain)
        claimed.add(domain.lower())
    return out
