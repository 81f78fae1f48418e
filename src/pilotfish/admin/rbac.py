"""Who may do what through the admin API: Kubernetes-style RBAC over bearer tokens (pure).

The tokens file (``pilotfish serve --admin-tokens FILE``)::

    tokens:   [{token: s3cret, subject: alice}]
    roles:    [{name: editor, namespace: prod, rules: [{verbs: [get, list, apply], kinds: ["*"]}]}]
    bindings: [{subject: alice, role: editor}]

As in Kubernetes (``rbac.md``): rules are purely additive, there are no deny rules; a role with a
``namespace`` is a Role and grants only inside that namespace; a role without one is a
ClusterRole, whose rules may narrow themselves with ``namespaces`` (absent or ``"*"``: all).
``kinds`` and ``verbs`` accept ``"*"``. Registrations are the kind ``Registration``; their
namespace is the namespace of the service they join.

Some kinds are never readable whatever the roles say (``UNREADABLE_KINDS``): a role with
``kinds: ["*"]`` must not become a way to read keys. No such kind is stored yet; the rule is in
the table so that the first one added is covered the day it is added.

With a tokens file every admin endpoint but ``/healthz`` (left open for probes) is decided here.
Endpoints that are not stored resources are named by the kinds of ``ENDPOINT_KINDS`` (verb
``get``), so rules can grant them: ``/metrics`` is the kind ``Metrics``, and the built-in
ClusterRole ``metrics-reader`` (``BUILTIN_ROLES``) grants exactly that, for Prometheus::

    bindings: [{subject: prometheus, role: metrics-reader}]

Without a tokens file there are no subjects to bind, so the decision falls back to where the
request comes from (``anonymous_policy``): loopback clients may do everything (the demo and a
single-host operator, as Kong's OSS admin API on 127.0.0.1), other clients may only read.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pilotfish.config.source import parse_documents, to_plain
from pilotfish.errors import ConfigError, Problem

Verb = Literal["get", "list", "apply", "delete", "register"]
VERBS: tuple[Verb, ...] = ("get", "list", "apply", "delete", "register")
READ_VERBS = frozenset({"get", "list"})
REGISTRATION_KIND = "Registration"
ANY = "*"

# kind → why it can never be read over the API. Writes stay subject to the roles.
UNREADABLE_KINDS: Mapping[str, str] = {
    "Secret": "secrets are never readable over the admin API",
    "CAKey": "CA keys are never readable over the admin API",
}

# Admin endpoints that are not stored resources → the kind rules name them by (verb get).
# /debug/configz has none: it lists resources, each shown only if its kind/namespace is readable.
ENDPOINT_KINDS: Mapping[str, str] = {
    "/metrics": "Metrics",
    "/debug/syncz": "ProxyStatus",
    "/debug/problemz": "ProxyStatus",
    "/debug/config_dump": "ProxyConfig",
    "/debug/certs": "Certificate",
    "/openapi.yaml": "OpenAPI",
}

LOOPBACK_SUBJECT = "system:loopback"
ANONYMOUS_SUBJECT = "system:anonymous"


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: frozenset[str]
    kinds: frozenset[str]
    namespaces: frozenset[str] = frozenset({ANY})

    def allows(self, verb: str, kind: str, namespace: str) -> bool:
        return _has(self.verbs, verb) and _has(self.kinds, kind) and _has(self.namespaces, namespace)


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    rules: tuple[Rule, ...]
    namespace: str | None = None  # None: a ClusterRole

    def allows(self, verb: str, kind: str, namespace: str) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        return any(rule.allows(verb, kind, namespace) for rule in self.rules)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    subject: str
    reason: str


@dataclass(frozen=True, slots=True)
class Policy:
    """Tokens → subjects, subjects → roles. ``Policy()`` (no tokens) authenticates nobody."""

    tokens: Mapping[str, str] | None = None  # token → subject; None: no tokens file
    roles: Mapping[str, tuple[Role, ...]] | None = None  # subject → its roles

    @property
    def uses_tokens(self) -> bool:
        return self.tokens is not None

    def subject_of(self, token: str) -> str | None:
        """Constant-time comparison against every token: timing says nothing about a near miss."""
        found = None
        for known, subject in (self.tokens or {}).items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = subject
        return found


BUILTIN_ROLES: Mapping[str, Role] = {
    "metrics-reader": Role("metrics-reader", (Rule(frozenset({"get"}), frozenset({"Metrics"})),)),
}


def _has(allowed: frozenset[str], value: str) -> bool:
    return ANY in allowed or value in allowed


def authorize(policy: Policy, subject: str, verb: str, kind: str, namespace: str) -> Decision:
    """May ``subject`` do ``verb`` on ``kind`` in ``namespace``? (``namespace`` "" = unknown,
    which only a rule for all namespaces covers.)"""
    if verb in READ_VERBS and kind in UNREADABLE_KINDS:
        return Decision(False, subject, UNREADABLE_KINDS[kind])
    roles = (policy.roles or {}).get(subject, ())
    for role in roles:
        if role.allows(verb, kind, namespace):
            return Decision(True, subject, f"role {role.name}")
    where = f" in namespace {namespace!r}" if namespace else ""
    return Decision(False, subject, f"{subject} may not {verb} {kind}{where}")


def authorize_any(policy: Policy, subject: str, verb: str, kind: str | None) -> Decision:
    """Could ``subject`` do ``verb`` on ``kind`` (any kind when None) in *some* namespace? Asked
    before a request body is read, so a caller who may write nothing is refused without it."""
    for role in (policy.roles or {}).get(subject, ()):
        for rule in role.rules:
            if _has(rule.verbs, verb) and (kind is None or _has(rule.kinds, kind)):
                return Decision(True, subject, f"role {role.name}")
    return Decision(False, subject, f"{subject} may not {verb} {kind or 'anything'}")


def anonymous_policy_decision(loopback: bool, verb: str, kind: str) -> Decision:
    """Without a tokens file: loopback may do anything (but read what nobody may read), others may
    only read — a write from another host needs ``--admin-tokens``."""
    subject = LOOPBACK_SUBJECT if loopback else ANONYMOUS_SUBJECT
    if verb in READ_VERBS and kind in UNREADABLE_KINDS:
        return Decision(False, subject, UNREADABLE_KINDS[kind])
    if loopback or verb in READ_VERBS:
        return Decision(True, subject, "no --admin-tokens: " + ("loopback" if loopback else "read-only"))
    return Decision(False, subject, "writes from other hosts need pilotfish serve --admin-tokens FILE")


# ---- the tokens file --------------------------------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """Read and check a tokens file; ``ConfigError`` naming every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(f"cannot read tokens file: {exc}", file=file)]) from None
    docs = parse_documents(text, file)  # the input limits of every YAML edge hold here too
    if len(docs) > 1:
        raise ConfigError([Problem("must be one YAML document", file=file, line=docs[1].line)])
    return parse_policy(to_plain(docs[0].data) if docs else None, file)


def parse_policy(data: Any, file: str = "<tokens>") -> Policy:
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError([Problem("must be a mapping with tokens, roles, bindings", file=file)])
    tokens = _tokens(data.get("tokens") or [], file, problems)
    roles = {**BUILTIN_ROLES, **_roles(data.get("roles") or [], file, problems)}
    bound = _bindings(data.get("bindings") or [], roles, file, problems)
    if problems:
        raise ConfigError(problems)
    return Policy(tokens, bound)


def _items(value: Any, path: str, file: str, problems: list[Problem]) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(value, list):
        problems.append(Problem("must be a list", path, file))
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append((f"{path}[{i}]", item))
        else:
            problems.append(Problem("must be a mapping", f"{path}[{i}]", file))
    return out


def _string(item: dict[str, Any], key: str, path: str, file: str, problems: list[Problem]) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        problems.append(Problem("must be a non-empty string", f"{path}.{key}", file))
        return ""
    return value


def _tokens(value: Any, file: str, problems: list[Problem]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path, item in _items(value, "tokens", file, problems):
        token, subject = (_string(item, k, path, file, problems) for k in ("token", "subject"))
        if token in out:
            problems.append(Problem("the same token is listed twice", f"{path}.token", file))
        out[token] = subject
    return out


def _strings(item: dict[str, Any], key: str, path: str, file: str, problems: list[Problem]) -> frozenset[str]:
    value = item.get(key, [ANY] if key == "namespaces" else None)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        problems.append(Problem("must be a non-empty list of strings", f"{path}.{key}", file))
        return frozenset()
    return frozenset(value)


def _rule(path: str, item: dict[str, Any], file: str, problems: list[Problem]) -> Rule:
    verbs = _strings(item, "verbs", path, file, problems)
    unknown = sorted(verbs - {*VERBS, ANY})
    if unknown:
        problems.append(
            Problem(f"unknown verbs {unknown} (known: {', '.join(VERBS)})", f"{path}.verbs", file)
        )
    kinds = _strings(item, "kinds", path, file, problems)
    return Rule(verbs, kinds, _strings(item, "namespaces", path, file, problems))


def _roles(value: Any, file: str, problems: list[Problem]) -> dict[str, Role]:
    out: dict[str, Role] = {}
    for path, item in _items(value, "roles", file, problems):
        name = _string(item, "name", path, file, problems)
        namespace = item.get("namespace")
        if namespace is not None and not (isinstance(namespace, str) and namespace):
            problems.append(Problem("must be a namespace name (leave it out for a ClusterRole)", path, file))
        rules = tuple(
            _rule(p, r, file, problems) for p, r in _items(item.get("rules"), f"{path}.rules", file, problems)
        )
        if name in out:
            problems.append(Problem(f"role {name!r} is defined twice", f"{path}.name", file))
        elif name in BUILTIN_ROLES:
            problems.append(Problem(f"role {name!r} is built in; choose another name", f"{path}.name", file))
        out[name] = Role(name, rules, namespace if isinstance(namespace, str) else None)
    return out


def _bindings(
    value: Any, roles: Mapping[str, Role], file: str, problems: list[Problem]
) -> dict[str, tuple[Role, ...]]:
    out: dict[str, list[Role]] = {}
    for path, item in _items(value, "bindings", file, problems):
        subject, role = (_string(item, k, path, file, problems) for k in ("subject", "role"))
        if role and role not in roles:
            problems.append(Problem(f"no role named {role!r}", f"{path}.role", file))
        elif subject:
            out.setdefault(subject, []).append(roles[role])
    return {subject: tuple(bound) for subject, bound in out.items()}
