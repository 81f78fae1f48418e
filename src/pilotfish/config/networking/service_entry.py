"""ServiceEntry (networking.istio.io): a service the mesh does not discover by itself — its hosts,
ports, how its endpoints are found (resolution) and the endpoints themselves.

Fields: istio/api ``networking/v1alpha3/service_entry.proto`` (identical in v1alpha3, v1beta1 and
v1). Rules: istio/istio ``pkg/config/validation/validation.go`` (``ValidateServiceEntry``,
``validateWorkloadEntry``, ``validateExportTo``) and the CRD's CEL rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, UInt32, field
from pilotfish.config.networking.common import (
    is_http,
    is_tls,
    protocol_name,
    validate_export_to,
    validate_label_selector,
)
from pilotfish.config.networking.health_check import health_check_problems
from pilotfish.config.networking.workload_entry import (
    WorkloadEntrySpec,
    endpoint_address,
    validate_workload_entry_spec,
)
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.selector import LabelSelector

Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]


@dataclass(frozen=True, slots=True)
class ServicePort(Message):
    number: UInt32 = field(required=True)
    name: str = field(required=True)
    protocol: str = ""
    target_port: UInt32 = 0


@dataclass(frozen=True, slots=True)
class ServiceEntrySpec(Message):
    hosts: tuple[str, ...] = field(required=True)
    addresses: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Resolution = "NONE"
    endpoints: tuple[WorkloadEntrySpec, ...] = ()
    workload_selector: LabelSelector | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()


# Per resolution: (endpoints allowed, at most one endpoint, endpoint addresses may be hostnames).
RESOLUTIONS: dict[str, tuple[bool, bool, bool]] = {
    "NONE": (False, False, False),
    "STATIC": (True, False, False),
    "DNS": (True, False, True),
    "DNS_ROUND_ROBIN": (True, True, True),
    "DYNAMIC_DNS": (False, False, False),
}
DNS_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN"})


def _hosts(spec: ServiceEntrySpec) -> Iterator[Finding]:
    if not spec.hosts:
        yield Finding(("hosts",), "service entry must have at least one host")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            yield Finding(("hosts", i), "hostname cannot be wildcard '*'")
            continue
        yield from checks.findings((("hosts", i), checks.wildcard_domain(host)))
        if problem := checks.partial_wildcard(host):
            yield Finding(("hosts", i), problem, "warning")
        if spec.resolution in DNS_RESOLUTIONS and not spec.endpoints and checks.fqdn(host):
            yield Finding(
                ("hosts", i),
                f"hosts must be FQDN if no endpoints are provided for resolution {spec.resolution}",
            )


def _addresses(spec: ServiceEntrySpec) -> Iterator[Finding]:
    for i, address in enumerate(spec.addresses):
        yield from checks.findings((("addresses", i), checks.ip_subnet(address)))
        if "/" in address and spec.resolution not in ("NONE", "STATIC"):
            yield Finding(
                ("addresses", i), "CIDR addresses are allowed only for NONE/STATIC resolution types"
            )


def _ports(spec: ServiceEntrySpec) -> Iterator[Finding]:
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        where = ("ports", i)
        if port.name in names:
            yield Finding((*where, "name"), f"service entry port name {port.name!r} already defined")
        if port.number in numbers:
            yield Finding((*where, "number"), f"service entry port {port.number} already defined")
        names.add(port.name)
        numbers.add(port.number)
        yield from checks.findings(
            ((*where, "name"), checks.port_name(port.name)),
            ((*where, "protocol"), protocol_name(port.protocol)),
            ((*where, "number"), checks.port_number(port.number)),
        )
        if port.target_port:
            yield from checks.findings(((*where, "targetPort"), checks.port_number(port.target_port)))
            if spec.resolution == "NONE":
                yield Finding(
                    (*where, "targetPort"), "targetPort has no effect when resolution is NONE", "warning"
                )


def _endpoint(spec: ServiceEntrySpec, endpoint: WorkloadEntrySpec, path: Path) -> Iterator[Finding]:
    hostnames = RESOLUTIONS[spec.resolution][2]
    if not endpoint.address and not endpoint.network:
        yield Finding((*path, "address"), "address is required")
    yield from checks.findings(
        ((*path, "address"), endpoint_address(endpoint.address, allow_hostname=hostnames))
    )
    yield from validate_workload_entry_spec(endpoint, path)
    service_ports = {p.name for p in spec.ports}
    for name in endpoint.ports:
        if name not in service_ports:
            yield Finding(
                (*path, "ports", name), f"endpoint port {name!r} is not defined by the service entry"
            )
    if endpoint.is_unix and spec.resolution == "STATIC" and len(spec.ports) != 1:
        yield Finding((*path, "address"), "exactly 1 service port required for unix endpoints")


def _resolution(spec: ServiceEntrySpec) -> Iterator[Finding]:
    endpoints_allowed, single, _ = RESOLUTIONS[spec.resolution]
    if spec.endpoints and not endpoints_allowed:
        yield Finding(("endpoints",), f"no endpoints should be provided for resolution {spec.resolution}")
    if single and len(spec.endpoints) > 1:
        yield Finding(("endpoints",), f"there must only be 0 or 1 endpoint for resolution {spec.resolution}")
    if spec.workload_selector is not None and spec.resolution != "STATIC":
        yield Finding(
            ("workloadSelector",),
            f"workloadSelector should not be set with resolution {spec.resolution}",
            "warning",
        )
    if spec.endpoints and endpoints_allowed:
        for i, endpoint in enumerate(spec.endpoints):
            yield from _endpoint(spec, endpoint, ("endpoints", i))


def _multiple_hosts(spec: ServiceEntrySpec) -> Iterator[Finding]:
    """Plain TCP cannot tell hosts apart, so several hosts need HTTP or TLS ports (unless NONE)."""
    if spec.resolution == "NONE" or len(spec.hosts) < 2:
        return
    for i, port in enumerate(spec.ports):
        if not is_http(port.protocol) and not is_tls(port.protocol):
            yield Finding(("ports", i, "protocol"), "multiple hosts provided with non-HTTP, non-TLS ports")
            return


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: ServiceEntrySpec = resource.spec
    yield from validate_label_selector(spec.workload_selector, ("workloadSelector",))
    if spec.workload_selector is not None and spec.endpoints:
        yield Finding(("endpoints",), "only one of workloadSelector or endpoints can be set")
    yield from _hosts(spec)
    yield from _addresses(spec)
    yield from _ports(spec)
    yield from _resolution(spec)
    yield from _multiple_hosts(spec)
    yield from validate_export_to(resource.namespace, spec.export_to, ("exportTo",), service_entry=True)
    yield from health_check_problems(resource)
