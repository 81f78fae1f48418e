"""Istio's cluster names: ``outbound|PORT|SUBSET|HOST``, ``inbound|PORT||`` and the SNI form.

Istio ``pilot/pkg/model/service.go``: ``BuildSubsetKey`` joins direction, port, subset and
host with ``|``; ``BuildInboundSubsetKey`` is the inbound key with neither subset nor host;
``BuildDNSSrvSubsetKey`` joins the same parts with ``_.`` — the DNS-SRV-like name Istio uses as
the default SNI for ``ISTIO_MUTUAL`` (and as the cluster name in SNI-DNAT mode).
``ParseSubsetKey`` reads either form back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["inbound", "outbound"]

_DIRECTIONS: tuple[Direction, ...] = ("inbound", "outbound")
_SEPARATOR = "|"
_SRV_SEPARATOR = "_."


@dataclass(frozen=True, slots=True)
class ClusterKey:
    """The parts of a cluster name."""

    direction: Direction
    port: int
    subset: str = ""
    hostname: str = ""


def subset_key(direction: Direction, subset: str, hostname: str, port: int) -> str:
    """Istio ``BuildSubsetKey``: ``outbound|9080|v1|reviews.default.svc.cluster.local``."""
    return _SEPARATOR.join((direction, str(port), subset, hostname))


def outbound_cluster_name(hostname: str, port: int, subset: str = "") -> str:
    return subset_key("outbound", subset, hostname, port)


def inbound_cluster_name(port: int) -> str:
    """Istio ``BuildInboundSubsetKey``: ``inbound|9080||``."""
    return subset_key("inbound", "", "", port)


def dns_srv_subset_key(direction: Direction, subset: str, hostname: str, port: int) -> str:
    """Istio ``BuildDNSSrvSubsetKey``: ``outbound_.9080_.v1_.reviews.default.svc.cluster.local``."""
    return _SRV_SEPARATOR.join((direction, str(port), subset, hostname))


def parse_cluster_name(name: str) -> ClusterKey | None:
    """Istio ``ParseSubsetKey``: either form back into its parts; ``None`` when ``name`` is
    neither (e.g. ``BlackHoleCluster``)."""
    parts = name.split(_SEPARATOR, 3)
    if len(parts) != 4:
        parts = name.split(_SRV_SEPARATOR, 3)
    if len(parts) != 4:
        return None
    direction, port, subset, hostname = parts
    if direction not in _DIRECTIONS or not port.isdigit():
        return None
    return ClusterKey(_direction(direction), int(port), subset, hostname)


def _direction(value: str) -> Direction:
    return "inbound" if value == "inbound" else "outbound"
