"""Kubernetes kinds pilotfish reads: ``networking.k8s.io/v1`` NetworkPolicy and core ``v1``
Namespace (the labels ``namespaceSelector``s match)."""

from __future__ import annotations

from pilotfish.config.kubernetes import namespace, network_policy
from pilotfish.config.resource import KindInfo

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        "NetworkPolicy",
        "networking.k8s.io",
        ("v1",),
        network_policy.NetworkPolicySpec,
        network_policy.validate,
        "networkpolicies",
    ),
    KindInfo(
        "Namespace", "", ("v1",), namespace.NamespaceSpec, namespace.validate, "namespaces", namespaced=False
    ),
)
