"""Cache keys: everything that determines a translated resource, as a hashable value (pure).

Istio's XDS cache keys a cluster or a ClusterLoadAssignment by the inputs that build it
(``pilot/pkg/networking/core/cluster_cache.go`` ``clusterCache.Key``: the proxy's type and IP
family, the service, the port, the DestinationRule, the PeerAuthentication mode, the endpoint
metadata ...; ``pilot/pkg/xds/endpoints/endpoint_builder.go`` ``EndpointBuilder.Key``). pilotfish
does the same: ``xds.builder`` looks a resource up by its key in a table that outlives snapshots
and proxies, and rebuilds it only on a miss, so an unchanged service is never translated twice
and proxies of one scope share one build.

A key must name every input of the function it stands for; an input left out serves stale
config. Each key below mirrors one translate function and says which; when that function reads
something new (a field of a DestinationRule is inside ``rule_fingerprint`` already, a new
resource kind is not), add it here. ``tests/unit/xds/test_xds_cache_keys.py`` changes each input
in turn and checks that a warm cache gives exactly what a cold one gives.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Hashable, Mapping
from typing import Any

from pilotfish.netpol.pods import world_of
from pilotfish.registry.model import Service, ServicePort
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.destination_rules import AppliedRule
from pilotfish.xds.translate.endpoints import Destination, locality_policy
from pilotfish.xds.translate.health import health_check_of
from pilotfish.xds.translate.locality import effective_setting
from pilotfish.xds.translate.mtls import endpoint_mtls, service_accounts, service_mode
from pilotfish.xds.translate.names import parse_cluster_name
from pilotfish.xds.translate.netpol import binds_source, egress_admission, workload_scope

DNS_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN"})


def mesh_fingerprint(snapshot: MeshSnapshot) -> Hashable:
    """The whole MeshConfig (auto mTLS, the trust domain for SANs, the root namespace for
    PeerAuthentication and DestinationRule lookups, and whatever a later feature reads)."""
    return snapshot.derived(_mesh_repr)


def _mesh_repr(snapshot: MeshSnapshot) -> str:
    return repr(snapshot.mesh)


class Reprs:
    """``repr`` of config values, remembered per object: a spec parsed once (the config directory
    keeps unchanged files' resources) is rendered once however many snapshots use it. Entries
    hold their object, so an id is never mistaken for a newer object's; ``sweep`` keeps only
    what was asked for since the last sweep."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[object, str]] = {}
        self._used: dict[int, tuple[object, str]] = {}

    def of(self, value: object) -> str:
        key = id(value)
        found = self._used.get(key) or self._kept.get(key)
        if found is None or found[0] is not value:
            found = (value, repr(value))
        self._used[key] = found
        return found[1]

    def sweep(self) -> None:
        self._kept, self._used = self._used, {}


def rule_fingerprint(
    snapshot: MeshSnapshot, rule: AppliedRule | None, reprs: Reprs | None = None
) -> Hashable:
    """A DestinationRule as applied: its name, namespace, apiVersion (cluster metadata), exportTo,
    sources and the whole merged spec. ``repr`` of the frozen config dataclasses is complete
    (where ``==`` is not: ``0.0 == -0.0``) and works for specs that hold mappings, which do not
    hash."""
    if rule is None:
        return None
    spec = (reprs or snapshot.derived(_snapshot_reprs)).of(rule.spec)
    return (rule.name, rule.namespace, rule.api_version, tuple(sorted(rule.export_to)), rule.sources, spec)


def _snapshot_reprs(snapshot: MeshSnapshot) -> Reprs:
    return Reprs()


def has_network_policies(snapshot: MeshSnapshot) -> bool:
    """Whether NetworkPolicy shapes any translation (building the netpol world, a pod per
    endpoint, only when some NetworkPolicy exists)."""
    return bool(snapshot.of_kind("NetworkPolicy")) and bool(world_of(snapshot).policies)


@functools.lru_cache(maxsize=65536)
def is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False


def endpoints_fingerprint(snapshot: MeshSnapshot, hostname: str, port: int) -> Hashable:
    """The endpoints of one service port as every reader of them sees them: what an
    ``LbEndpoint`` carries (``endpoint_fingerprints``) and their labels (subset selection).
    Once per snapshot and key."""
    return snapshot.derived_for(_endpoints_fingerprint, (hostname, port))


def _endpoints_fingerprint(snapshot: MeshSnapshot, key: tuple[str, int]) -> Hashable:
    endpoints = snapshot.endpoints_for(*key)
    labels = tuple(tuple(sorted(e.labels.items())) for e in endpoints)
    return (endpoint_fingerprints(snapshot, *key), labels)


def endpoint_fingerprints(snapshot: MeshSnapshot, hostname: str, port: int) -> tuple[Hashable, ...]:
    """Per endpoint of the service port (in order): what its ``LbEndpoint`` is built from —
    address, port, health, weight, locality, identity, network, and whether it carries
    ``tlsMode: istio`` (its sidecar label and its own PeerAuthentication)."""
    return snapshot.derived_for(_endpoint_fingerprints, (hostname, port))


def _endpoint_fingerprints(snapshot: MeshSnapshot, key: tuple[str, int]) -> tuple[Hashable, ...]:
    istio = endpoint_mtls(snapshot)
    return tuple(
        (
            e.address,
            e.port,
            e.health,
            e.weight,
            e.locality,
            e.namespace,
            e.service_account,
            e.network,
            istio(e),
        )
        for e in snapshot.endpoints_for(*key)
    )


def netpol_scope(snapshot: MeshSnapshot, proxy: Proxy) -> Hashable:
    """Once any NetworkPolicy exists, a proxy's outbound clusters bind its IP and hold only the
    endpoints its workload may reach (``netpol.bind_source``, ``netpol.egress_admission``), both
    functions of the workload (``netpol.workload_scope``: its IP, name and service account, with
    the namespace and labels every scope holds), sidecar or gateway. ``None`` otherwise."""
    return workload_scope(snapshot, proxy)


def _egress(snapshot: MeshSnapshot, proxy: Proxy, endpoints: Any) -> Hashable:
    """Which of ``endpoints`` NetworkPolicy egress admits for the proxy (``None``: all)."""
    admit = egress_admission(snapshot, proxy)
    return None if admit is None else tuple(admit(e) for e in endpoints)


def _binds_source(snapshot: MeshSnapshot, proxy: Proxy, service: Service) -> bool:
    """``netpol.bind_source`` applies to the service's clusters for this proxy (the cheap test
    first: parsing the proxy's IP per service is not free)."""
    return bool(snapshot.of_kind("NetworkPolicy")) and binds_source(snapshot, proxy, service)


def outbound_clusters_key(
    snapshot: MeshSnapshot,
    proxy: Proxy,
    service: Service,
    port: ServicePort,
    rule: AppliedRule | None,
    reprs: Reprs | None = None,
) -> Hashable:
    """``clusters.service_port_clusters``: the proxy's type (discovery type, upstream protocol,
    templates) and, for DNS clusters, its IP family and the inlined endpoints; the service and
    port; the DestinationRule; TLS inputs (the service's PeerAuthentication mode, its service
    accounts, the mesh); the health check annotation; NetworkPolicy (the bound source address,
    the inlined endpoints egress admits)."""
    dns = service.resolution in DNS_RESOLUTIONS
    return (
        "outbound-clusters",
        str(proxy.type),
        is_ipv6(proxy.ip) if dns else None,
        service,
        port,
        rule_fingerprint(snapshot, rule, reprs),
        service_mode(snapshot, service),
        service_accounts(snapshot, service),
        repr(health_check_of(snapshot, service)),
        mesh_fingerprint(snapshot),
        endpoints_fingerprint(snapshot, service.hostname, port.number) if dns else None,
        (proxy.locality, tuple(sorted(proxy.labels.items()))) if dns else None,  # inline localities
        proxy.ip if _binds_source(snapshot, proxy, service) else None,
        _egress(snapshot, proxy, snapshot.endpoints_for(service.hostname, port.number)) if dns else None,
    )


def assignment_key(
    snapshot: MeshSnapshot,
    destinations: Mapping[str, Destination],
    cluster_name: str,
    proxy: Proxy,
    reprs: Reprs | None = None,
) -> Hashable:
    """``endpoints.load_assignment`` of ``endpoints.cluster_endpoints``: the cluster name and
    what each endpoint it holds is built from — for a subset cluster only the endpoints the
    subset's labels select (as this proxy's DestinationRule defines it), so a label change that
    moves no endpoint in or out rebuilds nothing — and, under NetworkPolicy egress, which of
    them the proxy's workload may reach."""
    return (
        *_assignment_key(snapshot, destinations, cluster_name),
        _egress_of(snapshot, proxy, cluster_name),
        _locality_of(snapshot, destinations, cluster_name, proxy, reprs),
    )


def _locality_of(
    snapshot: MeshSnapshot,
    destinations: Mapping[str, Destination],
    cluster_name: str,
    proxy: Proxy,
    reprs: Reprs | None,
) -> Hashable:
    """Under a DestinationRule that shapes localities (``endpoints.locality_policy``), the
    priorities and weights follow the proxy's locality and labels, the rule, and the endpoints'
    labels (failoverPriority); ``None`` for the plain grouping (no locality setting applies)."""
    policy = locality_policy(destinations, cluster_name)
    setting = effective_setting(policy)
    if setting is None or not (setting.distribute or (policy is not None and policy.outlier_detection)):
        return None  # locality.locality_groups keeps the plain grouping
    key = parse_cluster_name(cluster_name)
    assert key is not None  # a locality policy implies an outbound cluster
    endpoints = snapshot.endpoints_for(key.hostname, key.port) if setting.failover_priority else ()
    labels = tuple(tuple(sorted(e.labels.items())) for e in endpoints)
    rule = rule_fingerprint(snapshot, destinations[key.hostname][1], reprs)
    proxy_labels = tuple(sorted(proxy.labels.items())) if setting.failover_priority else ()
    return (proxy.locality, proxy_labels, rule, labels)


def _egress_of(snapshot: MeshSnapshot, proxy: Proxy, cluster_name: str) -> Hashable:
    if egress_admission(snapshot, proxy) is None:
        return None
    key = parse_cluster_name(cluster_name)
    endpoints = snapshot.endpoints_for(key.hostname, key.port) if key is not None else ()
    return _egress(snapshot, proxy, endpoints)


def _assignment_key(
    snapshot: MeshSnapshot, destinations: Mapping[str, Destination], cluster_name: str
) -> tuple[Hashable, ...]:
    key = parse_cluster_name(cluster_name)
    if key is None or key.direction != "outbound" or key.hostname not in destinations:
        return ("assignment", cluster_name)
    fingerprints = endpoint_fingerprints(snapshot, key.hostname, key.port)
    if not key.subset:
        return ("assignment", cluster_name, fingerprints)
    rule = destinations[key.hostname][1]
    subset = rule.spec.subset(key.subset) if rule is not None else None
    if subset is None:
        return ("assignment", cluster_name, ())
    wanted = subset.labels.items()
    endpoints = snapshot.endpoints_for(key.hostname, key.port)
    return (
        "assignment",
        cluster_name,
        tuple(f for e, f in zip(endpoints, fingerprints, strict=True) if wanted <= e.labels.items()),
    )


# ---- what a proxy's labels decide ---------------------------------------------------------------

# Spec fields through which config selects workloads by their labels (equality on every listed
# label: Istio's WorkloadSelector and the selectors of PeerAuthentication, AuthorizationPolicy,
# RequestAuthentication, Gateway; a VirtualService match's sourceLabels).
SELECTOR_FIELDS = frozenset({"selector", "workload_selector", "source_labels"})
# Fields whose presence makes the proxy's label *values* matter (locality failoverPriority).
LABEL_VALUE_FIELDS = frozenset({"failover_priority"})


def label_view(snapshot: MeshSnapshot, proxy: Proxy) -> Hashable:
    """What the proxy's labels decide, as a value two proxies share when their labels select the
    same config: for every label selector in the mesh, whether it selects them. Proxies of one
    namespace whose labels differ only where no selector looks (``app: client-7`` vs
    ``client-8`` when nothing selects on ``app``) then share their outbound and route parts.
    Every label itself when a field reads label values (failoverPriority) or any
    NetworkPolicy exists (its selectors use expressions, and ``netpol_scope`` is per workload)."""
    return snapshot.derived_for(_label_view, frozenset(proxy.labels.items()))


def _label_view(snapshot: MeshSnapshot, labels: frozenset[tuple[str, str]]) -> Hashable:
    selectors, values_matter = _selectors(snapshot)
    if values_matter or has_network_policies(snapshot):
        return ("labels", labels)
    have = dict(labels)
    return ("selected", tuple(all(have.get(k) == v for k, v in s.items()) for s in selectors))


def _selectors(snapshot: MeshSnapshot) -> tuple[tuple[Mapping[str, str], ...], bool]:
    """Every label selector of the mesh's config, and whether label values matter (once per
    snapshot; a spec's findings are kept per spec object across snapshots)."""
    return snapshot.derived(_collect_selectors)


def _collect_selectors(snapshot: MeshSnapshot) -> tuple[tuple[Mapping[str, str], ...], bool]:
    found: list[Mapping[str, str]] = []
    values_matter = False
    for resource in snapshot.resources:
        if resource.kind in _NO_PROXY_SELECTORS:
            continue
        selectors, matters = _spec_selectors(resource.spec)
        found.extend(selectors)
        values_matter = values_matter or matters
    return tuple(found), values_matter


# Kinds whose selectors pick workloads as endpoints (never the proxy being configured).
_NO_PROXY_SELECTORS = frozenset({"ServiceEntry", "WorkloadEntry", "WorkloadGroup"})
_SPEC_SELECTORS: dict[int, tuple[object, tuple[tuple[Mapping[str, str], ...], bool]]] = {}


def _spec_selectors(spec: object) -> tuple[tuple[Mapping[str, str], ...], bool]:
    """The label mappings under selector fields anywhere in ``spec`` (memoized per object; the
    table is trimmed when it outgrows the config a mesh can hold)."""
    hit = _SPEC_SELECTORS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    found: list[Mapping[str, str]] = []
    matters = _walk(spec, False, found)
    result = (tuple(found), matters)
    if len(_SPEC_SELECTORS) > 100_000:
        _SPEC_SELECTORS.clear()
    _SPEC_SELECTORS[id(spec)] = (spec, result)
    return result


def _walk(value: object, in_selector: bool, found: list[Mapping[str, str]]) -> bool:
    """Collect label mappings under selector fields; True if a label-value field is set."""
    matters = False
    if isinstance(value, Mapping):
        if in_selector and all(isinstance(v, str) for v in value.values()):
            found.append(value)
            return False
        for item in value.values():
            matters = _walk(item, in_selector, found) or matters
    elif isinstance(value, (tuple, list, frozenset)):
        for item in value:
            matters = _walk(item, in_selector, found) or matters
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            item = getattr(value, name)
            if name in LABEL_VALUE_FIELDS and item:
                matters = True
            matters = _walk(item, in_selector or name in SELECTOR_FIELDS, found) or matters
    return matters
