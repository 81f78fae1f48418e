"""Which consistent-hash settings a route carries for its destinations — Istio's hash lookup.

Istio ``pilot/pkg/networking/core/route/route.go``: ``hashForHTTPDestination`` (for a
VirtualService destination: the subset's port-level hash, else the subset's hash, else the
port-level hash of the destination's port — only when the destination names a port — else the
rule's top-level hash), ``hashForService`` (for a service without VirtualService: the port-level
hash of the service port, else the top-level hash), ``portLevelSettingsConsistentHash`` and
``consistentHashToHashPolicy`` (``clusters.hash_policy_for`` builds the Envoy hash policy).

The DestinationRule is the one ``destination_rules.destination_rule_for`` picks for the proxy and
the service's namespace; a destination that is no visible service has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2

from pilotfish.config.networking.common import Destination
from pilotfish.config.networking.destination_rule import ConsistentHashLB, LoadBalancerSettings, TrafficPolicy
from pilotfish.config.networking.virtual_service import HTTPRouteDestination
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.clusters import hash_policy_for
from pilotfish.xds.translate.destination_rules import (
    AppliedRule,
    DestinationRuleIndex,
    destination_rule_for,
    destination_rule_index,
)
from pilotfish.xds.translate.endpoints import visible_services

HashPolicy: TypeAlias = route_components_pb2.RouteAction.HashPolicy


def policy_hash(policy: TrafficPolicy | None) -> ConsistentHashLB | None:
    """``GetLoadBalancer().GetConsistentHash()``."""
    lb = policy.load_balancer if policy is not None else None
    return lb.consistent_hash if lb is not None else None


def port_level_hash(policy: TrafficPolicy | None, port: int) -> ConsistentHashLB | None:
    """Istio ``portLevelSettingsConsistentHash``: the first port-level entry for ``port``."""
    if policy is None or not port:
        return None
    for setting in policy.port_level_settings:
        if setting.port is not None and setting.port.number == port:
            return setting.load_balancer.consistent_hash if setting.load_balancer is not None else None
    return None


def destination_hash(rule: AppliedRule | None, destination: Destination) -> ConsistentHashLB | None:
    """Istio ``hashForHTTPDestination`` for one VirtualService destination."""
    if rule is None:
        return None
    policy = rule.spec.traffic_policy
    port = destination.port.number if destination.port is not None else 0
    subset = rule.spec.subset(destination.subset)
    subset_policy = subset.traffic_policy if subset is not None else None
    candidates = (
        port_level_hash(subset_policy, port),
        policy_hash(subset_policy),
        port_level_hash(policy, port),
        policy_hash(policy),
    )
    return next((h for h in candidates if h is not None), None)


def service_hash(rule: AppliedRule | None, port: int) -> ConsistentHashLB | None:
    """Istio ``hashForService`` for the default route of a service port."""
    if rule is None:
        return None
    policy = rule.spec.traffic_policy
    return port_level_hash(policy, port) or policy_hash(policy)


def hash_policies(hashing: ConsistentHashLB | None) -> list[HashPolicy]:
    """Istio ``consistentHashToHashPolicy`` (empty without a hash key)."""
    if hashing is None:
        return []
    return hash_policy_for(TrafficPolicy(load_balancer=LoadBalancerSettings(consistent_hash=hashing)))


def rule_for_host(
    index: DestinationRuleIndex, proxy: Proxy, services: Mapping[str, Service], hostname: str
) -> AppliedRule | None:
    """The DestinationRule for ``hostname`` as this proxy sees it (none for unknown hosts)."""
    service = services.get(hostname)
    if service is None:
        return None
    return destination_rule_for(index, proxy.namespace, proxy.labels, hostname, service.namespace)


@dataclass(frozen=True, slots=True)
class HashLookup:
    """Istio ``hashForVirtualService`` / ``hashForService`` for one proxy."""

    index: DestinationRuleIndex
    proxy: Proxy
    services: Mapping[str, Service]  # the proxy's visible services by hostname

    def __call__(self, destination: HTTPRouteDestination) -> ConsistentHashLB | None:
        target = destination.destination
        return destination_hash(rule_for_host(self.index, self.proxy, self.services, target.host), target)

    def for_service(self, service: Service, port: int) -> ConsistentHashLB | None:
        return service_hash(rule_for_host(self.index, self.proxy, self.services, service.hostname), port)


def hash_lookup(snapshot: MeshSnapshot, proxy: Proxy) -> HashLookup:
    services = {s.hostname: s for s in visible_services(snapshot, proxy)}
    return HashLookup(destination_rule_index(snapshot), proxy, services)
