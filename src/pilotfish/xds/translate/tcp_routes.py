"""VirtualService ``tcp`` and ``tls`` rules → listener filter chains with ``tcp_proxy`` (pure).

Istio ``pilot/pkg/networking/core/listener.go`` (``buildSidecarOutboundTCPTLSFilterChainOpts``,
``buildSidecarOutboundTLSFilterChainOpts``, ``buildSidecarOutboundTCPFilterChainOpts``),
``networkfilter.go`` (``buildOutboundNetworkFilters``, ``...WithSingleDestination``,
``...WithWeightedClusters``) and ``gateway.go`` (``buildGatewayNetworkFiltersFromTCPRoutes``,
``l4SingleMatch``, ``l4MultiMatch``):

- the VirtualServices of a TCP or TLS port are those the proxy sees for the gateway (``mesh`` on
  sidecars) whose hosts match the port's service; rules in order;
- a match applies when its ``port`` is unset or the listener port, its ``gateways`` (when set)
  name one of the proxy's gateways, its ``sourceLabels`` are a subset of the proxy's labels and its
  ``sourceNamespace`` (when set) is the proxy's namespace (``matchTCP``/``matchTLS``);
- on a gateway only ``port`` and ``gateways`` count (``l4SingleMatch``: source labels and
  namespace are the sidecars' business);
- a ``tcp`` rule without matches, or with a match without ``destinationSubnets`` or
  ``sourceSubnet``, is the catch-all:
  nothing after it is built. ``destinationSubnets`` become the chain's ``prefix_ranges`` and
  ``sourceSubnet`` its ``source_prefix_ranges`` (a chain that only narrows, so the rules after it
  still apply). Istio treats a subnet match on a listener bound to one address as the catch-all
  too; pilotfish binds every outbound listener to one address, so it keeps the subnet as Envoy's
  match instead, which is what the user wrote: connections to another local address fall through;
- a ``tls`` match becomes a chain matched on its ``sniHosts`` (``server_names``; ``*`` matches
  any name) and its subnets; two matches with the same SNI hosts and subnets make one chain
  (``matchHasBeenHandled``); the listener gets a ``tls_inspector``;
- with no applicable rule, the port's own service is the destination (the default chain);
- one destination: ``tcp_proxy`` with ``cluster`` (stat prefix = the cluster), the cluster's
  DestinationRule TCP idle timeout and source-IP hashing; several:
  ``weighted_clusters`` (zero weights dropped) with stat prefix ``<vs name>.<vs namespace>``.

Every chain carries exactly one network filter, the ``tcp_proxy``; filters that must run before it
(network RBAC) are inserted at the front of ``FilterChain.filters`` by their own module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from pilotfish.config import checks
from pilotfish.config.decode import parse_duration
from pilotfish.config.networking.destination_rule import TrafficPolicy
from pilotfish.config.networking.virtual_service import (
    L4MatchAttributes,
    RouteDestination,
    TLSMatchAttributes,
)
from pilotfish.registry.model import Service
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.destination_rules import AppliedRule
from pilotfish.xds.translate.http_routes import destination_cluster
from pilotfish.xds.translate.names import parse_cluster_name
from pilotfish.xds.translate.traffic_policy import cluster_policy
from pilotfish.xds.translate.virtual_services import AppliedVirtualService

FilterChain: TypeAlias = listener_components_pb2.FilterChain
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ANY_SNI = "*"


# The traffic policy of a destination cluster (host, port, subset), for its TCP proxy settings.
PolicyLookup: TypeAlias = Callable[[str, int, str], TrafficPolicy | None]


def _no_policy(host: str, port: int, subset: str) -> TrafficPolicy | None:
    return None


def destination_policies(destinations: Mapping[str, tuple[Service, AppliedRule | None]]) -> PolicyLookup:
    """The policy lookup for a proxy's ``visible_destinations``: the cluster's traffic policy as
    CDS builds it (``traffic_policy.cluster_policy``)."""

    def lookup(host: str, port: int, subset: str) -> TrafficPolicy | None:
        found = destinations.get(host)
        rule = found[1] if found is not None else None
        if rule is None:
            return None
        return cluster_policy(rule.spec.traffic_policy, port, rule.spec.subset(subset) if subset else None)

    return lookup


@dataclass(frozen=True, slots=True)
class L4Scope:
    """Who is asking and on which port: what ``matchTCP``/``matchTLS`` read."""

    proxy: Proxy
    port: int
    gateways: frozenset[str]  # the proxy's gateway names (``mesh`` for a sidecar)
    services: Mapping[str, Service]  # destination hosts → services (for their only port)
    policy_for: PolicyLookup = _no_policy
    match_source: bool = True  # sidecars check sourceLabels/sourceNamespace; gateways do not


def tcp_proxy_filter(
    cluster: str, stat_prefix: str = "", policy: TrafficPolicy | None = None
) -> listener_components_pb2.Filter:
    """Istio's single-destination TCP proxy (``buildOutboundNetworkFiltersWithSingleDestination``):
    the cluster is also the stat prefix; the destination's ``connectionPool.tcp.idleTimeout``
    bounds idle connections and ``consistentHash.useSourceIp`` hashes on the client's address
    (``maybeSetHashPolicy``)."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix or cluster, cluster=cluster)
    pool = policy.connection_pool if policy is not None else None
    if pool is not None and pool.tcp is not None and pool.tcp.idle_timeout:
        proxy.idle_timeout.FromTimedelta(parse_duration(pool.tcp.idle_timeout))
    lb = policy.load_balancer if policy is not None else None
    if lb is not None and lb.consistent_hash is not None and lb.consistent_hash.use_source_ip:
        proxy.hash_policy.add().source_ip.SetInParent()
    out = listener_components_pb2.Filter(name=TCP_PROXY_FILTER)
    out.typed_config.Pack(proxy)
    return out


def route_filter(
    routes: Sequence[RouteDestination], scope: L4Scope, service: AppliedVirtualService
) -> listener_components_pb2.Filter:
    """``buildOutboundNetworkFilters``: one destination or weighted clusters."""
    clusters = [
        (destination_cluster(d.destination, scope.services.get(d.destination.host), scope.port), d.weight)
        for d in routes
    ]
    if len(clusters) == 1:
        return single_destination(clusters[0][0], scope)
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=f"{service.name}.{service.namespace}")
    for name, weight in clusters:
        if weight > 0:
            proxy.weighted_clusters.clusters.add(name=name, weight=weight)
    out = listener_components_pb2.Filter(name=TCP_PROXY_FILTER)
    out.typed_config.Pack(proxy)
    return out


def single_destination(cluster: str, scope: L4Scope) -> listener_components_pb2.Filter:
    """``tcp_proxy`` to one cluster with the cluster's own traffic policy."""
    key = parse_cluster_name(cluster)
    policy = scope.policy_for(key.hostname, key.port, key.subset) if key is not None else None
    return tcp_proxy_filter(cluster, policy=policy)


def match_applies(match: L4MatchAttributes | TLSMatchAttributes, scope: L4Scope) -> bool:
    """Istio ``matchTCP`` / ``matchTLS``."""
    if match.port and match.port != scope.port:
        return False
    if match.gateways and not any(g in scope.gateways for g in match.gateways):
        return False
    if not scope.match_source:
        return True
    if not all(scope.proxy.labels.get(k) == v for k, v in match.source_labels.items()):
        return False
    return not match.source_namespace or match.source_namespace == scope.proxy.namespace


def cidr_ranges(subnets: Iterable[str]) -> list[address_pb2.CidrRange]:
    """``10.0.0.0/8`` or a bare address (a /32 or /128)."""
    out = []
    for subnet in subnets:
        address, _, length = subnet.partition("/")
        default = 128 if ":" in address else 32
        prefix = wrappers_pb2.UInt32Value(value=int(length or default))
        out.append(address_pb2.CidrRange(address_prefix=address, prefix_len=prefix))
    return out


def chain(
    network_filter: listener_components_pb2.Filter,
    destinations: Sequence[str] = (),
    sources: Sequence[str] = (),
    server_names: Sequence[str] = (),
) -> FilterChain:
    out = FilterChain(filters=[network_filter])
    names = [] if ANY_SNI in server_names else list(server_names)  # ``*``: every name, no match
    if destinations:
        out.filter_chain_match.prefix_ranges.extend(cidr_ranges(destinations))
    if sources:
        out.filter_chain_match.source_prefix_ranges.extend(cidr_ranges(sources))
    if names:
        out.filter_chain_match.server_names.extend(names)
    return out


def _key(chain_: FilterChain) -> bytes:
    return bytes(chain_.filter_chain_match.SerializeToString(deterministic=True))


def tcp_chains(
    virtual_services: Sequence[AppliedVirtualService], scope: L4Scope, default_cluster: str | None
) -> list[FilterChain]:
    """``buildSidecarOutboundTCPFilterChainOpts``: the chains of the ``tcp`` rules that apply,
    then the default chain unless a catch-all rule was found (``default_cluster`` ``None``: no
    default, as on a gateway)."""
    out: list[FilterChain] = []
    seen: set[bytes] = set()

    def add(new: FilterChain) -> None:
        if _key(new) not in seen:  # Envoy rejects two chains with the same match
            seen.add(_key(new))
            out.append(new)

    for service in virtual_services:
        for rule in service.spec.tcp:
            if not rule.route:
                continue
            if not rule.match:
                add(chain(route_filter(rule.route, scope, service)))
                return out
            for match in rule.match:
                if not match_applies(match, scope):
                    continue
                sources = [match.source_subnet] if match.source_subnet else []
                add(chain(route_filter(rule.route, scope, service), match.destination_subnets, sources))
                if not match.destination_subnets and not sources:
                    return out
    if default_cluster is not None:
        add(chain(single_destination(default_cluster, scope)))
    return out


def tls_chains(
    virtual_services: Sequence[AppliedVirtualService],
    scope: L4Scope,
    default_cluster: str | None,
    allowed_sni: Sequence[str] = (),
) -> list[FilterChain]:
    """``buildSidecarOutboundTLSFilterChainOpts`` (and the gateway's PASSTHROUGH chains, where
    ``allowed_sni`` are the server's hosts: a match's SNI hosts are kept when they fall under
    one). Without any TLS match the port is plain TCP to ``default_cluster``."""
    out: list[FilterChain] = []
    seen: set[bytes] = set()
    for service in virtual_services:
        for rule in service.spec.tls:
            for match in rule.match:
                if not rule.route or not match_applies(match, scope):
                    continue
                names = [
                    n
                    for n in match.sni_hosts
                    if not allowed_sni or any(checks.host_subset_of(n, h) for h in allowed_sni)
                ]
                if not names:
                    continue
                new = chain(route_filter(rule.route, scope, service), match.destination_subnets, (), names)
                if _key(new) not in seen:
                    seen.add(_key(new))
                    out.append(new)
    if not out and default_cluster is not None:
        out.append(chain(single_destination(default_cluster, scope)))
    return out


def has_sni_match(chains: Iterable[FilterChain]) -> bool:
    return any(c.filter_chain_match.server_names for c in chains)


def host_selects(service: AppliedVirtualService, hostname: str) -> bool:
    """A VirtualService host names the service, or covers it by wildcard."""
    return any(checks.host_matches(h, hostname) for h in service.spec.hosts)
