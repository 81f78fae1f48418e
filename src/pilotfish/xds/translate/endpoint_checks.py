"""Endpoints Envoy would reject, found once per ``MeshSnapshot`` and left out of every resource.

One bad endpoint must not cost a service its other endpoints: Envoy rejects a whole
``ClusterLoadAssignment`` (or, for an inlined DNS cluster, the CDS response) if a single
``SocketAddress`` fails its checks, and the rejected resource then stays at its last accepted
version for as long as the bad endpoint is in it. Input validation refuses such endpoints at the
API and in config; this is the defence behind it for anything that got into the store by another
path (an older server, a direct write). An endpoint is sendable when

* its port fits ``SocketAddress.port_value`` (``uint32``, ``lte: 65535``) and its weight
  ``LbEndpoint.load_balancing_weight`` (``UInt32Value``);
* for an EDS cluster, its address is an IP literal (Envoy resolves nothing in EDS: "malformed IP
  address") or a ``unix://`` path; for a DNS cluster any non-empty host name will do.

The dropped endpoints are pure data here; the server logs them, counts them
(``pilotfish_xds_endpoints_dropped``) and lists them under ``/debug/problemz``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pilotfish.registry.model import Endpoint
from pilotfish.registry.snapshot import MeshSnapshot

MAX_PORT = 65535
MAX_WEIGHT = 2**32 - 1
UNIX_PREFIX = "unix://"
DNS_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN"})


@dataclass(frozen=True, slots=True)
class DroppedEndpoint:
    """An endpoint left out of xDS, and why."""

    hostname: str
    service_port: int
    address: str
    port: int
    workload: str
    reason: str

    def __str__(self) -> str:
        return (
            f"endpoint {self.address}:{self.port} of {self.hostname}:{self.service_port}"
            f" ({self.workload or 'unnamed'}) left out of xDS: {self.reason}"
        )


def endpoint_problem(endpoint: Endpoint, needs_ip: bool) -> str | None:
    """Why Envoy would reject ``endpoint`` (``None``: it would not)."""
    if not 0 <= endpoint.port <= MAX_PORT:
        return f"port {endpoint.port} is outside 0-{MAX_PORT}"
    if not 0 <= endpoint.weight <= MAX_WEIGHT:
        return f"weight {endpoint.weight} is outside 0-{MAX_WEIGHT}"
    address = endpoint.address
    if address.startswith(UNIX_PREFIX):
        return None if len(address) > len(UNIX_PREFIX) else "empty unix socket path"
    if not address or address != address.strip():
        return f"address {address!r} is empty or padded"
    if needs_ip and not _is_ip(address):
        return f"address {address!r} is not an IP address (an EDS endpoint is never resolved)"
    return None


@functools.lru_cache(maxsize=65536)
def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def dropped_endpoints(snapshot: MeshSnapshot) -> Mapping[int, DroppedEndpoint]:
    """``id(endpoint)`` -> why, for every endpoint of the snapshot left out of some cluster: of
    a DNS cluster for a bad port or weight, of an EDS cluster also for an address that is no IP
    (only where some declaration of its host is not resolved by DNS)."""
    return snapshot.derived(_reported)


def _reported(snapshot: MeshSnapshot) -> Mapping[int, DroppedEndpoint]:
    eds_hosts = {s.hostname for s in snapshot.services if s.resolution not in DNS_RESOLUTIONS}
    eds, dns = _checked(snapshot, True), _checked(snapshot, False)
    found = {k: d for k, d in eds.items() if d.hostname in eds_hosts or k in dns}
    return MappingProxyType(found)


def _checked(snapshot: MeshSnapshot, needs_ip: bool) -> Mapping[int, DroppedEndpoint]:
    """Computed once per snapshot (the snapshot holds the endpoints, so the ids stay theirs)."""
    eds, dns = snapshot.derived(_find_dropped)
    return eds if needs_ip else dns


def _find_dropped(
    snapshot: MeshSnapshot,
) -> tuple[Mapping[int, DroppedEndpoint], Mapping[int, DroppedEndpoint]]:
    """The endpoints an EDS cluster must leave out, and those a DNS cluster must, in one pass;
    the common endpoint (an IP, a port and a weight in range) costs three comparisons and a
    cached lookup."""
    eds: dict[int, DroppedEndpoint] = {}
    dns: dict[int, DroppedEndpoint] = {}
    for (hostname, service_port), endpoints in snapshot.endpoints.items():
        for endpoint in endpoints:
            if (
                0 <= endpoint.port <= MAX_PORT
                and 0 <= endpoint.weight <= MAX_WEIGHT
                and _is_ip(endpoint.address)
            ):
                continue
            reason = endpoint_problem(endpoint, needs_ip=False)
            for_eds = reason or endpoint_problem(endpoint, needs_ip=True)
            if for_eds is None:
                continue
            dropped = DroppedEndpoint(
                hostname, service_port, endpoint.address, endpoint.port, endpoint.workload, for_eds
            )
            eds[id(endpoint)] = dropped
            if reason is not None:
                dns[id(endpoint)] = dropped
    return MappingProxyType(eds), MappingProxyType(dns)


def sendable(
    snapshot: MeshSnapshot, endpoints: tuple[Endpoint, ...], dns: bool = False
) -> tuple[Endpoint, ...]:
    """``endpoints`` without those Envoy would reject in an EDS cluster (``dns``: in a DNS
    cluster, which resolves host names); the same tuple when none is dropped."""
    dropped = _checked(snapshot, not dns)
    if not dropped:
        return endpoints
    return tuple(e for e in endpoints if id(e) not in dropped)
