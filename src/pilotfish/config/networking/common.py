"""Messages and checks several networking.istio.io kinds share: destinations, ports, protocols,
``exportTo`` and selectors.

Fields: istio/api ``networking/v1alpha3/virtual_service.proto`` (``Destination``,
``PortSelector``, ``Percent``). Rules: istio/istio ``pkg/config/validation/validation.go``
(``validateDestination``, ``validateExportTo``, ``ValidateProtocol``,
``ValidateAlphaWorkloadSelector``, ``validateWorkloadSelector``) and ``pkg/config/protocol``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, UInt32, field
from pilotfish.config.resource import Finding
from pilotfish.config.selector import LabelSelector, WorkloadSelector


@dataclass(frozen=True, slots=True)
class PortSelector(Message):
    number: UInt32 = 0


@dataclass(frozen=True, slots=True)
class Destination(Message):
    """A service in the registry (``host``), optionally a subset of it and one of its ports."""

    host: str = field(required=True)
    subset: str = ""
    port: PortSelector | None = None


@dataclass(frozen=True, slots=True)
class Percent(Message):
    value: float = 0.0


# Istio ``protocol.Parse`` (case-insensitive) → (is HTTP, is TLS). Anything else is unsupported.
PROTOCOLS: Mapping[str, tuple[bool, bool]] = {
    "http": (True, False),
    "http2": (True, False),
    "http_proxy": (True, False),
    "grpc": (True, False),
    "grpc-web": (True, False),
    "https": (False, True),
    "tls": (False, True),
    "tcp": (False, False),
    "udp": (False, False),
    "mongo": (False, False),
    "redis": (False, False),
    "mysql": (False, False),
}


def is_http(protocol: str) -> bool:
    return PROTOCOLS.get(protocol.lower(), (False, False))[0]


def is_tls(protocol: str) -> bool:
    return PROTOCOLS.get(protocol.lower(), (False, False))[1]


def protocol_name(value: str) -> str | None:
    """Istio ``ValidateProtocol``: empty (sniffed) or a known protocol, any case."""
    if value and value.lower() not in PROTOCOLS:
        return f"unsupported protocol {value!r}; supported: HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, ..."
    return None


def port_selector(port: PortSelector | None, path: Path) -> Iterator[Finding]:
    if port is not None:
        yield from checks.findings(((*path, "number"), checks.port_number(port.number)))


def subset_name(name: str) -> str | None:
    """Istio ``validateSubsetName``."""
    if not name:
        return "subset name cannot be empty"
    return None if checks.dns1123_label(name) is None else f"subset name is invalid: {name!r}"


def validate_destination(destination: Destination, path: Path) -> Iterator[Finding]:
    """Istio ``validateDestination``: a (wildcard) domain that is not ``*``, a DNS-label subset, a port."""
    host = destination.host
    problem = f"invalid destination host {host!r}" if host == "*" else checks.wildcard_domain(host)
    yield from checks.findings(((*path, "host"), problem))
    if destination.subset:
        yield from checks.findings(((*path, "subset"), subset_name(destination.subset)))
    yield from port_selector(destination.port, (*path, "port"))


def validate_export_to(
    namespace: str, export_to: Sequence[str], path: Path, *, service_entry: bool = False
) -> Iterator[Finding]:
    """Istio ``validateExportTo``: ``.``, ``*``, ``~`` (ServiceEntry only) or namespace names, no
    duplicates, and ``*``/``~`` alone."""
    seen: set[str] = set()
    for i, entry in enumerate(export_to):
        key = namespace if entry == "." else entry
        if key in seen:
            yield Finding((*path, i), f"duplicate entries in exportTo: {entry!r}")
            continue
        if not (entry in ("*", ".") or (service_entry and entry == "~") or not checks.dns1123_label(entry)):
            yield Finding((*path, i), f"invalid exportTo value {entry!r}: use '.', '*' or a namespace")
            continue
        seen.add(key)
    if len(export_to) > 1 and "*" in seen:
        yield Finding(path, "cannot have both public (*) and non-public exportTo values for a resource")
    if len(export_to) > 1 and "~" in seen:
        yield Finding(path, "cannot export service entry to no one (~) and someone")


def validate_label_selector(selector: LabelSelector | None, path: Path) -> Iterator[Finding]:
    """Istio ``ValidateAlphaWorkloadSelector`` (ServiceEntry, Sidecar) and the CRD's CEL rule."""
    if selector is None:
        return
    for key, value in selector.labels.items():
        yield from _selector_label(key, value, (*path, "labels", key))
    if not selector.labels:
        yield Finding(path, "workload selector specified without labels", "warning")


def validate_workload_selector(selector: WorkloadSelector | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateWorkloadSelector`` (DestinationRule; the security kinds share it)."""
    if selector is not None:
        yield from checks.workload_selector(selector.match_labels, path)


def _selector_label(key: str, value: str, path: Path) -> Iterator[Finding]:
    if not key:
        yield Finding(path, "empty key is not supported in selector")
    elif "*" in key or "*" in value:
        yield Finding(path, f"wildcard is not supported in selector: {key}={value}")
    elif len(value) > 63:
        yield Finding(path, f"label value {value!r} is longer than 63 characters")
