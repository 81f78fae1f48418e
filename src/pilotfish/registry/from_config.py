"""Services and endpoints from ServiceEntry and WorkloadEntry resources (pure).

Follows Istio's ``pilot/pkg/serviceregistry/serviceentry/conversion.go``:
- every host of a ServiceEntry is a service in the ServiceEntry's namespace;
- an endpoint's port for a service port is the endpoint's ``ports[<port name>]`` if set, else
  the service port's ``targetPort``, else the service port's number;
- ``workloadSelector`` selects WorkloadEntries *in the same namespace* by label;
- an endpoint's locality is the workload's ``locality``, else its ``istio-locality`` label;
- a port's protocol is the declared one, else the port name's prefix, else TCP (``port_protocol``);
- ``resolution: DNS`` without endpoints makes each host its own endpoint (Envoy resolves it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeAlias

from pilotfish.config.networking.common import PROTOCOLS
from pilotfish.config.resource import Resource
from pilotfish.registry.model import Endpoint, Service, ServicePort

_DNS_RESOLUTIONS = ("DNS", "DNS_ROUND_ROBIN")

# A workload as the registry sees it: (WorkloadEntry-shaped spec, namespace, origin ref).
Workload: TypeAlias = tuple[Any, str, str]


LOCALITY_LABEL = "istio-locality"  # Istio model.LocalityLabel: region.zone.subzone


def label_locality(labels: Mapping[str, str]) -> str:
    """Istio ``GetLocalityLabel``: a workload without a ``locality`` may carry it as the label
    ``istio-locality`` (label values cannot hold ``/``, so ``region.zone.subzone``)."""
    return labels.get(LOCALITY_LABEL, "").replace(".", "/")


def named_protocol(name: str) -> str | None:
    """Istio's port-name convention (``kube.ConvertProtocol``): ``<protocol>`` or
    ``<protocol>-<suffix>`` (``http-web``, ``grpc``, ``tcp-db``, ``mongo``), upper case; ``None``
    when the name names no protocol."""
    lower = name.lower()
    grpc_web = lower == "grpc-web" or lower.startswith("grpc-web-")
    prefix = "grpc-web" if grpc_web else lower.split("-", 1)[0]
    return prefix.upper() if prefix in PROTOCOLS else None


def port_protocol(protocol: str, name: str) -> str:
    """The protocol of a service port, upper case: the declared one; else the name's
    (``named_protocol``); else TCP. Istio would sniff an undeclared protocol; pilotfish has no
    sniffing, so anything unknown (``postgres``, ``amqp``...) is opaque TCP."""
    if protocol:
        return protocol.upper()
    return named_protocol(name) or "TCP"


def services_of(entry: Resource[Any]) -> list[Service]:
    spec = entry.spec
    ports = tuple(
        ServicePort(
            p.name or f"port-{p.number}", p.number, port_protocol(p.protocol, p.name), p.target_port or 0
        )
        for p in spec.ports
    )
    return [
        Service(
            hostname=host,
            namespace=entry.namespace,
            ports=ports,
            resolution=spec.resolution or "NONE",
            location=spec.location or "MESH_EXTERNAL",
            addresses=tuple(spec.addresses),
            export_to=frozenset(spec.export_to) or frozenset({"*"}),
            subject_alt_names=tuple(spec.subject_alt_names),
            source=entry.ref,
        )
        for host in spec.hosts
    ]


def endpoint_port(port: ServicePort, workload_ports: Mapping[str, int]) -> int:
    return workload_ports.get(port.name) or port.target_port or port.number


def _endpoints_for(service: Service, port: ServicePort, workloads: Iterable[Workload]) -> list[Endpoint]:
    """One endpoint per workload on one service port. Labels are shared with the workload's frozen
    spec, not copied: nothing mutates either."""
    return [
        Endpoint(
            hostname=service.hostname,
            service_port=port.number,
            address=spec.address,
            port=endpoint_port(port, spec.ports),
            labels=spec.labels,
            weight=spec.weight or 1,
            locality=spec.locality or label_locality(spec.labels),
            service_account=spec.service_account,
            network=spec.network,
            namespace=namespace,
            workload=origin,
        )
        for spec, namespace, origin in workloads
    ]


def _dns_host_endpoint(service: Service, port: ServicePort) -> Endpoint:
    return Endpoint(
        service.hostname,
        port.number,
        service.hostname,
        port.target_port or port.number,
        namespace=service.namespace,
        workload=service.source,
    )


def endpoints_of(
    entry: Resource[Any], services: list[Service], workload_entries: Iterable[Resource[Any]]
) -> Iterator[tuple[tuple[str, int], list[Endpoint]]]:
    """The endpoints of ``entry``'s services, by (hostname, service port); a key without
    endpoints is left out."""
    spec = entry.spec
    if spec.workload_selector is not None:
        selected = [
            (we.spec, we.namespace, we.ref)
            for we in workload_entries
            if we.namespace == entry.namespace and spec.workload_selector.matches(we.spec.labels)
        ]
    else:
        origin = entry.ref
        selected = [(ep, entry.namespace, origin) for ep in spec.endpoints]
    for service in services:
        dns_host = not selected and service.resolution in _DNS_RESOLUTIONS and spec.workload_selector is None
        for port in service.ports:
            found = (
                [_dns_host_endpoint(service, port)] if dns_host else _endpoints_for(service, port, selected)
            )
            if found:
                yield (service.hostname, port.number), found


def build_registry(
    resources: Iterable[Resource[Any]],
) -> tuple[tuple[Service, ...], dict[tuple[str, int], tuple[Endpoint, ...]]]:
    """All services and their endpoints by (hostname, service port), from config resources."""
    global _memo
    entries = [r for r in resources if r.kind == "ServiceEntry"]
    workload_entries = [r for r in resources if r.kind == "WorkloadEntry"]
    services: list[Service] = []
    endpoints: dict[tuple[str, int], list[Endpoint]] = {}
    memo: dict[int, _Derived] = {}
    for entry in sorted(entries, key=lambda r: (r.namespace, r.name)):
        derived = _memo.get(id(entry))
        if derived is None or derived[0] is not entry:
            declared = services_of(entry)
            derived = (entry, declared, list(endpoints_of(entry, declared, workload_entries)))
        if entry.spec.workload_selector is None:  # what it selects changes without it
            memo[id(entry)] = derived
        services.extend(derived[1])
        for key, found in derived[2]:
            endpoints.setdefault(key, []).extend(found)
    _memo = memo
    return tuple(services), {key: tuple(eps) for key, eps in endpoints.items()}


# A ServiceEntry without a workloadSelector derives its services and endpoints from itself
# alone: kept per resource object (config files unchanged since the last reload yield the very
# same objects), so a reload after one file changed re-derives that file's entries only, and
# unchanged endpoints stay the same objects (cheap to compare). Replaced whole at each build;
# a build on another thread at the same time only recomputes more.
_Derived = tuple[Resource[Any], list[Service], list[tuple[tuple[str, int], list[Endpoint]]]]
_memo: dict[int, _Derived] = {}


def declared_services(entry: Resource[Any]) -> list[Service]:
    """``services_of(entry)``, from the last ``build_registry`` when it derived this very entry."""
    derived = _memo.get(id(entry))
    return derived[1] if derived is not None and derived[0] is entry else services_of(entry)
