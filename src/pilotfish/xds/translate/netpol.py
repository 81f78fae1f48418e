"""Kubernetes NetworkPolicy enforced by the sidecars (pure): network RBAC on inbound listeners,
endpoint filtering and deny filters on the outbound side, and the workload's own source address
on outbound connections.

Theory of operation. The rules come from ``pilotfish.netpol`` (the code ``netpol check`` runs):

- **ingress**: when policies isolate the proxy's workload for Ingress, every filter chain of
  each inbound listener (a gateway's: each of its listeners) starts with
  ``envoy.filters.network.rbac`` (action ALLOW, one Envoy policy per NetworkPolicy rule, named
  ``ns/name:ingress[i]``; no policy at all when no rule admits anything, which denies every
  connection). It runs before the HTTP connection manager or TCP proxy, and after the TLS
  handshake of an mTLS chain, so TCP and HTTP are refused alike: the connection is closed (Envoy
  network RBAC docs). A rule's peers become principals: the addresses of the pods a selector
  peer selects (``direct_remote_ip``, the peer address of the connection itself, never a
  header), an ipBlock as its CIDR minus its ``except`` CIDRs, and, for mTLS connections, the
  SPIFFE identity of a service account whose every pod the peer selects (an identity shared with
  an unselected pod would admit that pod too, so it is left out). Ports become
  ``destination_port`` / ``destination_port_range`` (end exclusive in Envoy, inclusive in
  Kubernetes); named ports resolve against the workload's own named ports; a UDP/SCTP port never
  matches a TCP listener. The TCP proxy of a guarded chain waits for the client's first bytes
  before it connects to the app (``upstream_connect_mode: ON_DOWNSTREAM_DATA``): network RBAC
  decides on the first data (envoyproxy/envoy#9023), and a refused client must not open a
  connection to the app.
- **egress**: when policies isolate the workload for Egress, its outbound clusters hold only the
  endpoints some egress rule admits (by endpoint address and port; a hostname endpoint of a DNS
  cluster only when a rule admits the port for every destination): a denied destination is never
  connected to. An outbound TCP chain whose clusters have no admitted endpoint gets a network
  RBAC that refuses every connection (``guard_egress_chains``, for every builder of outbound TCP
  chains to call).
- **source address**: once any NetworkPolicy exists, the outbound clusters (a sidecar's or a
  gateway's) of MESH_INTERNAL services bind the workload's IP as the source of their connections
  (``upstream_bind_config``), so the destination's sidecar sees which workload connects (the
  kernel would pick 127.0.0.1 on loopback, or the host's primary address). The workload IP is an
  address of the host: the inbound listeners bind it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from types import MappingProxyType
from typing import TypeAlias, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import wrappers_pb2

from pilotfish.certs.identity import SpiffeIdError, workload_id
from pilotfish.netpol.decide import Endpoint as Peer
from pilotfish.netpol.decide import verdict
from pilotfish.netpol.model import NETWORK_POLICY, Pod, World, is_ip, normal_ip
from pilotfish.netpol.pods import world_of
from pilotfish.netpol.rules import EGRESS, INGRESS, Isolation, PortSpec, Rule, isolation
from pilotfish.netpol.rules import Peer as RulePeer
from pilotfish.registry.model import Endpoint, Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.names import parse_cluster_name

Principal: TypeAlias = rbac_pb2.Principal
Permission: TypeAlias = rbac_pb2.Permission
T = TypeVar("T")

NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
INGRESS_STAT_PREFIX = "netpol_ingress."
EGRESS_STAT_PREFIX = "netpol_egress."
UNBOUND = frozenset({"127.0.0.1", "0.0.0.0", "::", "::1"})  # no address of a workload of its own
MAX_EARLY_DATA = 64 * 1024  # what a guarded TCP proxy buffers before its upstream is connected


# ---- the proxy's workload --------------------------------------------------------------------------


def workload_pod(snapshot: MeshSnapshot, proxy: Proxy) -> Pod:
    """The proxy's workload as a pod: namespace and labels from the node (as policies target
    it), named ports from the registry's workload at its IP."""
    known = world_of(snapshot).pod_at(proxy.ip)
    return Pod(
        proxy.namespace,
        proxy.workload_name or proxy.name,
        proxy.ip,
        proxy.labels,
        known.ports if known is not None else MappingProxyType({}),
        proxy.service_account,
    )


def _isolation(snapshot: MeshSnapshot, proxy: Proxy, direction: str) -> Isolation | None:
    """The workload's isolation for ``direction``, once per snapshot and workload."""
    if not snapshot.of_kind(NETWORK_POLICY):
        return None
    key = (direction, workload_pod(snapshot, proxy), frozenset(proxy.labels.items()))
    return snapshot.derived_for(_compute_isolation, key)


def _compute_isolation(
    snapshot: MeshSnapshot, key: tuple[str, Pod, frozenset[tuple[str, str]]]
) -> Isolation | None:
    direction, pod, _ = key  # the labels are in the key because Pod hashes without them
    found = isolation(world_of(snapshot), pod, direction)
    return found if found.isolated else None


# ---- ingress ---------------------------------------------------------------------------------------


def ingress_rbac(snapshot: MeshSnapshot, proxy: Proxy) -> listener_components_pb2.Filter | None:
    """The network RBAC filter for the proxy's inbound listeners; ``None`` when no policy
    isolates its workload for Ingress."""
    iso = _isolation(snapshot, proxy, INGRESS)
    if iso is None:
        return None
    world, pod = world_of(snapshot), workload_pod(snapshot, proxy)
    trust_domain = snapshot.mesh.trust_domain
    rules = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    for rule in iso.rules:
        policy = rbac_policy(rule, world, pod, trust_domain)
        if policy is not None:
            rules.policies[rule.name].CopyFrom(policy)
    return network_rbac(rules, INGRESS_STAT_PREFIX)


def network_rbac(rules: rbac_pb2.RBAC, stat_prefix: str) -> listener_components_pb2.Filter:
    out = listener_components_pb2.Filter(name=NETWORK_RBAC_FILTER)
    out.typed_config.Pack(network_rbac_pb2.RBAC(rules=rules, stat_prefix=stat_prefix))
    return out


def rbac_policy(rule: Rule, world: World, pod: Pod, trust_domain: str) -> rbac_pb2.Policy | None:
    """One NetworkPolicy rule as an Envoy policy; ``None`` when it can admit no TCP connection."""
    permissions = rule_permissions(rule.ports, pod)
    principals = rule_principals(rule.peers, world, trust_domain)
    if permissions is None or principals is None:
        return None
    return rbac_pb2.Policy(permissions=[permissions], principals=[principals])


def rule_permissions(ports: tuple[PortSpec, ...] | None, pod: Pod) -> Permission | None:
    if ports is None:
        return Permission(any=True)
    ranges = sorted({r for p in ports if p.protocol == "TCP" and (r := p.range_on(pod)) is not None})
    found = [port_permission(first, last) for first, last in ranges]
    return either(found, lambda rules: Permission(or_rules=Permission.Set(rules=rules)))


def port_permission(first: int, last: int) -> Permission:
    if first == last:
        return Permission(destination_port=first)
    return Permission(destination_port_range=range_pb2.Int32Range(start=first, end=last + 1))


def rule_principals(peers: tuple[RulePeer, ...] | None, world: World, trust_domain: str) -> Principal | None:
    if peers is None:
        return Principal(any=True)
    found = [p for peer in peers for p in peer_principals(peer, world, trust_domain)]
    return either(found, lambda ids: Principal(or_ids=Principal.Set(ids=ids)))


def peer_principals(peer: RulePeer, world: World, trust_domain: str) -> Iterator[Principal]:
    if peer.network is not None:
        block = Principal(direct_remote_ip=cidr(str(peer.network.network_address), peer.network.prefixlen))
        if not peer.excepts:
            yield block
            return
        excepts = [
            Principal(direct_remote_ip=cidr(str(e.network_address), e.prefixlen)) for e in peer.excepts
        ]
        outside = Principal(not_id=Principal(or_ids=Principal.Set(ids=excepts)))
        yield Principal(and_ids=Principal.Set(ids=[block, outside]))
        return
    for ip in sorted(peer.ips):
        yield Principal(direct_remote_ip=cidr(ip, ipaddress.ip_address(ip).max_prefixlen))
    for identity in covered_identities(peer, world, trust_domain):
        yield Principal(
            authenticated=Principal.Authenticated(principal_name=string_pb2.StringMatcher(exact=identity))
        )


def covered_identities(peer: RulePeer, world: World, trust_domain: str) -> list[str]:
    """SPIFFE ids of the service accounts whose every pod the peer selects (mTLS peers)."""
    selected = {p.ref for p in peer.pods}
    accounts = {(p.namespace, p.service_account) for p in peer.pods if p.service_account}
    out = []
    for namespace, account in sorted(accounts):
        sharing = [p for p in world.pods if (p.namespace, p.service_account) == (namespace, account)]
        if all(p.ref in selected for p in sharing):
            try:
                out.append(workload_id(trust_domain, namespace, account).uri)
            except SpiffeIdError:
                continue  # no certificate can carry it
    return out


def cidr(address: str, prefix: int) -> address_pb2.CidrRange:
    return address_pb2.CidrRange(address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=prefix))


def either(items: list[T], combine: Callable[[list[T]], T]) -> T | None:
    """``None`` for no items, the item for one, else ``combine(items)`` (Envoy's sets need ≥ 1)."""
    if not items:
        return None
    return items[0] if len(items) == 1 else combine(items)


def guard_ingress(
    snapshot: MeshSnapshot, proxy: Proxy, listeners: list[listener_pb2.Listener]
) -> list[listener_pb2.Listener]:
    """The listeners that take the workload's incoming connections (a sidecar's inbound ones, a
    gateway's), each chain guarded when policies isolate the workload for Ingress."""
    rbac = ingress_rbac(snapshot, proxy)
    for listener in listeners if rbac is not None else ():
        guard_listener(listener, rbac)
    return listeners


def guard_listener(listener: listener_pb2.Listener, rbac: listener_components_pb2.Filter) -> None:
    """Put ``rbac`` first in every filter chain; a TCP proxy behind it connects upstream only
    after the client's first bytes, which RBAC checks first."""
    for chain in listener.filter_chains:
        guard_chain(chain, rbac)


def guard_chain(chain: listener_components_pb2.FilterChain, rbac: listener_components_pb2.Filter) -> None:
    chain.filters.insert(0, rbac)
    for network_filter in chain.filters:
        if network_filter.name == TCP_PROXY_FILTER:
            delay_upstream_connect(network_filter)


def delay_upstream_connect(network_filter: listener_components_pb2.Filter) -> None:
    proxy = tcp_proxy_pb2.TcpProxy()
    network_filter.typed_config.Unpack(proxy)
    proxy.upstream_connect_mode = tcp_proxy_pb2.ON_DOWNSTREAM_DATA
    proxy.max_early_data_bytes.value = MAX_EARLY_DATA
    network_filter.typed_config.Pack(proxy)


# ---- egress ----------------------------------------------------------------------------------------


def egress_admission(snapshot: MeshSnapshot, proxy: Proxy) -> Callable[[Endpoint], bool] | None:
    """Which endpoints the proxy's workload may connect to; ``None`` when it is not isolated for
    Egress (every endpoint)."""
    iso = _isolation(snapshot, proxy, EGRESS)
    if iso is None:
        return None
    world, subject = world_of(snapshot), workload_pod(snapshot, proxy)

    def admits(endpoint: Endpoint) -> bool:
        if not is_ip(endpoint.address):
            return any(r.peers is None and r.admits_port(endpoint.port, "TCP", None) for r in iso.rules)
        destination = Peer(endpoint.address, world.pod_at(endpoint.address))
        return verdict(iso, subject.ref, destination, endpoint.port, "TCP", destination.pod).allowed

    return admits


def admitted(admit: Callable[[Endpoint], bool] | None, endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    endpoints = tuple(endpoints)
    return endpoints if admit is None else tuple(e for e in endpoints if admit(e))


def egress_rbac(
    snapshot: MeshSnapshot, proxy: Proxy, clusters: Iterable[str]
) -> listener_components_pb2.Filter | None:
    """For an outbound TCP chain whose TCP proxy sends to ``clusters``: a network RBAC that
    refuses every connection when egress policies admit no endpoint of any of them, else
    ``None``. (A subset cluster is judged by its service port's endpoints: never stricter than
    the endpoints it holds, which are filtered anyway.)"""
    admit = egress_admission(snapshot, proxy)
    if admit is None:
        return None
    for name in clusters:
        key = parse_cluster_name(name)
        if key is None or key.direction != "outbound":
            return None  # not a service port (passthrough, SNI-named): the endpoints decide
        if any(admit(e) for e in snapshot.endpoints_for(key.hostname, key.port)):
            return None
    return network_rbac(rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW), EGRESS_STAT_PREFIX)


def guard_egress_chains(
    snapshot: MeshSnapshot, proxy: Proxy, listener: listener_pb2.Listener
) -> listener_pb2.Listener:
    """Every TCP-proxy chain of an outbound listener whose destinations egress policies wholly
    deny refuses connections at L4 (network RBAC first). Other builders of outbound TCP/TLS
    chains call this on their listeners too."""
    if egress_admission(snapshot, proxy) is None:
        return listener
    for chain in listener.filter_chains:
        clusters = tcp_proxy_clusters(chain)
        rbac = egress_rbac(snapshot, proxy, clusters) if clusters else None
        if rbac is not None:
            guard_chain(chain, rbac)
    return listener


def tcp_proxy_clusters(chain: listener_components_pb2.FilterChain) -> list[str]:
    """The clusters a chain's TCP proxy sends to (its cluster, or its weighted clusters)."""
    for network_filter in chain.filters:
        if network_filter.name == TCP_PROXY_FILTER:
            proxy = tcp_proxy_pb2.TcpProxy()
            network_filter.typed_config.Unpack(proxy)
            if proxy.HasField("weighted_clusters"):
                return [c.name for c in proxy.weighted_clusters.clusters]
            return [proxy.cluster] if proxy.cluster else []
    return []


# ---- source address --------------------------------------------------------------------------------


def binds_source(snapshot: MeshSnapshot, proxy: Proxy, service: Service) -> bool:
    """Whether the proxy's clusters of ``service`` connect from the workload's IP (``bind_source``;
    caches key on it)."""
    return (
        service.location == "MESH_INTERNAL"
        and normal_ip(proxy.ip) not in UNBOUND
        and bool(snapshot.of_kind(NETWORK_POLICY))
    )


def bind_source(snapshot: MeshSnapshot, proxy: Proxy, clusters: Iterable[cluster_pb2.Cluster]) -> None:
    """Outbound clusters of mesh-internal services connect from the workload's IP."""
    if normal_ip(proxy.ip) in UNBOUND or not snapshot.of_kind(NETWORK_POLICY):
        return
    services = {s.hostname: s for s in snapshot.services}
    for cluster in clusters:
        key = parse_cluster_name(cluster.name)
        service = services.get(key.hostname) if key is not None and key.direction == "outbound" else None
        if service is not None and binds_source(snapshot, proxy, service):
            cluster.upstream_bind_config.source_address.address = proxy.ip
            cluster.upstream_bind_config.source_address.port_value = 0


def workload_scope(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[str, str, str] | None:
    """What of the proxy itself (beyond its type, namespace and labels) its outbound clusters and
    endpoints depend on under NetworkPolicy: the workload's IP (the bound source), name and
    service account (its pod); ``None`` without NetworkPolicy. Sidecars and gateways alike."""
    if not snapshot.of_kind(NETWORK_POLICY):
        return None
    return (proxy.ip, proxy.workload_name or proxy.name, proxy.service_account)


# ---- what enforcement depends on (for caches) -----------------------------------------------------


def enforcement_key(snapshot: MeshSnapshot) -> str | None:
    """What every NetworkPolicy-dependent part of any proxy's config (the ingress RBAC and the
    egress guards of its listeners, its endpoint filtering, its source binding) depends on
    besides the proxy itself: ``None`` without NetworkPolicy, else the world's fingerprint
    (policies, namespace labels, every workload's address, labels, named ports and identity).
    A cache that keeps listeners across snapshots must hold this in its key: a workload that
    appears, moves or is relabelled changes who the policies admit, even when no config changed."""
    if not snapshot.of_kind(NETWORK_POLICY):
        return None
    return world_of(snapshot).fingerprint
