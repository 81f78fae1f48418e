"""Which traffic policy governs one cluster: the DestinationRule's, its port-level settings,
and a subset's policy merged over them — exactly as Istio picks them.

Istio ``pilot/pkg/networking/util/util.go``:

- ``GetPortLevelTrafficPolicy``: when the policy has a ``portLevelSettings`` entry for the
  service port, that entry *replaces* the policy. Per the API docs, port-level settings do not
  inherit from the destination level: a group the entry omits falls back to the defaults, not
  to the destination-level value. The result carries only the four port-level groups
  (connectionPool, loadBalancer, outlierDetection, tls); tunnel, proxyProtocol and retryBudget
  are dropped.
- ``MergeSubsetTrafficPolicy``: the destination policy (after its port-level pick) is copied,
  then each group the subset's policy (after *its* port-level pick) sets replaces the copied
  group whole — groups are never deep-merged. When the subset has port-level settings for the
  port, the four port-level groups are all taken from the subset, set or not. tunnel and
  proxyProtocol and retryBudget are replaced only when the subset sets them.

Everything here is a pure function over the frozen config dataclasses.
"""

from __future__ import annotations

from pilotfish.config.networking.destination_rule import PortTrafficPolicy, Subset, TrafficPolicy

# The groups a port-level entry carries (util.go shadowCopyPortTrafficPolicy). A subset's port-level
# entry replaces all of them; a subset without one replaces only those it sets (mergeTrafficPolicy).
PORT_LEVEL_GROUPS: tuple[str, ...] = ("connection_pool", "load_balancer", "outlier_detection", "tls")
# Groups a subset replaces only when set, port-level entry or not (mergeTrafficPolicy).
SUBSET_ONLY_GROUPS: tuple[str, ...] = ("tunnel", "proxy_protocol", "retry_budget")
# What ShallowCopyTrafficPolicy keeps: port-level settings are consumed by the pick above.
COPIED_GROUPS: tuple[str, ...] = (*PORT_LEVEL_GROUPS, *SUBSET_ONLY_GROUPS)


def port_level_entry(policy: TrafficPolicy | None, port: int) -> PortTrafficPolicy | None:
    """The first ``portLevelSettings`` entry for ``port``, if any."""
    if policy is None:
        return None
    return next(
        (p for p in policy.port_level_settings if p.port is not None and p.port.number == port),
        None,
    )


def port_policy(policy: TrafficPolicy | None, port: int) -> tuple[TrafficPolicy | None, bool]:
    """Istio ``GetPortLevelTrafficPolicy``: the policy that applies to ``port`` and whether it
    came from a port-level entry (which replaces the destination level entirely)."""
    entry = port_level_entry(policy, port)
    if entry is None:
        return policy, False
    groups = {name: getattr(entry, name) for name in PORT_LEVEL_GROUPS}
    return TrafficPolicy(**groups), True


def subset_policy(
    destination: TrafficPolicy | None, subset: TrafficPolicy | None, port: int
) -> TrafficPolicy | None:
    """Istio ``MergeSubsetTrafficPolicy``: the policy of the subset cluster for ``port``."""
    base, _ = port_policy(destination, port)
    if subset is None:
        return base
    override, has_port_level = port_policy(subset, port)
    if base is None or override is None:
        return override
    return _merge(base, override, has_port_level)


def _merge(base: TrafficPolicy, override: TrafficPolicy, has_port_level: bool) -> TrafficPolicy:
    """Istio ``mergeTrafficPolicy`` over ``ShallowCopyTrafficPolicy(base)``."""
    merged = {name: getattr(base, name) for name in COPIED_GROUPS}
    for name in PORT_LEVEL_GROUPS:
        if has_port_level or getattr(override, name) is not None:
            merged[name] = getattr(override, name)
    for name in SUBSET_ONLY_GROUPS:
        if getattr(override, name) is not None:
            merged[name] = getattr(override, name)
    return TrafficPolicy(**merged)


def cluster_policy(
    destination: TrafficPolicy | None, port: int, subset: Subset | None = None
) -> TrafficPolicy | None:
    """The policy a cluster is built from: the default cluster takes the destination policy's
    port pick (``applyDestinationRule``), a subset cluster the subset merge (``buildSubsetCluster``)."""
    if subset is None:
        return port_policy(destination, port)[0]
    return subset_policy(destination, subset.traffic_policy, port)
