"""WorkloadEntry (networking.istio.io): one non-Kubernetes workload — the exemplar kind.

Fields and rules: istio/api ``networking/v1alpha3/workload_entry.proto`` and
``pkg/config/validation`` ``ValidateWorkloadEntry``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config import checks
from pilotfish.config.decode import Message, UInt32, field
from pilotfish.config.resource import Finding, Resource


@dataclass(frozen=True, slots=True)
class WorkloadEntrySpec(Message):
    address: str = ""
    ports: Mapping[str, UInt32] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""
    weight: UInt32 = 0
    service_account: str = ""


def validate_workload_entry_spec(
    spec: WorkloadEntrySpec, path: tuple[str | int, ...] = ()
) -> Iterator[Finding]:
    """Shared by WorkloadEntry and WorkloadGroup's template and ServiceEntry's inline endpoints."""
    if spec.address.startswith("unix://"):
        if spec.ports:
            yield Finding((*path, "ports"), "a unix domain socket address may not have ports")
        if spec.address[7:8] not in ("/", "@"):
            yield Finding((*path, "address"), "UDS must be an absolute path or abstract socket")
    yield from checks.labels(spec.labels, (*path, "labels"))
    for name, number in spec.ports.items():
        yield from checks.findings(((*path, "ports", name), checks.port_number(number)))
    if len(spec.address) > 256:
        yield Finding((*path, "address"), "must be at most 256 characters")


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: WorkloadEntrySpec = resource.spec
    if not spec.address and not spec.network:
        yield Finding(("address",), "address is required")
    yield from validate_workload_entry_spec(spec)
