"""NetworkPolicies compiled, for one pod and one direction, into rules of peers and ports.

Kubernetes semantics (``k8s.io/api/networking/v1/types.go`` field docs; the upstream
"Network Policies" concept page):

- a policy selects pods of its own namespace by ``podSelector`` (``{}``: all of them); a pod
  selected by any policy whose (defaulted) ``policyTypes`` has a direction is *isolated* for that
  direction, and then only what some rule of some such policy admits is allowed: policies add up,
  their order never matters, and a policy with no rules for a direction admits nothing;
- a rule admits a connection when one of its peers matches the other end (no peers: any end)
  and one of its ports matches (no ports: any port);
- a peer with ``podSelector`` only: pods of the policy's namespace; ``namespaceSelector`` only:
  every pod of the namespaces it selects; both in ONE peer: pods matching the pod selector inside
  the selected namespaces (an AND, unlike two peers, which are an OR); ``ipBlock``: addresses in
  ``cidr`` but not in any ``except`` (pilotfish applies it to workload addresses too, which
  Kubernetes leaves to the implementation);
- a port: ``protocol`` (default TCP) and ``port`` (none: every port), a number up to
  ``endPort`` when that is set, or a name looked up in the named ports of the pod that serves
  the port (the destination, for both directions); a name the pod lacks matches nothing.

Pod peers are resolved here, once, to the pods (and so the addresses) they select: enforcement
matches connections by address, and ``decide`` matches by the same addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from pilotfish.config.kubernetes.network_policy import (
    EGRESS,
    INGRESS,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    parse_cidr,
)
from pilotfish.config.resource import Resource
from pilotfish.netpol.model import Pod, World, normal_ip

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
ALL_PORTS = (1, 65535)


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One entry of a rule's ``ports``."""

    protocol: str
    first: int | None = None  # None: every port of the protocol
    last: int | None = None
    name: str = ""  # a named port, resolved against the pod serving the port

    def range_on(self, target: Pod | None) -> tuple[int, int] | None:
        """The inclusive port range this entry covers on ``target``; ``None``: no port."""
        if self.name:
            number = target.ports.get(self.name) if target is not None else None
            return (number, number) if number else None
        if self.first is None:
            return ALL_PORTS
        return (self.first, self.last or self.first)

    def admits(self, port: int, protocol: str, target: Pod | None) -> bool:
        found = self.range_on(target) if protocol == self.protocol else None
        return found is not None and found[0] <= port <= found[1]


@dataclass(frozen=True, slots=True)
class Peer:
    """One entry of a rule's ``from``/``to``: the pods it selects, or an ipBlock."""

    index: int
    pods: tuple[Pod, ...] = ()
    network: Network | None = None
    excepts: tuple[Network, ...] = ()

    @property
    def ips(self) -> frozenset[str]:
        return frozenset(normal_ip(p.ip) for p in self.pods)

    def admits(self, ip: str) -> bool:
        if self.network is None:
            return normal_ip(ip) in self.ips
        address = ipaddress.ip_address(ip)
        return address in self.network and not any(address in e for e in self.excepts)


@dataclass(frozen=True, slots=True)
class Rule:
    policy: str  # namespace/name
    direction: str
    index: int
    ports: tuple[PortSpec, ...] | None  # None: every port
    peers: tuple[Peer, ...] | None  # None: every peer

    @property
    def name(self) -> str:
        return f"{self.policy}:{self.direction.lower()}[{self.index}]"

    def admits_port(self, port: int, protocol: str, target: Pod | None) -> bool:
        return self.ports is None or any(p.admits(port, protocol, target) for p in self.ports)

    def admits_peer(self, ip: str) -> bool:
        return self.peers is None or any(p.admits(ip) for p in self.peers)


@dataclass(frozen=True, slots=True)
class Isolation:
    """What the policies say about one pod in one direction."""

    direction: str
    policies: tuple[str, ...]  # the policies that select the pod for the direction
    rules: tuple[Rule, ...]

    @property
    def isolated(self) -> bool:
        return bool(self.policies)


def selects(policy: Resource[Any], pod: Pod) -> bool:
    return policy.namespace == pod.namespace and bool(policy.spec.pod_selector.matches(pod.labels))


def isolation(world: World, pod: Pod, direction: str) -> Isolation:
    """The policies selecting ``pod`` for ``direction`` and their rules, in policy order."""
    chosen = [p for p in world.policies if direction in p.spec.types and selects(p, pod)]
    rules = tuple(
        compile_rule(world, policy, direction, index, rule)
        for policy in chosen
        for index, rule in enumerate(policy.spec.ingress if direction == INGRESS else policy.spec.egress)
    )
    return Isolation(direction, tuple(f"{p.namespace}/{p.name}" for p in chosen), rules)


def compile_rule(world: World, policy: Resource[Any], direction: str, index: int, rule: Any) -> Rule:
    ports = tuple(port_spec(p) for p in rule.ports) or None
    peers = tuple(compile_peer(world, policy.namespace, i, p) for i, p in enumerate(rule.peers)) or None
    return Rule(f"{policy.namespace}/{policy.name}", direction, index, ports, peers)


def port_spec(port: NetworkPolicyPort) -> PortSpec:
    if isinstance(port.port, str):
        return PortSpec(port.protocol, name=port.port)
    if port.port is None:
        return PortSpec(port.protocol)
    return PortSpec(port.protocol, port.port, port.end_port or port.port)


def compile_peer(world: World, namespace: str, index: int, peer: NetworkPolicyPeer) -> Peer:
    if peer.ip_block is not None:
        network = parse_cidr(peer.ip_block.cidr)
        excepts = tuple(n for n in map(parse_cidr, peer.ip_block.except_) if n is not None)
        return Peer(index, network=network, excepts=excepts)
    return Peer(index, pods=tuple(selected_pods(world, namespace, peer)))


def selected_pods(world: World, namespace: str, peer: NetworkPolicyPeer) -> Iterator[Pod]:
    """The pods a selector peer matches (see the module docstring for the four shapes)."""
    for pod in world.pods:
        if peer.namespace_selector is None:
            in_namespace = pod.namespace == namespace
        else:
            in_namespace = peer.namespace_selector.matches(world.labels_of_namespace(pod.namespace))
        if in_namespace and (peer.pod_selector is None or peer.pod_selector.matches(pod.labels)):
            yield pod


__all__ = ["EGRESS", "INGRESS", "Isolation", "Peer", "PortSpec", "Rule", "isolation", "selects"]
