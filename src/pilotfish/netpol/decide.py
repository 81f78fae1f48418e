"""One connection → allowed or denied, and which policy and rule decided (pure).

A connection from ``source`` to ``destination`` on ``port``/``protocol`` is allowed when both
ends allow it: the destination's ingress (if a policy isolates the destination pod for Ingress,
some rule must admit the source and the port) and the source's egress (likewise for Egress).
An end that is no known pod (an IP outside the mesh) has no policies of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pilotfish.netpol.model import Pod, World
from pilotfish.netpol.rules import EGRESS, INGRESS, Isolation, isolation


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a connection: an address, and the pod behind it when there is one."""

    ip: str
    pod: Pod | None = None

    @property
    def name(self) -> str:
        return self.pod.ref if self.pod is not None else self.ip


@dataclass(frozen=True, slots=True)
class Verdict:
    """One direction's answer. ``rule`` names the admitting rule (``ns/name:ingress[i]``)."""

    direction: str
    allowed: bool
    reason: str
    rule: str = ""
    policies: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "isolated": bool(self.policies),
            "reason": self.reason,
            "policy": self.rule.split(":", 1)[0] if self.rule else None,
            "rule": self.rule or None,
            "policies": list(self.policies),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    ingress: Verdict
    egress: Verdict

    def to_json(self) -> dict[str, Any]:
        deciding = self.ingress if not self.ingress.allowed else self.egress
        return {
            "decision": "allow" if self.allowed else "deny",
            "reason": deciding.reason if not self.allowed else f"{self.ingress.reason}; {self.egress.reason}",
            "ingress": self.ingress.to_json(),
            "egress": self.egress.to_json(),
        }


def verdict(
    iso: Isolation, subject: str, other: Endpoint, port: int, protocol: str, target: Pod | None
) -> Verdict:
    """``subject``'s policies for ``iso.direction`` on a connection with ``other``; ``target`` is
    the pod serving the port (named ports resolve against it)."""
    if not iso.isolated:
        return Verdict(iso.direction, True, f"no NetworkPolicy selects {subject} for {iso.direction}")
    for rule in iso.rules:
        if rule.admits_peer(other.ip) and rule.admits_port(port, protocol, target):
            return Verdict(iso.direction, True, f"{rule.name} admits it", rule.name, iso.policies)
    where = "from" if iso.direction == INGRESS else "to"
    return Verdict(
        iso.direction,
        False,
        f"{subject} is isolated for {iso.direction} by {', '.join(iso.policies)} and no rule admits "
        f"{protocol}/{port} {where} {other.name}",
        policies=iso.policies,
    )


def open_verdict(direction: str, name: str) -> Verdict:
    return Verdict(direction, True, f"{name} is not a workload: no NetworkPolicy applies to it")


def ingress_verdict(
    world: World, source: Endpoint, destination: Endpoint, port: int, protocol: str
) -> Verdict:
    if destination.pod is None:
        return open_verdict(INGRESS, destination.name)
    iso = isolation(world, destination.pod, INGRESS)
    return verdict(iso, destination.name, source, port, protocol, destination.pod)


def egress_verdict(
    world: World, source: Endpoint, destination: Endpoint, port: int, protocol: str
) -> Verdict:
    if source.pod is None:
        return open_verdict(EGRESS, source.name)
    iso = isolation(world, source.pod, EGRESS)
    return verdict(iso, source.name, destination, port, protocol, destination.pod)


def decide(
    world: World, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> Decision:
    ingress = ingress_verdict(world, source, destination, port, protocol)
    egress = egress_verdict(world, source, destination, port, protocol)
    return Decision(ingress.allowed and egress.allowed, ingress, egress)
