"""WorkloadGroup (networking.istio.io): the template for WorkloadEntries that VMs register, and
how their readiness is probed.

Fields: istio/api ``networking/v1alpha3/workload_group.proto`` (identical in v1alpha3, v1beta1 and
v1). Rules: istio/istio ``pkg/config/validation/validation.go`` (``ValidateWorkloadGroup``,
``validateReadinessProbe``) and the CRD's schema and CEL rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config import checks
from pilotfish.config.decode import Int32, Message, Path, UInt32, field
from pilotfish.config.networking.workload_entry import WorkloadEntrySpec, validate_workload_entry_spec
from pilotfish.config.resource import Finding, Resource


@dataclass(frozen=True, slots=True)
class WorkloadGroupMetadata(Message):
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HTTPHeader(Message):
    name: str = ""
    value: str = ""


@dataclass(frozen=True, slots=True)
class HTTPHealthCheckConfig(Message):
    port: UInt32 = field(required=True)
    path: str = ""
    host: str = ""
    scheme: str = ""
    http_headers: tuple[HTTPHeader, ...] = ()


@dataclass(frozen=True, slots=True)
class TCPHealthCheckConfig(Message):
    port: UInt32 = field(required=True)
    host: str = ""


@dataclass(frozen=True, slots=True)
class ExecHealthCheckConfig(Message):
    command: tuple[str, ...] = field(required=True)


@dataclass(frozen=True, slots=True)
class GrpcHealthCheckConfig(Message):
    port: UInt32 = 0
    service: str = ""


@dataclass(frozen=True, slots=True)
class ReadinessProbe(Message):
    ONEOFS = (("httpGet", "tcpSocket", "exec", "grpc"),)

    initial_delay_seconds: Int32 = 0
    timeout_seconds: Int32 = 0
    period_seconds: Int32 = 0
    success_threshold: Int32 = 0
    failure_threshold: Int32 = 0
    http_get: HTTPHealthCheckConfig | None = None
    tcp_socket: TCPHealthCheckConfig | None = None
    exec: ExecHealthCheckConfig | None = None
    grpc: GrpcHealthCheckConfig | None = None


@dataclass(frozen=True, slots=True)
class WorkloadGroupSpec(Message):
    template: WorkloadEntrySpec = field(required=True)
    metadata: WorkloadGroupMetadata | None = None
    probe: ReadinessProbe | None = None


PROBE_COUNTS = (
    ("initialDelaySeconds", "initial_delay_seconds"),
    ("timeoutSeconds", "timeout_seconds"),
    ("periodSeconds", "period_seconds"),
    ("successThreshold", "success_threshold"),
    ("failureThreshold", "failure_threshold"),
)
HTTP_SCHEMES = frozenset({"", "HTTP", "HTTPS"})


def _http_get(check: HTTPHealthCheckConfig, path: Path) -> Iterator[Finding]:
    yield from checks.findings(((*path, "port"), checks.port_number(check.port)))
    if check.scheme not in HTTP_SCHEMES:
        yield Finding((*path, "scheme"), "scheme must be one of HTTP, HTTPS")
    for i, header in enumerate(check.http_headers):
        yield from checks.findings(((*path, "httpHeaders", i, "name"), checks.http_header_name(header.name)))


def _probe_method(probe: ReadinessProbe, path: Path) -> Iterator[Finding]:
    if probe.http_get is not None:
        yield from _http_get(probe.http_get, (*path, "httpGet"))
    elif probe.tcp_socket is not None:
        yield from checks.findings(((*path, "tcpSocket", "port"), checks.port_number(probe.tcp_socket.port)))
    elif probe.exec is not None:
        if not probe.exec.command:
            yield Finding((*path, "exec", "command"), "exec.command is required")
        for i, arg in enumerate(probe.exec.command):
            if not arg:
                yield Finding((*path, "exec", "command", i), "command arguments may not be empty")
    elif probe.grpc is not None:
        yield from checks.findings(((*path, "grpc", "port"), checks.port_number(probe.grpc.port)))
    else:
        yield Finding(path, "probe needs one of httpGet, tcpSocket, exec, grpc")


def validate_probe(probe: ReadinessProbe | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateReadinessProbe``."""
    if probe is None:
        return
    for json_name, attr in PROBE_COUNTS:
        if getattr(probe, attr) < 0:
            yield Finding((*path, json_name), f"{json_name} must be non-negative")
    yield from _probe_method(probe, path)


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: WorkloadGroupSpec = resource.spec
    # The template's address is filled in when a VM registers, so it is not required here.
    yield from validate_workload_entry_spec(spec.template, ("template",))
    if spec.metadata is not None:
        yield from checks.labels(spec.metadata.labels, ("metadata", "labels"))
    yield from validate_probe(spec.probe, ("probe",))
