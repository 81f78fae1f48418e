"""The world a NetworkPolicy decision is made in: policies, namespaces and pods.

A pod is a workload: a WorkloadEntry, a ServiceEntry's inline endpoint, a registration or an
auto-registered proxy (``pods.py``), with its namespace, labels, IP and named ports. Namespaces
carry the labels of their Namespace resource plus ``kubernetes.io/metadata.name`` (set as the
API server sets it); a namespace no Namespace resource declares still exists, with that label
only, when anything refers to it (Kubernetes would not let a workload live in a namespace that
does not exist, pilotfish creates none).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pilotfish.config.kubernetes.namespace import NAME_LABEL
from pilotfish.config.resource import Resource

NETWORK_POLICY = "NetworkPolicy"
NAMESPACE = "Namespace"


@dataclass(frozen=True, slots=True)
class Pod:
    """One workload as NetworkPolicy sees it. ``ports``: named ports (name → number, TCP)."""

    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    ports: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    service_account: str = ""
    source: str = ""  # Kind/ns/name or Registration/id it came from

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class World:
    """Policies (sorted by namespace and name), namespace labels, and pods."""

    policies: tuple[Resource[Any], ...]
    namespace_labels: Mapping[str, Mapping[str, str]]
    pods: tuple[Pod, ...]
    _by_ip: Mapping[str, Pod] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, resources: Iterable[Resource[Any]], pods: Iterable[Pod]) -> World:
        resources = tuple(resources)
        pods = tuple(pods)
        policies = tuple(
            sorted((r for r in resources if r.kind == NETWORK_POLICY), key=lambda r: (r.namespace, r.name))
        )
        labels: dict[str, Mapping[str, str]] = {}
        for name in {*(p.namespace for p in pods), *(r.namespace for r in policies)}:
            labels[name] = MappingProxyType({NAME_LABEL: name})
        for ns in (r for r in resources if r.kind == NAMESPACE):
            labels[ns.name] = MappingProxyType({**ns.labels, NAME_LABEL: ns.name})
        by_ip: dict[str, Pod] = {}
        for pod in pods:
            by_ip.setdefault(normal_ip(pod.ip), pod)
        return cls(policies, MappingProxyType(labels), pods, MappingProxyType(by_ip))

    @property
    def fingerprint(self) -> str:
        """A digest of everything a decision here depends on (policies, namespace labels, pods):
        equal fingerprints give equal enforcement, so a cache of listeners or endpoints can key
        on it instead of on the whole snapshot."""
        parts = [
            repr([(p.namespace, p.name, p.spec) for p in self.policies]),
            repr(sorted((k, sorted(v.items())) for k, v in self.namespace_labels.items())),
            repr(
                sorted(
                    (
                        p.namespace,
                        p.name,
                        p.ip,
                        sorted(p.labels.items()),
                        sorted(p.ports.items()),
                        p.service_account,
                    )
                    for p in self.pods
                )
            ),
        ]
        return hashlib.blake2b("\0".join(parts).encode(), digest_size=12).hexdigest()

    def labels_of_namespace(self, namespace: str) -> Mapping[str, str]:
        return self.namespace_labels.get(namespace) or {NAME_LABEL: namespace}

    def pod_at(self, ip: str) -> Pod | None:
        return self._by_ip.get(normal_ip(ip))

    def find_pod(self, text: str) -> Pod | None:
        """A pod by ``namespace/name``, by ``name`` when it is unique, or by IP."""
        if "/" in text:
            return next((p for p in self.pods if p.ref == text), None)
        named = [p for p in self.pods if p.name == text]
        if len(named) == 1:
            return named[0]
        return self.pod_at(text) if is_ip(text) else None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normal_ip(text: str) -> str:
    """The canonical spelling of an IP (``::1`` for ``0:0::1``); other text unchanged."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text
