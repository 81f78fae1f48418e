"""Which workloads a security policy applies to: ``selector``, ``targetRef``, ``targetRefs``.

Shared by AuthorizationPolicy and RequestAuthentication (istio/api ``type/v1beta1/selector.proto``
``PolicyTargetReference``). Rules: istio/istio ``pkg/config/validation/validation.go``
``validateOneOfSelectorType``, ``validatePolicyTargetReference``, ``validateWorkloadSelector``, and
the CRD schema of ``PolicyTargetReference`` (patterns, lengths, the "cross namespace" CEL rule).

pilotfish serves sidecars and gateways described by Istio resources, not Kubernetes Gateway API
gateways or waypoints; Istio ignores a targetRef policy on a sidecar altogether
(``pilot/pkg/model/policyattachment.go``), so consumers should skip policies that set one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, field
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.selector import WorkloadSelector


@dataclass(frozen=True, slots=True)
class PolicyTargetReference(Message):
    """A resource a policy attaches to (a Gateway API Gateway, GatewayClass, Service, ServiceEntry)."""

    kind: str = field(required=True)
    name: str = field(required=True)
    group: str = ""
    namespace: str = ""


# (group, kind) pairs Istio accepts as targets; "" is the core group (validation.go allowedTargetRefs).
ALLOWED_TARGETS: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Service"),
        ("networking.istio.io", "ServiceEntry"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("gateway.networking.k8s.io", "GatewayClass"),
    }
)
_GROUP = re.compile(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def _target_shape(ref: PolicyTargetReference) -> Iterator[tuple[str, str | None]]:
    """The CRD schema's per-field rules, as ``(field, problem)``."""
    yield "group", None if len(ref.group) <= 253 and _GROUP.match(ref.group) else "invalid group"
    yield "kind", None if len(ref.kind) <= 63 and _KIND.match(ref.kind) else "invalid kind"
    yield "name", None if 1 <= len(ref.name) <= 253 else "targetRef name must be set (1-253 characters)"
    yield (
        "namespace",
        "targetRef namespace must not be set; cross namespace referencing is not supported"
        if ref.namespace
        else None,
    )


def target_reference(ref: PolicyTargetReference, path: Path) -> Iterator[Finding]:
    for name, problem in _target_shape(ref):
        if problem:
            yield Finding((*path, name), problem)
    if (ref.group, ref.kind) not in ALLOWED_TARGETS:
        allowed = ", ".join(f"{g or 'core'}/{k}" for g, k in sorted(ALLOWED_TARGETS))
        yield Finding(
            (*path, "kind"), f"targetRef must be to one of {allowed} but was {ref.group}/{ref.kind}"
        )


def targeting(
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: tuple[PolicyTargetReference, ...],
) -> Iterator[Finding]:
    """Findings for a policy's ``selector`` / ``targetRef`` / ``targetRefs`` (at most one of them)."""
    present = [name for name, value in _choices(selector, target_ref, target_refs) if value]
    if len(present) > 1:
        yield Finding(
            (present[-1],), f"only one of targetRefs or selector can be set; got {', '.join(present)}"
        )
    if selector is not None:
        yield from checks.workload_selector(selector.match_labels, ("selector",))
    if target_ref is not None:
        yield from target_reference(target_ref, ("targetRef",))
    if len(target_refs) > 16:
        yield Finding(("targetRefs",), f"at most 16 targetRefs are allowed; got {len(target_refs)}")
    for i, ref in enumerate(target_refs):
        yield from target_reference(ref, ("targetRefs", i))


def _choices(
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: tuple[PolicyTargetReference, ...],
) -> tuple[tuple[str, object], ...]:
    return (
        ("selector", selector is not None),
        ("targetRef", target_ref is not None),
        ("targetRefs", target_refs),
    )


def in_scope(
    policy_namespace: str,
    selector: WorkloadSelector | None,
    targeted: bool,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
) -> bool:
    """Whether a policy (AuthorizationPolicy or RequestAuthentication) applies to a workload:
    policies in the root namespace apply mesh-wide, others to their own namespace; a selector
    narrows to matching workloads. A policy with targetRef(s) applies to gateways' Gateway-API
    targets, which pilotfish does not model, so it applies to no sidecar (Istio ``policyattachment.go``)."""
    if targeted:
        return False
    if policy_namespace not in (namespace, root_namespace):
        return False
    return selector is None or selector.matches(labels)


def resource_in_scope(
    resource: Resource[Any], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> bool:
    """``in_scope`` for an AuthorizationPolicy or RequestAuthentication resource."""
    spec = resource.spec
    targeted = spec.target_ref is not None or bool(spec.target_refs)
    return in_scope(resource.namespace, spec.selector, targeted, namespace, labels, root_namespace)
