"""NetworkPolicy (``networking.k8s.io/v1``): L3/L4 isolation of workloads.

Fields: ``k8s.io/api/networking/v1/types.go``. Validation: ``pkg/apis/networking/validation``
(``ValidateNetworkPolicySpec``, ``ValidateNetworkPolicyPeer``, ``ValidateIPBlock``,
``ValidateNetworkPolicyPort``). Defaulting: ``pkg/apis/networking/v1/defaults.go``
(``SetDefaults_NetworkPolicy``: no ``policyTypes`` means Ingress, plus Egress when the policy has
at least one egress rule; a port's protocol defaults to TCP).

Absent and empty mean the same for every list here (Go's nil and empty slices), which is what
trips people up: a policy type with no rules denies everything in that direction, a rule with no
``from``/``to`` admits every peer, a rule with no ``ports`` admits every port. For the two peer
selectors absent (``null``) and ``{}`` differ and are kept apart (``LabelSelector | None``): a
missing ``namespaceSelector`` means the policy's own namespace, ``{}`` means every namespace.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config.decode import Message, Path, field
from pilotfish.config.kubernetes.label_selector import EVERYTHING, LabelSelector, validate_selector
from pilotfish.config.resource import Finding, Resource

Protocol = Literal["TCP", "UDP", "SCTP"]
PolicyType = Literal["Ingress", "Egress"]
INGRESS, EGRESS = "Ingress", "Egress"

# IANA service names (``validation.IsValidPortName``): ≤ 15 characters of [a-z0-9-], at least one
# letter, no leading, trailing or doubled hyphen.
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class IPBlock(Message):
    cidr: str = field(required=True)
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicyPeer(Message):
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyPort(Message):
    protocol: Protocol = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyIngressRule(Message):
    ports: tuple[NetworkPolicyPort, ...] = ()
    from_: tuple[NetworkPolicyPeer, ...] = ()

    @property
    def peers(self) -> tuple[NetworkPolicyPeer, ...]:
        return self.from_


@dataclass(frozen=True, slots=True)
class NetworkPolicyEgressRule(Message):
    ports: tuple[NetworkPolicyPort, ...] = ()
    to: tuple[NetworkPolicyPeer, ...] = ()

    @property
    def peers(self) -> tuple[NetworkPolicyPeer, ...]:
        return self.to


@dataclass(frozen=True, slots=True)
class NetworkPolicySpec(Message):
    pod_selector: LabelSelector = field(default=EVERYTHING)
    ingress: tuple[NetworkPolicyIngressRule, ...] = ()
    egress: tuple[NetworkPolicyEgressRule, ...] = ()
    policy_types: tuple[PolicyType, ...] = ()

    @property
    def types(self) -> frozenset[str]:
        """``policyTypes`` after the API server's defaulting."""
        if self.policy_types:
            return frozenset(self.policy_types)
        return frozenset({INGRESS, EGRESS} if self.egress else {INGRESS})


def port_name(value: str) -> str | None:
    if len(value) > 15 or not _PORT_NAME.match(value) or "--" in value:
        return f"invalid port name {value!r}: at most 15 characters of a-z, 0-9 and '-'"
    if not any(c.isalpha() for c in value):
        return f"invalid port name {value!r}: must contain at least one letter (a-z)"
    return None


def _port_number(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be between 1 and 65535, inclusive"


def validate_port(port: NetworkPolicyPort, path: Path) -> Iterator[Finding]:
    """``ValidateNetworkPolicyPort``."""
    if isinstance(port.port, int):
        problems = [("port", _port_number(port.port))]
        if port.end_port is not None:
            if port.end_port < port.port:
                problems.append(("endPort", "must be greater than or equal to `port`"))
            problems.append(("endPort", _port_number(port.end_port)))
    elif isinstance(port.port, str):
        problems = [("port", port_name(port.port))]
        if port.end_port is not None:
            problems.append(("endPort", "may not be specified when `port` is non-numeric"))
    else:
        problems = [("endPort", "may not be specified when `port` is not specified")] if port.end_port else []
    for name, message in problems:
        if message:
            yield Finding((*path, name), message)


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR as Go's ``net.ParseCIDR`` takes it (host bits may be set); ``None`` if invalid."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def validate_ip_block(block: IPBlock, path: Path) -> Iterator[Finding]:
    """``ValidateIPBlock``: a valid CIDR, and each ``except`` a strict subset of it."""
    if not block.cidr:
        yield Finding((*path, "cidr"), "required value")
        return
    cidr = parse_cidr(block.cidr)
    if cidr is None:
        yield Finding((*path, "cidr"), f"{block.cidr!r} is not a valid CIDR")
        return
    for i, text in enumerate(block.except_):
        inner = parse_cidr(text)
        where = (*path, "except", i)
        if inner is None:
            yield Finding(where, f"{text!r} is not a valid CIDR")
        elif inner.version != cidr.version or not (
            inner.subnet_of(cidr) and inner.prefixlen > cidr.prefixlen  # type: ignore[arg-type]
        ):
            yield Finding(where, f"must be a strict subset of `cidr` {block.cidr!r}")


def validate_peer(peer: NetworkPolicyPeer, path: Path) -> Iterator[Finding]:
    """``ValidateNetworkPolicyPeer``: at least one peer kind; ipBlock alone."""
    kinds = [p for p in (peer.pod_selector, peer.namespace_selector, peer.ip_block) if p is not None]
    if not kinds:
        yield Finding(path, "must specify a peer")
    elif len(kinds) > 1 and peer.ip_block is not None:
        yield Finding(path, "may not specify both ipBlock and another peer")
    if peer.pod_selector is not None:
        yield from validate_selector(peer.pod_selector, (*path, "podSelector"))
    if peer.namespace_selector is not None:
        yield from validate_selector(peer.namespace_selector, (*path, "namespaceSelector"))
    if peer.ip_block is not None:
        yield from validate_ip_block(peer.ip_block, (*path, "ipBlock"))


def _rules(spec: NetworkPolicySpec) -> Iterator[tuple[Path, Any]]:
    for i, rule in enumerate(spec.ingress):
        yield ("ingress", i), rule
    for i, egress in enumerate(spec.egress):
        yield ("egress", i), egress


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: NetworkPolicySpec = resource.spec
    yield from validate_selector(spec.pod_selector, ("podSelector",))
    for path, rule in _rules(spec):
        peers = "from" if path[0] == "ingress" else "to"
        for j, port in enumerate(rule.ports):
            yield from validate_port(port, (*path, "ports", j))
        for j, peer in enumerate(rule.peers):
            yield from validate_peer(peer, (*path, peers, j))
    if len(set(spec.policy_types)) != len(spec.policy_types):
        yield Finding(("policyTypes",), "duplicate value")
