"""Registry endpoints → Envoy ``ClusterLoadAssignment``s, like Istio's EDS.

Istio ``pilot/pkg/xds/endpoints/endpoint_builder.go``:

- a subset cluster holds only the endpoints whose labels include every subset label
  (``EndpointBuilder.WithSubset``, ``labels.Instance.SubsetOf``);
- unhealthy endpoints are left out (``filterIstioEndpoint``; ``SEND_UNHEALTHY_ENDPOINTS`` is off
  by default); draining ones are sent with status DRAINING, so Envoy keeps their connections but
  balances no new requests to them;
- endpoints are grouped by locality (``region/zone/subzone``, ``util.ConvertLocality``), each
  ``LbEndpoint`` carrying its weight and each locality the sum of its endpoints' weights;
- every EDS cluster gets an assignment, empty if need be, so Envoy's cluster finishes warming.

The same ``LocalityLbEndpoints`` are inlined into STRICT_DNS / LOGICAL_DNS clusters by
``clusters.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from pilotfish.registry.model import Endpoint, Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.destination_rules import (
    DestinationRuleIndex,
    destination_rule_for,
    destination_rule_index,
)
from pilotfish.xds.translate.names import parse_cluster_name

UNIX_PREFIX = "unix://"

# Registry health → what Envoy is told; a status missing here is not sent at all.
HEALTH_STATUS: Mapping[str, int] = {
    "HEALTHY": health_check_pb2.HEALTHY,
    "DRAINING": health_check_pb2.DRAINING,
}


def subset_endpoints(endpoints: Iterable[Endpoint], subset_labels: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """The endpoints a subset selects: those whose labels include every subset label."""
    return tuple(e for e in endpoints if all(e.labels.get(k) == v for k, v in subset_labels.items()))


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


def add_lb_endpoint(group: endpoint_components_pb2.LocalityLbEndpoints, endpoint: Endpoint) -> None:
    lb = group.lb_endpoints.add(health_status=HEALTH_STATUS[endpoint.health])
    set_address(lb.endpoint.address, endpoint.address, endpoint.port)
    lb.load_balancing_weight.value = endpoint.weight or 1


def add_locality_lb_endpoints(
    target: RepeatedCompositeFieldContainer[endpoint_components_pb2.LocalityLbEndpoints],
    endpoints: Iterable[Endpoint],
) -> None:
    """Sendable endpoints grouped by locality (sorted by locality name, endpoints in order),
    added to ``target`` in place: each message is built where it ends up, never copied."""
    for name, members in sorted(by_locality(endpoints).items()):
        group = target.add()
        if name:
            group.locality.CopyFrom(locality(name))
        else:
            group.locality.SetInParent()
        for endpoint in members:
            add_lb_endpoint(group, endpoint)
        group.load_balancing_weight.value = sum(e.weight or 1 for e in members)


def by_locality(endpoints: Iterable[Endpoint]) -> dict[str, list[Endpoint]]:
    """The sendable endpoints (``HEALTH_STATUS``) by locality name, in order."""
    groups: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        if endpoint.health in HEALTH_STATUS:
            groups.setdefault(endpoint.locality, []).append(endpoint)
    return groups


def load_assignment(cluster_name: str, endpoints: Iterable[Endpoint]) -> endpoint_pb2.ClusterLoadAssignment:
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    add_locality_lb_endpoints(out.endpoints, endpoints)
    return out


def visible_services(snapshot: MeshSnapshot, proxy: Proxy) -> list[Service]:
    """The services the proxy sees, one per hostname: those exported to its namespace, and of a
    hostname declared in several namespaces the proxy's own namespace's declaration, else the
    first in snapshot order."""
    visible = [s for s in snapshot.services if s.visible_from(proxy.namespace)]
    chosen: dict[str, Service] = {}
    for service in sorted(visible, key=lambda s: s.namespace != proxy.namespace):
        chosen.setdefault(service.hostname, service)
    return list(chosen.values())


def cluster_endpoints(
    snapshot: MeshSnapshot,
    proxy: Proxy,
    services: Mapping[str, Service],
    index: DestinationRuleIndex,
    cluster_name: str,
) -> tuple[Endpoint, ...]:
    """The endpoints an outbound cluster (default or subset) holds for this proxy; ``services``
    are the proxy's visible services by hostname."""
    key = parse_cluster_name(cluster_name)
    if key is None or key.direction != "outbound" or key.hostname not in services:
        return ()
    endpoints = snapshot.endpoints_for(key.hostname, key.port)
    if not key.subset:
        return endpoints
    owner = services[key.hostname].namespace
    rule = destination_rule_for(index, proxy.namespace, proxy.labels, key.hostname, owner)
    subset = rule.spec.subset(key.subset) if rule is not None else None
    return subset_endpoints(endpoints, subset.labels) if subset is not None else ()


def translate_endpoints(
    snapshot: MeshSnapshot, proxy: Proxy, clusters: Iterable[cluster_pb2.Cluster]
) -> list[endpoint_pb2.ClusterLoadAssignment]:
    """One ``ClusterLoadAssignment`` per EDS cluster (named by its ``service_name``)."""
    index = destination_rule_index(snapshot)
    services = {s.hostname: s for s in visible_services(snapshot, proxy)}
    eds = [c for c in clusters if c.type == cluster_pb2.Cluster.EDS]
    names = [c.eds_cluster_config.service_name or c.name for c in eds]
    return [load_assignment(n, cluster_endpoints(snapshot, proxy, services, index, n)) for n in names]
