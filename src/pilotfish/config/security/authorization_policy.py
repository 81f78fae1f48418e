"""AuthorizationPolicy (security.istio.io v1beta1 and v1): access control on workloads.

Fields: istio/api ``security/v1beta1/authorization_policy.proto`` (and the CRD schema, which adds
``targetRef``/``targetRefs`` and the serviceAccounts/trustDomains source fields). Rules: istio/istio
``pkg/config/validation/validation.go`` ``ValidateAuthorizationPolicy`` and
``pkg/config/security/security.go`` (``ValidateAttribute``, ``ValidateIPs``, ``ValidatePorts``,
``CheckEmptyValues``, ``CheckServiceAccount``, ``CheckValidPathTemplate``).

Reading a rule (API docs, ``Rule``): a rule matches when one of its ``from`` sources, one of its
``to`` operations and every ``when`` condition match; an absent list matches anything. Inside one
field, any of ``values`` must match and none of ``notValues``. ``from_``/``to`` are ``None`` when
absent; validation rejects present-but-empty lists, so consumers may treat ``None`` and ``()``
alike. ``when_attribute(key)`` and ``when_arguments(key)`` say what a ``when`` key names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, field
from pilotfish.config.names import camel_to_snake
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.security.annotations import dry_run_findings
from pilotfish.config.security.targeting import PolicyTargetReference, targeting
from pilotfish.config.selector import WorkloadSelector

Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


@dataclass(frozen=True, slots=True)
class Source(Message):
    """Where a request comes from. Fields are ANDed; within a field, values are ORed."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()
    trust_domains: tuple[str, ...] = ()
    not_trust_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation(Message):
    """What a request does. Fields are ANDed; within a field, values are ORed."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleFrom(Message):
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class RuleTo(Message):
    operation: Operation | None = None


@dataclass(frozen=True, slots=True)
class Condition(Message):
    """A ``when`` condition: the attribute ``key`` matches any of ``values`` and none of ``notValues``."""

    key: str = field(required=True)
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule(Message):
    from_: tuple[RuleFrom, ...] | None = None
    to: tuple[RuleTo, ...] | None = None
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Provider(Message):
    """The CUSTOM action's extension provider: a MeshConfig ``extensionProviders`` name."""

    name: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizationPolicySpec(Message):
    ONEOFS = (("provider",),)

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    rules: tuple[Rule, ...] = ()
    action: Action = "ALLOW"
    provider: Provider | None = None


# ---- value checks (security.go) -------------------------------------------------------------------

ValueCheck = Callable[[str], "str | None"]
_PORT = re.compile(r"^[0-9]+$")
# RFC 3986 pchar: what a literal path segment next to a {*}/{**} operator may hold.
_PATH_LITERAL = re.compile(r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$")
MATCH_ONE_TEMPLATE, MATCH_ANY_TEMPLATE = "{*}", "{**}"


def _any(_value: str) -> str | None:
    return None


def ip_block(value: str) -> str | None:
    """``security.ValidateIPs``: an address, or a CIDR block when it holds a ``/``."""
    return None if checks.ip_or_cidr(value) is None else f"bad IP address or CIDR range ({value})"


def port_value(value: str) -> str | None:
    """``security.ValidatePorts``: a decimal in [0, 65535]."""
    return None if _PORT.match(value) and int(value) <= 65535 else f"bad port ({value})"


def service_account(value: str) -> str | None:
    """``security.CheckServiceAccount`` for one value: ``sa`` or ``namespace/sa``, no wildcard."""
    if "*" in value:
        return f"wildcard not allowed, found {value!r}"
    namespace, slash, account = value.rpartition("/")
    if value.count("/") > 1 or (slash and not namespace) or not account:
        return f"expected format 'serviceAccount' or 'namespace/serviceAccount', found {value!r}"
    if len(value) > 320:
        return f"value cannot exceed 320 characters, found {value!r}"
    return None


def edge_wildcard(value: str) -> str | None:
    """Trust domains: ``*`` at most once, alone or at one end (Istio ``CheckWildcardValues``)."""
    if value.count("*") > 1 or ("*" in value and not value.startswith("*") and not value.endswith("*")):
        return f"{value!r}: '*' is only allowed alone or at the start or end"
    return None


def path_template(path: str) -> str | None:
    """``security.CheckValidPathTemplate``: ``{*}`` matches one segment, ``{**}`` any number and
    must be the last operator; no other braces; literal segments of a template are RFC 3986 pchars."""
    is_template = MATCH_ONE_TEMPLATE in path or MATCH_ANY_TEMPLATE in path
    seen_any = False
    for segment in path.strip("/").split("/"):
        if segment in (MATCH_ONE_TEMPLATE, MATCH_ANY_TEMPLATE):
            if seen_any:
                return f"invalid or unsupported path {path}: {{**}} is not the last operator"
            seen_any = segment == MATCH_ANY_TEMPLATE
            continue
        if "{" in segment or "}" in segment:
            return (
                f"invalid or unsupported path {path}: contains '{{' or '}}' beyond a supported path template"
            )
        if is_template and not _PATH_LITERAL.match(segment):
            return f"invalid or unsupported path {path}: segment {segment!r} is not a valid literal"
    return None


def inner_wildcard(value: str) -> str | None:
    """Istio matches ``*`` only alone, as a prefix or as a suffix; elsewhere it is a literal
    character, so the value almost surely does not mean what it says (a warning, not an error)."""
    if edge_wildcard(value) is None or MATCH_ONE_TEMPLATE in value or MATCH_ANY_TEMPLATE in value:
        return None
    return f"{value!r}: '*' is only a wildcard alone or at the start or end; here it is matched literally"


# ---- the from.source and to.operation fields, as data ---------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one list field of ``Source``/``Operation`` is checked."""

    json: str
    attr: str
    check: ValueCheck  # an error for a bad value
    tcp: bool  # matchable on plain TCP (Istio's "tcpRulesInFrom/To"), else HTTP-only
    identity: bool = False  # needs the peer or request identity: not supported with CUSTOM
    warn: ValueCheck = _any  # a warning for a suspicious value


def _rows(
    json: str, check: ValueCheck, *, tcp: bool, identity: bool = False, warn: ValueCheck = _any
) -> tuple[FieldRule, ...]:
    """The field and its ``not`` twin (``ipBlocks``, ``notIpBlocks``)."""
    negated = "not" + json[0].upper() + json[1:]
    return tuple(
        FieldRule(name, camel_to_snake(name), check, tcp, identity, warn) for name in (json, negated)
    )


SOURCE_FIELDS: tuple[FieldRule, ...] = (
    *_rows("principals", _any, tcp=True, identity=True, warn=inner_wildcard),
    *_rows("requestPrincipals", _any, tcp=False, identity=True, warn=inner_wildcard),
    *_rows("namespaces", _any, tcp=True, identity=True, warn=inner_wildcard),
    *_rows("serviceAccounts", service_account, tcp=True, identity=True),
    *_rows("ipBlocks", ip_block, tcp=True),
    *_rows("remoteIpBlocks", ip_block, tcp=True),
    *_rows("trustDomains", edge_wildcard, tcp=True, identity=True),
)
OPERATION_FIELDS: tuple[FieldRule, ...] = (
    *_rows("hosts", _any, tcp=False, warn=inner_wildcard),
    *_rows("ports", port_value, tcp=True),
    *_rows("methods", _any, tcp=False, warn=inner_wildcard),
    *_rows("paths", path_template, tcp=False, warn=inner_wildcard),
)
SERVICE_ACCOUNT_LIMIT = 16


# ---- when keys, as data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhenAttribute:
    """One attribute a ``when`` key may name (``security.go`` ``ValidateAttribute``)."""

    name: str
    bracketed: bool = False  # written ``name[argument]``, e.g. ``request.headers[x-token]``
    check: ValueCheck = _any
    identity: bool = False  # needs the peer or request identity: not supported with CUSTOM
    tcp: bool = True  # available on plain TCP connections


EXPERIMENTAL_FILTERS = "experimental.envoy.filters."
WHEN_ATTRIBUTES: Mapping[str, WhenAttribute] = {
    a.name: a
    for a in (
        WhenAttribute("request.headers", bracketed=True, tcp=False),
        WhenAttribute("request.experimental.inline.headers", bracketed=True, tcp=False),
        WhenAttribute("source.ip", check=ip_block),
        WhenAttribute("remote.ip", check=ip_block),
        WhenAttribute("source.namespace", identity=True),
        WhenAttribute("source.serviceAccount", check=service_account, identity=True),
        WhenAttribute("source.principal", identity=True),
        WhenAttribute("source.trustDomain", check=edge_wildcard, identity=True),
        WhenAttribute("request.auth.principal", identity=True, tcp=False),
        WhenAttribute("request.auth.audiences", identity=True, tcp=False),
        WhenAttribute("request.auth.presenter", identity=True, tcp=False),
        WhenAttribute("request.auth.claims", bracketed=True, identity=True, tcp=False),
        WhenAttribute("destination.ip", check=ip_block),
        WhenAttribute("destination.port", check=port_value),
        WhenAttribute("connection.sni"),
        WhenAttribute(EXPERIMENTAL_FILTERS, bracketed=True),
    )
}
# Keys Istio once had and now rejects with a pointer to their replacement.
RETIRED_WHEN_KEYS: Mapping[str, str] = {
    "destination.namespace": "attribute destination.namespace is replaced by the metadata.namespace",
    "destination.labels": "attribute destination.labels is replaced by the workload selector",
    "destination.name": "deprecated attribute destination.name: only supported in v1alpha1",
    "destination.user": "deprecated attribute destination.user: only supported in v1alpha1",
}


def when_attribute(key: str) -> WhenAttribute | None:
    """The attribute a ``when`` key names, or ``None`` when Istio does not know the key."""
    name = key.partition("[")[0]
    attribute = WHEN_ATTRIBUTES.get(EXPERIMENTAL_FILTERS if name.startswith(EXPERIMENTAL_FILTERS) else name)
    if attribute is None or attribute.bracketed != ("[" in key):
        return None
    return attribute


def when_arguments(key: str) -> tuple[str, ...]:
    """What the brackets of a valid key hold: ``request.headers[x-token]`` → ``("x-token",)``;
    ``request.auth.claims[a][b]`` → ``("a", "b")`` (a nested claim, Istio
    ``extractNameInNestedBrackets``); ``source.ip`` → ``()``."""
    inner = key.partition("[")[2]
    return tuple(inner[:-1].split("][")) if inner else ()


def when_key(key: str) -> str | None:
    """A problem with a ``when`` key itself, or ``None``."""
    if not key:
        return "`key` must not be empty"
    name = key.partition("[")[0]
    retired = RETIRED_WHEN_KEYS.get(name)
    if retired:
        return retired
    attribute = when_attribute(key)
    if attribute is None:
        return f"unknown attribute: {key}"
    open_at = key.find("[")
    if attribute.bracketed and not (key.endswith("]") and 0 < open_at < len(key) - 2):
        return f"bad key ({key}): should have format a[b]"
    return None


# ---- validation -----------------------------------------------------------------------------------


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: AuthorizationPolicySpec = resource.spec
    yield from targeting(spec.selector, spec.target_ref, spec.target_refs)
    yield from _action(spec)
    yield from dry_run_findings(resource, spec.action)
    if len(spec.rules) > 512:
        yield Finding(("rules",), f"at most 512 rules are allowed; got {len(spec.rules)}")
    for i, rule in enumerate(spec.rules):
        yield from _rule(rule, ("rules", i), spec.action)


_NO_RULES = (
    "{action} action without `rules` is meaningless as it will never be triggered, "
    "add an empty rule `{{}}` if you want it be triggered for every request"
)


def _action(spec: AuthorizationPolicySpec) -> Iterator[Finding]:
    """Action-level rules: DENY and CUSTOM need rules; ``provider`` goes with CUSTOM only."""
    if spec.action in ("DENY", "CUSTOM") and not spec.rules:
        yield Finding(("rules",), _NO_RULES.format(action=spec.action))
    if spec.action == "CUSTOM" and spec.rules and not (spec.provider and spec.provider.name):
        yield Finding(("provider", "name"), "`provider.name` must not be empty")
    if spec.provider is not None and spec.action != "CUSTOM":
        yield Finding(("provider",), f"`provider` must not be with non CUSTOM action, found {spec.action}")


def _rule(rule: Rule, path: Path, action: str) -> Iterator[Finding]:
    yield from _sources(rule.from_, (*path, "from"), action)
    yield from _operations(rule.to, (*path, "to"))
    for j, condition in enumerate(rule.when):
        yield from _condition(condition, (*path, "when", j), action)
    if action == "DENY" and _http_only(rule):
        yield Finding(
            path,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the "
            "use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
            "warning",
        )


def _sources(entries: tuple[RuleFrom, ...] | None, path: Path, action: str) -> Iterator[Finding]:
    if entries is None:
        return
    if not entries:
        yield Finding(path, "`from` must not be empty")
    if len(entries) > 512:
        yield Finding(path, f"at most 512 `from` entries are allowed; got {len(entries)}")
    for j, entry in enumerate(entries):
        if entry.source is None:
            yield Finding((*path, j, "source"), "`from.source` must not be nil")
        else:
            yield from _source(entry.source, (*path, j, "source"), action)


def _source(source: Source, path: Path, action: str) -> Iterator[Finding]:
    if not any(getattr(source, f.attr) for f in SOURCE_FIELDS):
        yield Finding(path, "`from.source` must not be empty")
    accounts = source.service_accounts or source.not_service_accounts
    if accounts and (
        source.principals or source.not_principals or source.namespaces or source.not_namespaces
    ):
        yield Finding(path, "cannot set serviceAccounts with namespaces or principals")
    for rule in SOURCE_FIELDS:
        values: tuple[str, ...] = getattr(source, rule.attr)
        if values and rule.identity and action == "CUSTOM":
            yield Finding((*path, rule.json), f"{rule.json} is currently not supported with CUSTOM action")
        if rule.check is service_account and len(values) > SERVICE_ACCOUNT_LIMIT:
            yield Finding((*path, rule.json), f"may not have more than {SERVICE_ACCOUNT_LIMIT} values")
        yield from _values(values, rule.check, rule.warn, (*path, rule.json))


def _operations(entries: tuple[RuleTo, ...] | None, path: Path) -> Iterator[Finding]:
    if entries is None:
        return
    if not entries:
        yield Finding(path, "`to` must not be empty")
    for j, entry in enumerate(entries):
        where = (*path, j, "operation")
        if entry.operation is None:
            yield Finding(where, "`to.operation` must not be nil")
            continue
        if not any(getattr(entry.operation, f.attr) for f in OPERATION_FIELDS):
            yield Finding(where, "`to.operation` must not be empty")
        for rule in OPERATION_FIELDS:
            yield from _values(
                getattr(entry.operation, rule.attr), rule.check, rule.warn, (*where, rule.json)
            )


def _values(values: tuple[str, ...], check: ValueCheck, warn: ValueCheck, path: Path) -> Iterator[Finding]:
    for k, value in enumerate(values):
        if not value:
            yield Finding((*path, k), "empty value not allowed")
            continue
        problem, doubt = check(value), warn(value)
        if problem:
            yield Finding((*path, k), problem)
        elif doubt:
            yield Finding((*path, k), doubt, "warning")


def _condition(condition: Condition, path: Path, action: str) -> Iterator[Finding]:
    problem = when_key(condition.key)
    if problem:
        yield Finding((*path, "key"), problem)
    elif action == "CUSTOM" and _identity_key(condition.key):
        yield Finding((*path, "key"), f"{condition.key} is currently not supported with CUSTOM action")
    if condition.key and not condition.values and not condition.not_values:
        yield Finding(path, f"at least one of `values` or `notValues` must be set for key {condition.key}")
    attribute = None if problem else when_attribute(condition.key)
    check = attribute.check if attribute else _any
    warn = inner_wildcard if attribute and check is _any else _any
    yield from _values(condition.values, check, warn, (*path, "values"))
    yield from _values(condition.not_values, check, warn, (*path, "notValues"))
    if attribute and attribute.check is service_account and len(condition.values) > SERVICE_ACCOUNT_LIMIT:
        yield Finding((*path, "values"), f"may not have more than {SERVICE_ACCOUNT_LIMIT} values")


def _identity_key(key: str) -> bool:
    """Keys CUSTOM rejects: every ``request.auth.*`` and the peer-identity ``source.*`` keys."""
    attribute = when_attribute(key)
    return key.startswith("request.auth.") or bool(attribute and attribute.identity)


def _http_only(rule: Rule) -> bool:
    """Istio's "will deny all traffic to TCP ports" test: a ``from`` with no TCP-matchable field
    and no ``to``, or a ``to`` with no ports."""
    sources = [e.source for e in rule.from_ or () if e.source is not None]
    operations = [e.operation for e in rule.to or () if e.operation is not None]
    tcp_from = any(getattr(s, f.attr) for s in sources for f in SOURCE_FIELDS if f.tcp)
    tcp_to = any(o.ports or o.not_ports for o in operations)
    return bool((sources and not operations and not tcp_from) or (operations and not tcp_to))
