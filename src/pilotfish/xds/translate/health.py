"""Active HTTP health checks for a service's clusters (pure), from the ServiceEntry annotation
``pilotfish.io/health-check`` (parsed and validated in ``pilotfish.config.networking.health_check``).

Envoy counts a host healthy only when both EDS and the active check say so, so a draining
registration stays out either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TypeAlias

from envoy.config.core.v3 import health_check_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import duration_pb2

from pilotfish.config.networking.health_check import HttpCheck, InvalidHealthCheck, parse_health_check
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot

HealthCheck: TypeAlias = health_check_pb2.HealthCheck


def health_checks_for(snapshot: MeshSnapshot, service: Service) -> list[HealthCheck]:
    """The health checks of every cluster (default and subsets) of ``service``."""
    check = health_check_of(snapshot, service)
    return [_to_envoy(check)] if check is not None else []


def health_check_of(snapshot: MeshSnapshot, service: Service) -> HttpCheck | None:
    """The valid health check annotated on the service's ServiceEntry, if any."""
    return snapshot.derived(_checks_by_source).get(service.source)


def _checks_by_source(snapshot: MeshSnapshot) -> dict[str, HttpCheck]:
    """ServiceEntry ref → its valid health check (computed once per snapshot)."""
    return dict(_valid_checks(snapshot))


def _valid_checks(snapshot: MeshSnapshot) -> Iterator[tuple[str, HttpCheck]]:
    for entry in snapshot.of_kind("ServiceEntry"):
        try:
            check = parse_health_check(entry.annotations)
        except InvalidHealthCheck:
            continue  # reported by validation; an unreadable check must not eject healthy hosts
        if check is not None:
            yield entry.ref, check


def _to_envoy(check: HttpCheck) -> HealthCheck:
    out = HealthCheck(
        timeout=_proto_duration(check.timeout),
        interval=_proto_duration(check.interval),
        # Envoy probes an idle cluster only every 60 s by default; the operator's interval should
        # hold whether or not traffic flows (Kong's active checks run regardless of traffic).
        no_traffic_interval=_proto_duration(check.interval),
    )
    out.unhealthy_threshold.value = check.unhealthy_threshold
    out.healthy_threshold.value = check.healthy_threshold
    out.http_health_check.path = check.path
    if check.host:
        out.http_health_check.host = check.host
    for start, end in check.expected_statuses:
        out.http_health_check.expected_statuses.append(range_pb2.Int64Range(start=start, end=end))
    return out


def _proto_duration(value: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out
