"""WorkloadEntry (networking.istio.io): one non-Kubernetes workload — the exemplar kind.

Fields and rules: istio/api ``networking/v1alpha3/workload_entry.proto``, its CRD's CEL rules and
``pkg/config/validation`` ``ValidateWorkloadEntry`` / ``validateWorkloadEntry``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config import checks
from pilotfish.config.decode import Message, UInt32, field
from pilotfish.config.resource import Finding, Resource

UNIX_PREFIX = "unix://"
# CRD maxLength of the free-text fields.
MAX_LENGTHS = (
    ("address", "address", 256),
    ("network", "network", 2048),
    ("locality", "locality", 2048),
    ("serviceAccount", "service_account", 253),
)


@dataclass(frozen=True, slots=True)
class WorkloadEntrySpec(Message):
    address: str = ""
    ports: Mapping[str, UInt32] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""
    weight: UInt32 = 0
    service_account: str = ""

    @property
    def is_unix(self) -> bool:
        return self.address.startswith(UNIX_PREFIX)


def _unix_address(spec: WorkloadEntrySpec, path: tuple[str | int, ...]) -> Iterator[Finding]:
    if spec.ports:
        yield Finding((*path, "ports"), "a unix domain socket address may not have ports")
    socket = spec.address[len(UNIX_PREFIX) :]
    if socket[:1] not in ("/", "@"):
        yield Finding((*path, "address"), "UDS must be an absolute path or abstract socket")
    elif socket.endswith("/"):
        yield Finding((*path, "address"), "UDS may not be a dir")


def validate_workload_entry_spec(
    spec: WorkloadEntrySpec, path: tuple[str | int, ...] = ()
) -> Iterator[Finding]:
    """The CRD's rules, shared by WorkloadEntry, WorkloadGroup's template and ServiceEntry's endpoints."""
    if spec.is_unix:
        yield from _unix_address(spec, path)
    yield from checks.labels(spec.labels, (*path, "labels"))
    for name, number in spec.ports.items():
        where = (*path, "ports", name)
        yield from checks.findings((where, checks.port_name(name)), (where, checks.port_number(number)))
    for json_name, attr, limit in MAX_LENGTHS:
        if len(getattr(spec, attr)) > limit:
            yield Finding((*path, json_name), f"must be at most {limit} characters")


def endpoint_address(address: str, *, allow_hostname: bool) -> str | None:
    """An IP address, or (DNS resolution) a hostname (Istio ``validateWorkloadEntry``)."""
    if not address or address.startswith(UNIX_PREFIX) or checks.is_ip(address):
        return None
    if not allow_hostname:
        return f"endpoint address {address!r} is not a valid IP address"
    if checks.fqdn(address):
        return f"endpoint address {address!r} is not a valid FQDN or an IP address"
    return None


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: WorkloadEntrySpec = resource.spec
    if not spec.address and not spec.network:
        yield Finding(("address",), "address is required")
    elif not spec.address:
        yield Finding(("address",), f"address is unset with network {spec.network!r}", "warning")
    yield from checks.findings((("address",), endpoint_address(spec.address, allow_hostname=True)))
    yield from validate_workload_entry_spec(spec)
