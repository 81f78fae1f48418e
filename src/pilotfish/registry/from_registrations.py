"""Endpoints from registration leases (pure): the registry's third source after ServiceEntry and
WorkloadEntry (see ``from_config``).

A registration joins either

* a **service host** (``service: ratings.prod.svc.cluster.local``), like a Kong target joins an
  upstream: the workload serves every port of the service at the registration's ``port``; or
* a **WorkloadGroup** (``service: WorkloadGroup/NAMESPACE/NAME``), as a proxy that connects with
  auto-registration metadata does (Istio's WorkloadEntry auto-registration,
  ``pilot/pkg/autoregistration``): the group's template, with the workload's address and labels
  merged in, is a WorkloadEntry that ServiceEntries select by ``workloadSelector`` — the
  endpoint ports come from the template, as for any WorkloadEntry.

A draining registration stays in EDS with health DRAINING (Envoy sends it no new requests), so
a workload can leave without a request failing. A host no ServiceEntry declares gets no
endpoints until one does: the registration waits for its service, it is not an error.

Expiry is the store's business (``Store.expire`` reaps leases, which bumps the revision): the
endpoints here are all the registrations given, so a mesh built while the store is down keeps
the leases it last saw rather than dropping every workload whose heartbeat could not land.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from pilotfish.config.networking.workload_entry import WorkloadEntrySpec
from pilotfish.config.resource import Resource
from pilotfish.registry.from_config import (
    LOCALITY_LABEL,
    declared_services,
    endpoint_port,
    label_locality,
    services_of,
)
from pilotfish.registry.model import Endpoint, HealthStatus, RegisteredWorkload, Service
from pilotfish.store.base import Registration

GROUP_PREFIX = "WorkloadGroup/"
# Istio's inbound capture port. An auto-registered workload's endpoints take their ports from its
# WorkloadGroup; the lease records this port only because every lease must name one.
AUTO_REGISTERED_PORT = 15006
AUTO_ID_PREFIX = "auto/"


def group_ref(namespace: str, name: str) -> str:
    """The ``service`` of a registration that joins a WorkloadGroup."""
    return f"{GROUP_PREFIX}{namespace}/{name}"


def parse_group_ref(service: str) -> tuple[str, str] | None:
    """``(namespace, name)`` for a WorkloadGroup reference, ``None`` for a service host."""
    if not service.startswith(GROUP_PREFIX):
        return None
    namespace, _, name = service[len(GROUP_PREFIX) :].partition("/")
    return (namespace, name) if namespace and name else None


def auto_registration(
    group: str,
    namespace: str,
    ip: str,
    labels: Mapping[str, str],
    service_account: str,
    grace_seconds: float,
    locality: str = "",
) -> Registration:
    """The lease for a proxy connected with auto-registration metadata. Its TTL is the grace
    period: the server renews it while the proxy is connected, so it lapses ``grace_seconds``
    after the proxy leaves (or after the server holding its stream dies). The proxy's own
    locality (its bootstrap's) becomes the workload's, as Istio gives an auto-registered
    WorkloadEntry the proxy's locality; it travels as the ``istio-locality`` label."""
    if locality and LOCALITY_LABEL not in labels:
        labels = {**labels, LOCALITY_LABEL: locality.replace("/", ".")}
    return Registration(
        id=f"{AUTO_ID_PREFIX}{namespace}/{group}/{ip}",
        service=group_ref(namespace, group),
        address=ip,
        port=AUTO_REGISTERED_PORT,
        labels=dict(labels),
        service_account=service_account,
        ttl_seconds=grace_seconds,
    )


def registration_endpoints(
    registrations: Iterable[Registration], resources: Iterable[Resource[Any]]
) -> tuple[Endpoint, ...]:
    """Every endpoint the registrations add to the mesh the resources declare."""
    resources = tuple(resources)
    entries = sorted((r for r in resources if r.kind == "ServiceEntry"), key=lambda r: (r.namespace, r.name))
    services = _first_by_host(s for entry in entries for s in declared_services(entry))
    groups = {(r.namespace, r.name): r for r in resources if r.kind == "WorkloadGroup"}
    out: list[Endpoint] = []
    for reg in sorted(registrations, key=lambda r: r.id):
        group = parse_group_ref(reg.service)
        if group is None:
            out.extend(_host_endpoints(reg, services.get(reg.service)))
        elif group in groups:
            out.extend(_group_endpoints(reg, groups[group], entries))
    return tuple(out)


def registered_workloads(
    registrations: Iterable[Registration], resources: Iterable[Resource[Any]]
) -> tuple[RegisteredWorkload, ...]:
    """The workload of each registration: in its WorkloadGroup's namespace with the group's
    labels and named ports merged in, or in its service's namespace with the service's port names
    on the registration's port. A registration nothing declares yet has no namespace: left out."""
    resources = tuple(resources)
    entries = sorted((r for r in resources if r.kind == "ServiceEntry"), key=lambda r: (r.namespace, r.name))
    services = _first_by_host(s for entry in entries for s in declared_services(entry))
    groups = {(r.namespace, r.name): r for r in resources if r.kind == "WorkloadGroup"}
    out: list[RegisteredWorkload] = []
    for reg in sorted(registrations, key=lambda r: r.id):
        group_key = parse_group_ref(reg.service)
        group = groups.get(group_key) if group_key is not None else None
        service = services.get(reg.service)
        if group is not None:
            spec = _workload(reg, group)
            out.append(
                RegisteredWorkload(
                    reg.id, group.namespace, reg.address, spec.labels, spec.ports, spec.service_account
                )
            )
        elif service is not None:
            ports = {p.name: reg.port for p in service.ports}
            out.append(
                RegisteredWorkload(
                    reg.id, service.namespace, reg.address, reg.labels, ports, reg.service_account
                )
            )
    return tuple(out)


def registration_namespace(service: str, resources: Iterable[Resource[Any]]) -> str:
    """The namespace a registration lives in for access control: its WorkloadGroup's, else the
    namespace of the first ServiceEntry declaring its host; "" when nothing declares it."""
    group = parse_group_ref(service)
    if group is not None:
        return group[0]
    entries = sorted((r for r in resources if r.kind == "ServiceEntry"), key=lambda r: (r.namespace, r.name))
    return next((e.namespace for e in entries if service in e.spec.hosts), "")


def _first_by_host(services: Iterable[Service]) -> dict[str, Service]:
    """A host declared in several namespaces takes the first declaration, so a registration adds
    each endpoint once (endpoints are keyed by host and port)."""
    out: dict[str, Service] = {}
    for service in services:
        out.setdefault(service.hostname, service)
    return out


def _health(reg: Registration) -> HealthStatus:
    return "DRAINING" if reg.draining else "HEALTHY"


def _host_endpoints(reg: Registration, service: Service | None) -> Iterator[Endpoint]:
    if service is None:
        return
    for port in service.ports:
        yield Endpoint(
            hostname=service.hostname,
            service_port=port.number,
            address=reg.address,
            port=reg.port,
            labels=dict(reg.labels),
            weight=reg.weight,
            locality=label_locality(reg.labels),
            service_account=reg.service_account,
            namespace=service.namespace,
            workload=f"Registration/{reg.id}",
            health=_health(reg),
        )


def _workload(reg: Registration, group: Resource[Any]) -> WorkloadEntrySpec:
    """The WorkloadEntry Istio would create: the template with the workload's address and labels
    (template labels, then the group's metadata labels, then the workload's own)."""
    template: WorkloadEntrySpec = group.spec.template
    metadata_labels = group.spec.metadata.labels if group.spec.metadata is not None else {}
    return replace(
        template,
        address=reg.address,
        labels={**template.labels, **metadata_labels, **reg.labels},
        service_account=reg.service_account or template.service_account,
    )


def _group_endpoints(
    reg: Registration, group: Resource[Any], entries: Iterable[Resource[Any]]
) -> Iterator[Endpoint]:
    workload = _workload(reg, group)
    for entry in entries:
        selector = entry.spec.workload_selector
        if entry.namespace != group.namespace or selector is None or not selector.matches(workload.labels):
            continue
        for service in services_of(entry):
            for port in service.ports:
                yield Endpoint(
                    hostname=service.hostname,
                    service_port=port.number,
                    address=workload.address,
                    port=endpoint_port(port, workload.ports),
                    labels=dict(workload.labels),
                    weight=workload.weight or reg.weight,
                    locality=workload.locality or label_locality(workload.labels),
                    service_account=workload.service_account,
                    network=workload.network,
                    namespace=group.namespace,
                    workload=f"Registration/{reg.id}",
                    health=_health(reg),
                )
