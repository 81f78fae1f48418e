"""Namespace (core ``v1``): where a namespace's labels come from, for NetworkPolicy
``namespaceSelector``s. Cluster-scoped: ``metadata.namespace`` is ignored, as the API server
ignores it for cluster-scoped kinds.

Like Kubernetes (``NamespaceDefaultLabelName`` feature, GA in 1.22), every namespace carries the
immutable label ``kubernetes.io/metadata.name: <name>``; a namespace that no Namespace resource
declares but that workloads or policies use exists implicitly with only that label
(``pilotfish.netpol.model``). Setting the label to anything else is an error, as the API server's
defaulting would overwrite it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pilotfish.config.decode import Message
from pilotfish.config.resource import Finding, Resource

NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True, slots=True)
class NamespaceSpec(Message):
    finalizers: tuple[str, ...] = ()


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    given = resource.labels.get(NAME_LABEL)
    if given is not None and given != resource.name:
        yield Finding(
            ("labels", NAME_LABEL), f"must be the namespace's name {resource.name!r}", root="metadata"
        )
    if len(resource.name) > 63 or "." in resource.name:
        yield Finding(("name",), "a namespace name must be a DNS-1123 label", root="metadata")
