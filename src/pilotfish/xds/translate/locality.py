"""Locality load balancing: which localities a proxy prefers, as Envoy priorities and weights (pure).

Istio ``pilot/pkg/networking/core/loadbalancer/loadbalancer.go`` (``ApplyLocalityLoadBalancer``,
``applyLocalityWeights``, ``applyLocalityFailover``, ``applyPriorityFailover``), ``util.LbPriority``,
``util.LocalityMatch`` and ``GetLocalityLbSetting``:

- the setting is the DestinationRule's ``loadBalancer.localityLbSetting`` (port- and
  subset-level merged as for any traffic policy), else the mesh default, which Istio ships
  enabled; ``enabled: false`` turns it off;
- ``distribute``: the first entry whose ``from`` matches the proxy's locality (``*`` matches a
  level, missing levels match any) reweights the endpoint localities: each ``to`` pattern takes
  its weight, shared among the localities it matches in proportion to their own weights (rounded
  up); localities no pattern matches lose their endpoints. The cluster gets
  ``locality_weighted_lb_config`` so Envoy honours the weights;
- otherwise, only when the policy has ``outlierDetection`` (without it Envoy would never see the
  local endpoints fail, so Istio does not fail over): each locality gets a priority by how much of
  the proxy's locality it shares: 0 region/zone/subzone, 1 region/zone, 2 region, 3 none. A
  ``failover`` entry whose ``from`` is the proxy's region demotes the other regions except its
  ``to`` to 4. ``failoverPriority`` first splits each locality by how many of the listed labels
  (in order; ``key=value`` compares with that value) the endpoint shares with the proxy, the
  locality's priority then refining within each; priorities are compacted to 0..N.

Envoy sends traffic to priority 0 while enough of it is healthy (overprovisioning factor 1.4) and
spills to the next priority as outlier detection ejects local endpoints, then returns when they
come back.

Locality labels: an endpoint or proxy without a ``locality`` takes the ``istio-locality`` label
(``region.zone.subzone``, Istio's label); ``failoverPriority`` sees the locality as Istio's
topology labels (``topology.kubernetes.io/region``, ``.../zone``, ``topology.istio.io/subzone``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pilotfish.config.networking.destination_rule import LocalityLoadBalancerSetting, TrafficPolicy
from pilotfish.registry.model import Endpoint

LOCALITY_LABEL = "istio-locality"  # Istio model.LocalityLabel
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
NO_MATCH_PRIORITY = 3
FAILOVER_ELSEWHERE_PRIORITY = 4
FAILOVER_SPAN = 5  # applyLocalityFailover: at most 5 locality priorities per failoverPriority level
MESH_DEFAULT = LocalityLoadBalancerSetting(enabled=True)  # Istio DefaultMeshConfig


@dataclass(frozen=True, slots=True)
class LocalityGroup:
    """One ``LocalityLbEndpoints``: a locality, its Envoy priority and weight, its endpoints."""

    locality: str
    priority: int
    weight: int
    endpoints: tuple[Endpoint, ...]


def split(locality: str) -> tuple[str, str, str]:
    region, zone, subzone = [*locality.split("/", 2), "", ""][:3]
    return region, zone, subzone


def label_locality(labels: Mapping[str, str]) -> str:
    """Istio ``GetLocalityLabel``: ``istio-locality`` with dots for slashes."""
    return labels.get(LOCALITY_LABEL, "").replace(".", "/")


def topology_labels(locality: str) -> dict[str, str]:
    region, zone, subzone = split(locality)
    found = {REGION_LABEL: region, ZONE_LABEL: zone, SUBZONE_LABEL: subzone}
    return {k: v for k, v in found.items() if v}


def locality_match(locality: str, pattern: str) -> bool:
    """Istio ``util.LocalityMatch``: each level of ``pattern`` is ``*``, missing, or equal."""
    have, want = split(locality), split(pattern)
    if want[0] != "*" and have[0] != want[0]:
        return False
    return all(w in ("*", "") or h == w for h, w in zip(have[1:], want[1:], strict=True))


def lb_priority(proxy: str, endpoint: str) -> int:
    """Istio ``util.LbPriority``."""
    p, e = split(proxy), split(endpoint)
    if p[0] != e[0]:
        return NO_MATCH_PRIORITY
    if p[1] != e[1]:
        return 2
    return 0 if p[2] == e[2] else 1


def effective_setting(policy: TrafficPolicy | None) -> LocalityLoadBalancerSetting | None:
    """Istio ``GetLocalityLbSetting``: the rule's setting, else the mesh default; ``None`` when
    either says ``enabled: false``."""
    lb = policy.load_balancer if policy is not None else None
    setting = lb.locality_lb_setting if lb is not None else None
    chosen = setting if setting is not None else MESH_DEFAULT
    return None if chosen.enabled is False else chosen


def weight_of(endpoints: Iterable[Endpoint]) -> int:
    return sum(e.weight or 1 for e in endpoints)


def plain_groups(by_locality: Mapping[str, Sequence[Endpoint]]) -> list[LocalityGroup]:
    items = sorted(by_locality.items())
    return [LocalityGroup(name, 0, weight_of(members), tuple(members)) for name, members in items]


def locality_groups(
    by_locality: Mapping[str, Sequence[Endpoint]],
    policy: TrafficPolicy | None,
    proxy_locality: str,
    proxy_labels: Mapping[str, str],
) -> list[LocalityGroup]:
    """Istio ``ApplyLocalityLoadBalancer`` over the endpoints of one cluster, grouped by
    locality (``by_locality``, sendable endpoints only)."""
    groups = plain_groups(by_locality)
    setting = effective_setting(policy)
    if setting is None or not groups:
        return groups
    if setting.distribute:
        return distribute(groups, setting, proxy_locality)
    if policy is None or policy.outlier_detection is None:
        return groups  # failover needs outlier detection, or Envoy never leaves priority 0
    if setting.failover_priority:
        labels = {**topology_labels(proxy_locality), **proxy_labels}
        groups = priority_failover(groups, setting.failover_priority, labels)
        if not setting.failover:
            return compact(groups)
    return compact(locality_failover(groups, setting, proxy_locality))


def distribute(
    groups: Sequence[LocalityGroup], setting: LocalityLoadBalancerSetting, proxy_locality: str
) -> list[LocalityGroup]:
    """Istio ``applyLocalityWeights``."""
    rule = next((d for d in setting.distribute if locality_match(proxy_locality, d.from_)), None)
    if rule is None:
        return list(groups)
    weights: dict[int, int] = {}
    unmatched = set(range(len(groups)))
    for pattern, share in rule.to.items():
        matched = [i for i in sorted(unmatched) if locality_match(groups[i].locality, pattern)]
        unmatched -= set(matched)
        total = sum(groups[i].weight for i in matched)
        for i in matched:
            value = groups[i].weight * share / total if total else 0
            if value > 0:
                weights[i] = math.ceil(value)
    out = []
    for i, group in enumerate(groups):
        if i in unmatched:
            out.append(LocalityGroup(group.locality, group.priority, group.weight, ()))
        else:
            weight = weights.get(i, group.weight)
            out.append(LocalityGroup(group.locality, group.priority, weight, group.endpoints))
    return out


def locality_failover(
    groups: Sequence[LocalityGroup], setting: LocalityLoadBalancerSetting, proxy_locality: str
) -> list[LocalityGroup]:
    """Istio ``applyLocalityFailover`` (before compaction): ``priority * 5 + locality priority``."""
    region = split(proxy_locality)[0]
    out = []
    for group in groups:
        priority = lb_priority(proxy_locality, group.locality)
        if priority == NO_MATCH_PRIORITY:
            for failover in setting.failover:
                if failover.from_ == region:
                    if split(group.locality)[0] != failover.to:
                        priority = FAILOVER_ELSEWHERE_PRIORITY
                    break
        combined = group.priority * FAILOVER_SPAN + priority
        out.append(LocalityGroup(group.locality, combined, group.weight, group.endpoints))
    return out


def priority_failover(
    groups: Sequence[LocalityGroup], keys: Sequence[str], proxy_labels: Mapping[str, str]
) -> list[LocalityGroup]:
    """Istio ``applyPriorityFailoverPerLocality``: each locality split by label priority (the
    count of listed labels from the first one the endpoint does not share with the proxy)."""
    lowest = len(keys)
    out = []
    for group in groups:
        by_priority: dict[int, list[Endpoint]] = {}
        for endpoint in group.endpoints:
            labels = {**topology_labels(endpoint.locality), **endpoint.labels}
            priority = 0
            for j, entry in enumerate(keys):
                key, eq, value = entry.partition("=")
                wanted = value if eq else proxy_labels.get(key)
                if wanted is None or labels.get(key) != wanted:
                    priority = lowest - j
                    break
            by_priority.setdefault(priority, []).append(endpoint)
        for priority in sorted(by_priority):
            members = tuple(by_priority[priority])
            out.append(LocalityGroup(group.locality, priority, weight_of(members), members))
    return out


def compact(groups: Sequence[LocalityGroup]) -> list[LocalityGroup]:
    """Priorities renumbered 0..N in order, as Envoy requires (no gaps)."""
    ranks = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    return [LocalityGroup(g.locality, ranks[g.priority], g.weight, g.endpoints) for g in groups]
