"""The authorization decision for one request: ``evaluate(policies, attributes, authn) -> Decision``.

Theory of operation. Istio does not evaluate policies at request time; istiod writes Envoy
filters in this order (istio ``pilot/pkg/networking/core/listener_builder.go:476-484``,
``pilot/pkg/security/authz/builder/builder.go``), and ``evaluate`` walks the same order:

1. **CUSTOM** (before JWT authentication, so it sees no ``request.auth.*``). If an enforced
   CUSTOM rule matches, the provider must be asked: ``Decision.custom_provider`` names it, and the
   rest of the decision says what happens if the provider allows (its allow only means "go on",
   API-AP). A CUSTOM policy whose provider is undefined, or a workload with two CUSTOM providers,
   is a 403 deny at this step (``builder.go`` ``getBadCustomDenyRules``).
2. **Authentication** (``authn``, from ``jwt.authenticate``): a failed JWT is 401, or 403 for a
   disallowed audience, with ``WWW-Authenticate``; it comes before any DENY/ALLOW.
3. **AUDIT** policies are reported in ``Decision.audit`` and never change the decision.
4. **DENY**: the first matching enforced DENY rule gives 403 ``RBAC: access denied``.
5. **ALLOW**: with no enforced ALLOW policy the request is allowed; otherwise some ALLOW rule must
   match, else 403. ``spec: {}`` is an ALLOW policy with no rules: it matches nothing, so alone it
   denies everything (API-AP; reference §4.2).

Dry-run policies (``istio.io/dry-run: "true"``, Envoy ``shadow_rules``) are evaluated at steps
4–5 against their own action and reported in ``Decision.dry_run``; they are never enforced and
an all-dry-run ALLOW set leaves the workload allow-by-default (``builder.go`` ``hasEnforcePolicy``).

The function is pure: no I/O, no clock (``attributes.now`` is only used by JWT verification),
no protobuf. The ``matchers`` tables decide what each field and ``when`` key means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pilotfish.extauthz.attributes import Attributes
from pilotfish.extauthz.jwt import NO_AUTHN, AuthnResult
from pilotfish.extauthz.matchers import View
from pilotfish.extauthz.policy import CompiledPolicy

RBAC_DENIED = "RBAC: access denied"  # the 403 body Envoy RBAC sends (T-HTTP)


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """A policy (``ns/name``) and the index of its rule that matched."""

    policy: str
    rule: int


@dataclass(frozen=True, slots=True)
class DryRunFinding:
    """What a dry-run policy set would have decided: ``action`` DENY or ALLOW, ``would`` the
    outcome, ``policy``/``rule`` the match (``None`` when no dry-run ALLOW rule matched)."""

    action: Literal["ALLOW", "DENY"]
    would: Literal["allow", "deny"]
    policy: str | None = None
    rule: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    status: int  # 200, or the HTTP status for the client: 401, 403
    reason: str  # for logs, metrics and /debug
    policy: str | None = None  # "ns/name" of the deciding policy
    rule: int | None = None  # index of its deciding rule
    body: str = ""  # the deny response body
    headers_to_set: tuple[tuple[str, str], ...] = ()  # upstream request headers on allow
    headers_to_remove: tuple[str, ...] = ()  # upstream request headers to drop on allow
    response_headers: tuple[tuple[str, str], ...] = ()  # client response headers on deny
    custom_provider: str | None = None  # ask this provider first; its deny wins over this decision
    custom_match: PolicyMatch | None = None
    audit: tuple[PolicyMatch, ...] = ()
    dry_run: tuple[DryRunFinding, ...] = ()


def _first_match(policies: Iterable[CompiledPolicy], view: View) -> PolicyMatch | None:
    for policy in policies:
        rule = policy.first_match(view)
        if rule is not None:
            return PolicyMatch(policy.ref, rule)
    return None


def _enforced(policies: tuple[CompiledPolicy, ...], action: str) -> tuple[CompiledPolicy, ...]:
    return tuple(p for p in policies if p.action == action and not p.dry_run)


def _custom(policies: tuple[CompiledPolicy, ...], view: View) -> tuple[CompiledPolicy, PolicyMatch] | None:
    for policy in _enforced(policies, "CUSTOM"):
        rule = policy.first_match(view)
        if rule is not None:
            return policy, PolicyMatch(policy.ref, rule)
    return None


def _denied(match: PolicyMatch | None, reason: str) -> Decision:
    policy, rule = (match.policy, match.rule) if match else (None, None)
    return Decision(False, 403, reason, policy, rule, body=RBAC_DENIED)


def _authn_failed(authn: AuthnResult) -> Decision:
    return Decision(
        False,
        authn.status,
        f"JWT: {authn.reason}",
        body=authn.reason,
        response_headers=authn.response_headers,
    )


def _rbac(policies: tuple[CompiledPolicy, ...], view: View, authn: AuthnResult) -> Decision:
    """Steps 4 and 5: DENY, then ALLOW."""
    deny = _first_match(_enforced(policies, "DENY"), view)
    if deny:
        return _denied(deny, f"denied by DENY policy {deny.policy} rule {deny.rule}")
    allows = _enforced(policies, "ALLOW")
    allow = _first_match(allows, view)
    if allows and allow is None:
        # No single policy decided: name the ones in force, so a denial log says where to look.
        return _denied(None, f"no ALLOW policy matched (in force: {', '.join(p.ref for p in allows)})")
    reason = (
        f"allowed by ALLOW policy {allow.policy} rule {allow.rule}" if allow else "no ALLOW policy applies"
    )
    return Decision(
        True,
        200,
        reason,
        allow.policy if allow else None,
        allow.rule if allow else None,
        headers_to_set=authn.headers_to_set,
        headers_to_remove=authn.headers_to_remove,
    )


def _dry_run(policies: tuple[CompiledPolicy, ...], view: View) -> tuple[DryRunFinding, ...]:
    shadow_deny = [p for p in policies if p.dry_run and p.action == "DENY"]
    shadow_allow = [p for p in policies if p.dry_run and p.action == "ALLOW"]
    findings = [
        DryRunFinding("DENY", "deny", p.ref, rule)
        for p in shadow_deny
        if (rule := p.first_match(view)) is not None
    ]
    if shadow_allow:
        match = _first_match(shadow_allow, view)
        would: Literal["allow", "deny"] = "allow" if match else "deny"
        findings.append(
            DryRunFinding("ALLOW", would, match.policy if match else None, match.rule if match else None)
        )
    return tuple(findings)


def evaluate(
    policies: Iterable[CompiledPolicy], attributes: Attributes, authn: AuthnResult = NO_AUTHN
) -> Decision:
    """Decide one request for the policies that apply to its workload (``policy.policies_for_workload``)."""
    policies = tuple(policies)
    custom = _custom(policies, View(attributes))  # CUSTOM runs before jwt_authn: no claims
    if custom and custom[0].provider_error:
        return _denied(custom[1], f"CUSTOM policy {custom[1].policy} denies: {custom[0].provider_error}")
    if not authn.ok:
        decision = _authn_failed(authn)
    else:
        view = View(attributes, authn.claims)
        audit = tuple(
            PolicyMatch(p.ref, rule)
            for p in _enforced(policies, "AUDIT")
            if (rule := p.first_match(view)) is not None
        )
        decision = dataclasses.replace(
            _rbac(policies, view, authn), audit=audit, dry_run=_dry_run(policies, view)
        )
    if custom is None:
        return decision
    return dataclasses.replace(decision, custom_provider=custom[0].provider, custom_match=custom[1])
