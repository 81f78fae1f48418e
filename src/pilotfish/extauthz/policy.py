"""Compile AuthorizationPolicies, and pick the ones that apply to a workload.

Scope (reference §2; istio ``pilot/pkg/model/authorization.go``, ``policyattachment.go``): a
policy applies to workloads of its own namespace, or of every namespace when it lives in the
root namespace; a ``selector`` narrows that to workloads whose labels include ``matchLabels``.
A policy with ``targetRef``/``targetRefs`` is for Gateway API gateways and waypoints; on the
sidecars and gateways pilotfish serves Istio ignores it altogether (``policyattachment.go``
"if targetRef is specified, ignore the policy altogether"), and so do we.

Compiling turns each rule into predicates (``matchers``). A rule that cannot be understood
(unknown ``when`` key, unreadable IP/port/path template) fails closed, asymmetrically: in an
ALLOW policy it matches nothing, in DENY/AUDIT/CUSTOM it matches everything. Istio drops such a
DENY rule (``builder.go``); that is an accidental allow we refuse (STYLE "fail closed
asymmetrically"). Validation rejects these inputs at load, so this only guards the evaluator.

CUSTOM: the provider must be an ext_authz ``extensionProviders`` entry of the mesh, and a
workload may have only one CUSTOM provider; otherwise istiod turns the CUSTOM rules into DENY
rules (``builder.go`` ``getBadCustomDenyRules``), recorded here as ``provider_error``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig
from pilotfish.config.resource import Resource
from pilotfish.config.security.annotations import is_dry_run
from pilotfish.config.security.authorization_policy import (
    Action,
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)
from pilotfish.config.security.targeting import in_scope
from pilotfish.config.selector import WorkloadSelector
from pilotfish.extauthz.matchers import (
    OPERATION_FIELDS,
    SOURCE_FIELDS,
    Compiler,
    Context,
    Predicate,
    RuleError,
    TrustDomains,
    View,
    when_compiler,
)

log = logging.getLogger(__name__)


# ---- compiled rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldMatch:
    """One field: any of ``values`` (or no ``values``) and none of ``not_values``."""

    values: tuple[Predicate, ...] = ()
    not_values: tuple[Predicate, ...] = ()

    def __call__(self, view: View) -> bool:
        if self.values and not any(p(view) for p in self.values):
            return False
        return not any(p(view) for p in self.not_values)


Clause = tuple[FieldMatch, ...]  # fields ANDed


def _all(clause: Clause, view: View) -> bool:
    return all(f(view) for f in clause)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A match needs one source, one operation and every condition (API-AP ``Rule``)."""

    sources: tuple[Clause, ...] | None = None  # ORed; None = any
    operations: tuple[Clause, ...] | None = None
    conditions: Clause = ()

    def matches(self, view: View) -> bool:
        return (
            (self.sources is None or any(_all(c, view) for c in self.sources))
            and (self.operations is None or any(_all(c, view) for c in self.operations))
            and _all(self.conditions, view)
        )


@dataclass(frozen=True, slots=True)
class ConstantRule:
    """A rule that could not be compiled: its fail-closed outcome and why."""

    outcome: bool
    problem: str

    def matches(self, view: View) -> bool:
        return self.outcome


def _field(
    compiler: Compiler, values: tuple[str, ...], not_values: tuple[str, ...], ctx: Context
) -> FieldMatch:
    return FieldMatch(tuple(compiler(v, ctx) for v in values), tuple(compiler(v, ctx) for v in not_values))


def _clause(entry: Source | Operation | None, table: Mapping[str, Compiler], ctx: Context) -> Clause:
    if entry is None:
        raise RuleError("`from.source` / `to.operation` must not be nil")
    return tuple(
        _field(compiler, getattr(entry, name), getattr(entry, "not_" + name), ctx)
        for name, compiler in table.items()
        if getattr(entry, name) or getattr(entry, "not_" + name)
    )


def _condition(condition: Condition, ctx: Context) -> FieldMatch:
    if not condition.values and not condition.not_values:
        raise RuleError(f"when {condition.key}: neither values nor notValues")
    return _field(when_compiler(condition.key), condition.values, condition.not_values, ctx)


def compile_rule(rule: Rule, ctx: Context) -> CompiledRule:
    """Raises ``RuleError`` when any part cannot be understood."""
    sources = None if rule.from_ is None else tuple(_clause(e.source, SOURCE_FIELDS, ctx) for e in rule.from_)
    operations = (
        None if rule.to is None else tuple(_clause(e.operation, OPERATION_FIELDS, ctx) for e in rule.to)
    )
    return CompiledRule(sources, operations, tuple(_condition(c, ctx) for c in rule.when))


def _compile_or_constant(rule: Rule, ctx: Context, action: Action, ref: str) -> CompiledRule | ConstantRule:
    try:
        return compile_rule(rule, ctx)
    except RuleError as exc:
        outcome = action != "ALLOW"
        log.warning(
            "%s: rule not understood (%s); it %s",
            ref,
            exc,
            "matches every request" if outcome else "matches nothing",
        )
        return ConstantRule(outcome, str(exc))


# ---- compiled policies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    namespace: str
    name: str
    action: Action
    rules: tuple[CompiledRule | ConstantRule, ...] = ()
    selector: WorkloadSelector | None = None
    targeted: bool = False
    dry_run: bool = False
    provider: str | None = None  # CUSTOM: the extension provider to ask
    provider_error: str | None = None  # CUSTOM that istiod would turn into DENY

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def first_match(self, view: View) -> int | None:
        """The index of the first matching rule. ``spec: {}`` has no rules: it never matches."""
        return next((i for i, rule in enumerate(self.rules) if rule.matches(view)), None)

    def applies_to(self, namespace: str, labels: Mapping[str, str], root_namespace: str) -> bool:
        return in_scope(self.namespace, self.selector, self.targeted, namespace, labels, root_namespace)


def _provider_error(spec: AuthorizationPolicySpec, mesh: MeshConfig) -> str | None:
    if spec.action != "CUSTOM":
        return None
    name = spec.provider.name if spec.provider else ""
    found = mesh.extension_provider(name) if name else None
    if found is None or found.ext_authz is None:
        return f"CUSTOM provider {name!r} is not an ext_authz provider in meshConfig.extensionProviders"
    return None


def compile_policy(resource: Resource[Any], mesh: MeshConfig = DEFAULT_MESH) -> CompiledPolicy:
    spec: AuthorizationPolicySpec = resource.spec
    ref = f"{resource.namespace}/{resource.name}"
    ctx = Context(resource.namespace, TrustDomains(mesh.trust_domain, mesh.trust_domain_aliases))
    return CompiledPolicy(
        namespace=resource.namespace,
        name=resource.name,
        action=spec.action,
        rules=tuple(_compile_or_constant(rule, ctx, spec.action, ref) for rule in spec.rules),
        selector=spec.selector,
        targeted=spec.target_ref is not None or bool(spec.target_refs),
        # T-DRYRUN: ALLOW and DENY only; an unparsable value enforces (annotations.is_dry_run).
        dry_run=spec.action in ("ALLOW", "DENY") and is_dry_run(resource),
        provider=spec.provider.name if spec.action == "CUSTOM" and spec.provider else None,
        provider_error=_provider_error(spec, mesh),
    )


def compile_policies(
    resources: Iterable[Resource[Any]], mesh: MeshConfig = DEFAULT_MESH
) -> tuple[CompiledPolicy, ...]:
    """Every AuthorizationPolicy among ``resources``, compiled, in (namespace, name) order."""
    policies = [compile_policy(r, mesh) for r in resources if r.kind == "AuthorizationPolicy"]
    return tuple(sorted(policies, key=lambda p: (p.namespace, p.name)))


def policies_for_workload(
    policies: Iterable[CompiledPolicy], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> tuple[CompiledPolicy, ...]:
    """The policies that apply to one workload. With more than one CUSTOM provider every CUSTOM
    rule becomes a deny (istio testdata ``custom-bad-multiple-providers``)."""
    chosen = [p for p in policies if p.applies_to(namespace, labels, root_namespace)]
    providers = {p.provider for p in chosen if p.action == "CUSTOM" and p.provider_error is None}
    if len(providers) <= 1:
        return tuple(chosen)
    problem = f"more than one CUSTOM provider on one workload: {', '.join(sorted(map(str, providers)))}"
    return tuple(
        dataclasses.replace(p, provider_error=p.provider_error or problem) if p.action == "CUSTOM" else p
        for p in chosen
    )
