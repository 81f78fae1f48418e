"""Registry endpoints → Envoy ``ClusterLoadAssignment``s, like Istio's EDS.

Istio ``pilot/pkg/xds/endpoints/endpoint_builder.go``:

- a subset cluster holds only the endpoints whose labels include every subset label
  (``EndpointBuilder.WithSubset``, ``labels.Instance.SubsetOf``);
- unhealthy endpoints are left out (``filterIstioEndpoint``; ``SEND_UNHEALTHY_ENDPOINTS`` is off
  by default); draining ones are sent with status DRAINING, so Envoy keeps their connections but
  balances no new requests to them;
- endpoints are grouped by locality (``region/zone/subzone``, ``util.ConvertLocality``), each
  ``LbEndpoint`` carrying its weight and each locality the sum of its endpoints' weights;
- every EDS cluster gets an assignment, empty if need be, so Envoy's cluster finishes warming;
- an endpoint with a sidecar (``mtls.endpoint_mtls``) carries ``tlsMode: istio`` in its
  ``envoy.transport_socket_match`` metadata, which auto mTLS clusters match on
  (``endpoint_builder.go`` ``buildIstioEndpoint``).

The same ``LocalityLbEndpoints`` are inlined into STRICT_DNS / LOGICAL_DNS clusters by
``clusters.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from pilotfish.config.networking.destination_rule import TrafficPolicy
from pilotfish.registry.model import Endpoint, Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.destination_rules import (
    AppliedRule,
    destination_rule_for,
    destination_rule_index,
)
from pilotfish.xds.translate.endpoint_checks import sendable
from pilotfish.xds.translate.locality import LocalityGroup, locality_groups
from pilotfish.xds.translate.mtls import endpoint_mtls, has_sidecar, set_tls_mode_metadata
from pilotfish.xds.translate.names import parse_cluster_name
from pilotfish.xds.translate.netpol import admitted, egress_admission
from pilotfish.xds.translate.traffic_policy import cluster_policy

LbEndpoint: TypeAlias = endpoint_components_pb2.LbEndpoint
LocalityLbEndpoints: TypeAlias = endpoint_components_pb2.LocalityLbEndpoints

UNIX_PREFIX = "unix://"

# Registry health → what Envoy is told; a status missing here is not sent at all.
HEALTH_STATUS: Mapping[str, int] = {
    "HEALTHY": health_check_pb2.HEALTHY,
    "DRAINING": health_check_pb2.DRAINING,
}


def subset_endpoints(endpoints: Iterable[Endpoint], subset_labels: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """The endpoints a subset selects: those whose labels include every subset label (Istio
    ``labels.Instance.SubsetOf``; an items-view comparison, done in C)."""
    wanted = subset_labels.items()
    return tuple(e for e in endpoints if wanted <= e.labels.items())


def socket_address(address: str, port: int) -> address_pb2.Address:
    """Istio ``util.BuildAddress``: a ``unix://`` path becomes a pipe, anything else host:port."""
    out = address_pb2.Address()
    set_address(out, address, port)
    return out


def set_address(out: address_pb2.Address, address: str, port: int) -> None:
    """``socket_address`` written into ``out`` in place (no message to build and copy)."""
    if address.startswith(UNIX_PREFIX):
        out.pipe.path = address[len(UNIX_PREFIX) :]
    else:
        out.socket_address.address = address
        out.socket_address.port_value = port


def locality(value: str) -> base_pb2.Locality:
    """Istio ``util.ConvertLocality``: ``region/zone/subzone``, any suffix may be missing."""
    region, zone, sub_zone = ([*value.split("/", 2), "", ""])[:3] if value else ("", "", "")
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def lb_endpoint(endpoint: Endpoint, istio_mtls: bool = False) -> LbEndpoint:
    out = LbEndpoint(health_status=HEALTH_STATUS[endpoint.health])
    set_address(out.endpoint.address, endpoint.address, endpoint.port)
    out.load_balancing_weight.value = endpoint.weight or 1
    if istio_mtls:
        set_tls_mode_metadata(out.metadata)
    return out


class LbEndpointWriter:
    """Writes endpoints, grouped by locality, into ``LocalityLbEndpoints``, for one translation
    call. Each ``LbEndpoint`` is built in place in its assignment (one built apart and then added
    would be built and copied). The endpoints of a service port mostly share health, weight and
    port, so the first ``LbEndpoint`` of each such combination is kept as a template and the
    others are copied from it (in C) with only the address set: a third cheaper than setting every
    field of every endpoint. ``istio_mtls`` says which endpoints get ``tlsMode: istio`` metadata
    (default: those labelled as having a sidecar)."""

    def __init__(self, istio_mtls: Callable[[Endpoint], bool] = has_sidecar) -> None:
        self._templates: dict[tuple[str, int, int, bool], LbEndpoint] = {}
        self._istio_mtls = istio_mtls

    def add_groups(
        self, target: RepeatedCompositeFieldContainer[LocalityLbEndpoints], groups: Iterable[LocalityGroup]
    ) -> None:
        """Locality groups with their priority and weight (``locality.py``)."""
        for item in groups:
            group = target.add()
            if item.locality:
                group.locality.CopyFrom(locality(item.locality))
            else:
                group.locality.SetInParent()
            for endpoint in item.endpoints:
                self.add(group.lb_endpoints, endpoint)
            group.load_balancing_weight.value = item.weight
            if item.priority:
                group.priority = item.priority

    def add_localities(
        self, target: RepeatedCompositeFieldContainer[LocalityLbEndpoints], endpoints: Iterable[Endpoint]
    ) -> None:
        """Sendable endpoints grouped by locality (sorted by locality name, endpoints in order),
        each ``LbEndpoint`` carrying its weight and each locality their sum."""
        for name, members in sorted(by_locality(endpoints).items()):
            group = target.add()
            if name:
                group.locality.CopyFrom(locality(name))
            else:
                group.locality.SetInParent()
            lb_endpoints = group.lb_endpoints
            for endpoint in members:
                self.add(lb_endpoints, endpoint)
            group.load_balancing_weight.value = sum([e.weight or 1 for e in members])

    def add(self, target: RepeatedCompositeFieldContainer[LbEndpoint], endpoint: Endpoint) -> None:
        istio = self._istio_mtls(endpoint)
        if endpoint.address.startswith(UNIX_PREFIX):  # a pipe, not host:port; rare
            target.append(lb_endpoint(endpoint, istio))
            return
        key = (endpoint.health, endpoint.weight, endpoint.port, istio)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = lb_endpoint(endpoint, istio)
        out = target.add()
        out.CopyFrom(template)
        out.endpoint.address.socket_address.address = endpoint.address


def by_locality(endpoints: Iterable[Endpoint]) -> dict[str, list[Endpoint]]:
    """The sendable endpoints (a health in ``HEALTH_STATUS``) by locality name, in order."""
    groups: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        if endpoint.health in HEALTH_STATUS:
            groups.setdefault(endpoint.locality, []).append(endpoint)
    return groups


def load_assignment(
    cluster_name: str, endpoints: Iterable[Endpoint], writer: LbEndpointWriter | None = None
) -> endpoint_pb2.ClusterLoadAssignment:
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    (writer or LbEndpointWriter()).add_localities(out.endpoints, endpoints)
    return out


def visible_services(snapshot: MeshSnapshot, proxy: Proxy) -> list[Service]:
    """The services the proxy sees, one per hostname: those exported to its namespace, and of a
    hostname declared in several namespaces the proxy's own namespace's declaration, else the
    first in snapshot order."""
    return list(visible_services_in(snapshot, proxy.namespace))


def visible_services_in(snapshot: MeshSnapshot, namespace: str) -> tuple[Service, ...]:
    """``visible_services`` for any proxy of ``namespace``, computed once per snapshot."""
    return snapshot.derived_for(_visible_tuple, namespace)


def _visible_tuple(snapshot: MeshSnapshot, namespace: str) -> tuple[Service, ...]:
    return tuple(_visible_from(snapshot, namespace))


def _visible_from(snapshot: MeshSnapshot, namespace: str) -> list[Service]:
    visible = [s for s in snapshot.services if s.visible_from(namespace)]
    chosen: dict[str, Service] = {}
    for service in sorted(visible, key=lambda s: s.namespace != namespace):
        chosen.setdefault(service.hostname, service)
    return list(chosen.values())


# A visible service and the DestinationRule that applies to it for one proxy, if any.
Destination: TypeAlias = tuple[Service, AppliedRule | None]


def visible_destinations(snapshot: MeshSnapshot, proxy: Proxy) -> Mapping[str, Destination]:
    """``visible_services`` by hostname, each with its DestinationRule for this proxy
    (``destination_rule_for``), in the same order. Both depend only on the proxy's namespace and
    labels, so they are computed once per snapshot for each such pair: CDS and EDS of one proxy,
    and every proxy alike, share them."""
    return snapshot.derived_for(_destinations, (proxy.namespace, frozenset(proxy.labels.items())))


def _destinations(
    snapshot: MeshSnapshot, key: tuple[str, frozenset[tuple[str, str]]]
) -> Mapping[str, Destination]:
    namespace, labels = key
    index = destination_rule_index(snapshot)
    found = {
        s.hostname: (s, destination_rule_for(index, namespace, dict(labels), s.hostname, s.namespace))
        for s in _visible_from(snapshot, namespace)
    }
    return MappingProxyType(found)


def translate_endpoints(
    snapshot: MeshSnapshot, proxy: Proxy, clusters: Iterable[cluster_pb2.Cluster]
) -> list[endpoint_pb2.ClusterLoadAssignment]:
    """One ``ClusterLoadAssignment`` per EDS cluster (named by its ``service_name``); a cluster
    whose DestinationRule asks for locality load balancing gets its priorities and weights for
    this proxy's locality (``locality.py``)."""
    destinations = visible_destinations(snapshot, proxy)
    eds = [c for c in clusters if c.type == cluster_pb2.Cluster.EDS]
    names = [c.eds_cluster_config.service_name or c.name for c in eds]
    writer = LbEndpointWriter(endpoint_mtls(snapshot))
    admit = egress_admission(snapshot, proxy)  # NetworkPolicy egress: denied endpoints are left out
    out = []
    for name in names:
        endpoints = admitted(admit, cluster_endpoints(snapshot, destinations, name))
        policy = locality_policy(destinations, name)
        if policy is None:
            out.append(load_assignment(name, endpoints, writer))
            continue
        assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        groups = locality_groups(by_locality(endpoints), policy, proxy.locality, proxy.labels)
        writer.add_groups(assignment.endpoints, groups)
        out.append(assignment)
    return out


def locality_policy(destinations: Mapping[str, Destination], cluster_name: str) -> TrafficPolicy | None:
    """The traffic policy of an outbound cluster when it could shape its localities (outlier
    detection: failover; or ``distribute``); ``None`` otherwise, the common case, which keeps the
    plain grouping."""
    key = parse_cluster_name(cluster_name)
    if key is None or key.direction != "outbound" or key.hostname not in destinations:
        return None
    rule = destinations[key.hostname][1]
    if rule is None or rule.spec.traffic_policy is None and not rule.spec.subsets:
        return None
    subset = rule.spec.subset(key.subset) if key.subset else None
    policy = cluster_policy(rule.spec.traffic_policy, key.port, subset)
    if policy is None:
        return None
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None else None
    if policy.outlier_detection is None and (setting is None or not setting.distribute):
        return None  # neither failover nor distribute: the plain grouping is the same
    return policy


def _sendable_for(snapshot: MeshSnapshot, hostname: str, port: int) -> tuple[Endpoint, ...]:
    # Endpoints Envoy would reject are left out, so one cannot block the others (endpoint_checks).
    return sendable(snapshot, snapshot.endpoints_for(hostname, port))


def cluster_endpoints(
    snapshot: MeshSnapshot, destinations: Mapping[str, Destination], cluster_name: str
) -> tuple[Endpoint, ...]:
    """The endpoints an outbound cluster (default or subset) holds for the proxy whose
    ``visible_destinations`` are given."""
    key = parse_cluster_name(cluster_name)
    if key is None or key.direction != "outbound" or key.hostname not in destinations:
        return ()
    endpoints = _sendable_for(snapshot, key.hostname, key.port)
    if not key.subset:
        return endpoints
    rule = destinations[key.hostname][1]
    subset = rule.spec.subset(key.subset) if rule is not None else None
    return subset_endpoints(endpoints, subset.labels) if subset is not None else ()
