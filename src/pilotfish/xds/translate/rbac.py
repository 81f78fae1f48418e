"""AuthorizationPolicy → Envoy's HTTP RBAC filters, with upstream matchers only (pure).

Theory of operation. istiod compiles AuthorizationPolicies into RBAC filters
(istio ``pilot/pkg/security/authz/builder/builder.go``, ``model/generator.go``); plain Envoy has
no ``istio_authn`` filter, so the request principal and JWT claims are read from the dynamic
metadata Envoy's own ``jwt_authn`` filter writes (``payload_in_metadata``, see ``jwt_authn``).
The filters run in Istio's order (``listener_builder.go``): DENY, then ALLOW, then AUDIT (Envoy
action ``LOG``); dry-run policies become ``shadow_rules`` of the filter of their action.

One Istio rule is one Envoy policy: a permission that ANDs the rule's operations (ORed) with
its destination-side ``when`` conditions, and a principal that ANDs the rule's sources (ORed)
with its source-side conditions. Inside a field, any value and none of the ``notValues``
(``and(or(values), not(or(notValues)))``). Every field and ``when`` key maps through a table
to the Envoy matcher with the meaning the ext_authz evaluator gives it (``extauthz.matchers``),
so both enforcement modes decide alike; ``tests/e2e/test_authz_differential_e2e.py`` proves it.

A rule the evaluator cannot understand fails closed the same way here: in an ALLOW policy it
matches nothing, elsewhere it matches every request (``policy._compile_or_constant``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from pilotfish.config.mesh import MeshConfig
from pilotfish.config.resource import Resource
from pilotfish.config.security.annotations import is_dry_run
from pilotfish.config.security.authorization_policy import (
    MATCH_ANY_TEMPLATE,
    MATCH_ONE_TEMPLATE,
    Condition,
    Operation,
    Rule,
    Source,
    when_arguments,
)
from pilotfish.extauthz.matchers import (
    SPIFFE,
    Context,
    Pattern,
    RuleError,
    TrustDomains,
    expand_trust_domain,
    split_request_principal,
    template_regex,
)
from pilotfish.extauthz.policy import compile_rule
from pilotfish.xds.translate.route_match import JWT_FILTER, JWT_PAYLOAD

RBAC_FILTER = "envoy.filters.http.rbac"
JWT_AUTHN_FILTER = JWT_FILTER  # jwt_authn writes the verified claims under PAYLOAD_KEY of its metadata
PAYLOAD_KEY = JWT_PAYLOAD

# Istio action → Envoy RBAC action, in filter order (listener_builder.go: DENY, ALLOW, AUDIT).
ACTIONS: tuple[tuple[str, int], ...] = (
    ("DENY", rbac_pb2.RBAC.DENY),
    ("ALLOW", rbac_pb2.RBAC.ALLOW),
    ("AUDIT", rbac_pb2.RBAC.LOG),
)

Principal: TypeAlias = rbac_pb2.Principal
Permission: TypeAlias = rbac_pb2.Permission


# ---- string matchers ---------------------------------------------------------------------------------


def _regex(expression: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=expression)


def string_matcher(pattern: Pattern) -> string_pb2.StringMatcher:
    """Istio's string syntax as an Envoy StringMatcher; presence is a non-empty value."""
    if pattern.kind == "presence":
        return string_pb2.StringMatcher(safe_regex=_regex("(?s).+"))
    kwargs: dict[str, Any] = {pattern.kind: pattern.text}
    return string_pb2.StringMatcher(ignore_case=pattern.ignore_case, **kwargs)


def _glob_regex(value: str) -> str:
    return ".*".join(re.escape(part) for part in value.split("*"))


# ---- principals (the source side) -----------------------------------------------------------------


def _authenticated(matcher: string_pb2.StringMatcher) -> Principal:
    return Principal(authenticated=Principal.Authenticated(principal_name=matcher))


def _principal_regex(expression: str) -> Principal:
    return _authenticated(string_pb2.StringMatcher(safe_regex=_regex(expression)))


def _spiffe(pattern: Pattern) -> Principal:
    """istio ``generator.go`` principals: exact/prefix on ``spiffe://`` + value, suffix as the
    regex ``spiffe://.*<v>``, ``*`` as any authenticated peer."""
    if pattern.kind == "presence":
        return _principal_regex("(?s).+")
    if pattern.kind == "suffix":
        return _principal_regex(f"{re.escape(SPIFFE)}.*{re.escape(pattern.text)}")
    return _authenticated(string_matcher(Pattern(pattern.kind, SPIFFE + pattern.text)))


def principal(value: str, ctx: Context) -> Principal:
    return _any_of([_spiffe(Pattern.parse(v)) for v in expand_trust_domain(value, ctx.trust)])


def namespace(value: str, ctx: Context) -> Principal:
    return _principal_regex(f".*/ns/{_glob_regex(value)}/.*")


def service_account(value: str, ctx: Context) -> Principal:
    ns, _, account = value.rpartition("/")
    return _principal_regex(
        f"spiffe://.+/ns/{re.escape(ns or ctx.namespace)}/(.+/|)sa/{re.escape(account)}(/.+)?"
    )


_DOMAIN_REGEX: Mapping[str, Callable[[str], str]] = {
    "exact": re.escape,
    "prefix": lambda text: re.escape(text) + "[^/]*",
    "suffix": lambda text: "[^/]*" + re.escape(text),
    "presence": lambda text: "[^/]+",
}


def trust_domain(value: str, ctx: Context) -> Principal:
    values = ctx.trust.all if ctx.trust.expands(value) else (value,)
    patterns = [Pattern.parse(v) for v in values]
    return _any_of([_principal_regex(f"spiffe://{_DOMAIN_REGEX[p.kind](p.text)}/.*") for p in patterns])


def _cidr(value: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(value, strict=False)  # Envoy CidrRange masks host bits
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )


def direct_ip(value: str, ctx: Context) -> Principal:
    return Principal(direct_remote_ip=_cidr(value))


def remote_ip(value: str, ctx: Context) -> Principal:
    return Principal(remote_ip=_cidr(value))


def _claim_matcher(path: Sequence[str], pattern: Pattern) -> metadata_pb2.MetadataMatcher:
    """A claim (nested by path) as Istio's ``or(list.one_of(v), v)`` (``matcher/metadata.go``)."""
    string = value_pb2.ValueMatcher(string_match=string_matcher(pattern))
    either = value_pb2.OrMatcher(
        value_matchers=[value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=string)), string]
    )
    return metadata_pb2.MetadataMatcher(
        filter=JWT_AUTHN_FILTER,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in (PAYLOAD_KEY, *path)],
        value=value_pb2.ValueMatcher(or_match=either),
    )


def _claim_string(name: str, pattern: Pattern) -> Principal:
    """A string claim only (``iss``/``sub``): no list form."""
    return Principal(
        metadata=metadata_pb2.MetadataMatcher(
            filter=JWT_AUTHN_FILTER,
            path=[metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in (PAYLOAD_KEY, name)],
            value=value_pb2.ValueMatcher(string_match=string_matcher(pattern)),
        )
    )


def request_principal(value: str, ctx: Context) -> Principal:
    """``iss/sub`` split at the last ``/`` (issuers may contain ``/``): two metadata matchers."""
    iss, sub = split_request_principal(value)
    return _all_of([_claim_string("iss", iss), _claim_string("sub", sub)])


def claim(path: Sequence[str]) -> Callable[[str, Context], Principal]:
    return lambda value, ctx: Principal(metadata=_claim_matcher(path, Pattern.parse(value)))


def _header(name: str, pattern: Pattern) -> route_components_pb2.HeaderMatcher:
    if pattern.kind == "presence":
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(name=name, string_match=string_matcher(pattern))


def header(name: str) -> Callable[[str, Context], Principal]:
    return lambda value, ctx: Principal(header=_header(name.lower(), Pattern.parse(value)))


# ---- permissions (the destination side) -----------------------------------------------------------


def host(value: str, ctx: Context) -> Permission:
    return Permission(header=_header(":authority", Pattern.parse(value, ignore_case=True)))


def method(value: str, ctx: Context) -> Permission:
    return Permission(header=_header(":method", Pattern.parse(value)))


def port(value: str, ctx: Context) -> Permission:
    return Permission(destination_port=int(value))


def path(value: str, ctx: Context) -> Permission:
    """``paths``: Envoy ``url_path`` (no query). A ``{*}``/``{**}`` template becomes the regex
    the evaluator uses: Envoy 1.40 aborts (std::terminate) on an RBAC ``uri_template``
    permission instead of rejecting or applying it, so the regex is the safe upstream form."""
    if MATCH_ONE_TEMPLATE in value or MATCH_ANY_TEMPLATE in value:
        matcher = string_pb2.StringMatcher(safe_regex=_regex(template_regex(value)))
        return Permission(url_path=path_pb2.PathMatcher(path=matcher))
    return Permission(url_path=path_pb2.PathMatcher(path=string_matcher(Pattern.parse(value))))


def destination_ip(value: str, ctx: Context) -> Permission:
    return Permission(destination_ip=_cidr(value))


def sni(value: str, ctx: Context) -> Permission:
    return Permission(requested_server_name=string_matcher(Pattern.parse(value)))


# ---- the tables (the same keys as extauthz.matchers) ----------------------------------------------

PrincipalCompiler = Callable[[str, Context], Principal]
PermissionCompiler = Callable[[str, Context], Permission]

SOURCE_FIELDS: Mapping[str, PrincipalCompiler] = {
    "principals": principal,
    "request_principals": request_principal,
    "namespaces": namespace,
    "service_accounts": service_account,
    "ip_blocks": direct_ip,
    "remote_ip_blocks": remote_ip,
    "trust_domains": trust_domain,
}
OPERATION_FIELDS: Mapping[str, PermissionCompiler] = {
    "hosts": host,
    "ports": port,
    "methods": method,
    "paths": path,
}
WHEN_PRINCIPALS: Mapping[str, PrincipalCompiler] = {
    "source.ip": direct_ip,
    "remote.ip": remote_ip,
    "source.namespace": namespace,
    "source.principal": principal,
    "source.serviceAccount": service_account,
    "source.trustDomain": trust_domain,
    "request.auth.principal": request_principal,
    "request.auth.audiences": claim(("aud",)),
    "request.auth.presenter": claim(("azp",)),
}
WHEN_PERMISSIONS: Mapping[str, PermissionCompiler] = {
    "destination.ip": destination_ip,
    "destination.port": port,
    "connection.sni": sni,
}
BRACKETED_WHEN_PRINCIPALS: Mapping[str, Callable[[tuple[str, ...]], PrincipalCompiler]] = {
    "request.headers": lambda args: header(args[0]),
    "request.experimental.inline.headers": lambda args: header(args[0]),
    "request.auth.claims": claim,
}


# ---- combinators --------------------------------------------------------------------------------------


def _any_of(items: list[Any]) -> Any:
    if len(items) == 1:
        return items[0]
    kind = type(items[0])
    return (
        kind(or_ids=Principal.Set(ids=items))
        if kind is Principal
        else kind(or_rules=Permission.Set(rules=items))
    )


def _all_of(items: list[Any]) -> Any:
    if len(items) == 1:
        return items[0]
    kind = type(items[0])
    return (
        kind(and_ids=Principal.Set(ids=items))
        if kind is Principal
        else kind(and_rules=Permission.Set(rules=items))
    )


def _negate(item: Any) -> Any:
    return Principal(not_id=item) if type(item) is Principal else Permission(not_rule=item)


def _field(
    compile_value: Callable[[str, Context], Any],
    values: Iterable[str],
    not_values: Iterable[str],
    ctx: Context,
) -> list[Any]:
    """``and(or(values), not(or(notValues)))`` as a list of ANDed parts."""
    parts: list[Any] = []
    positive = [compile_value(v, ctx) for v in values]
    negative = [compile_value(v, ctx) for v in not_values]
    if positive:
        parts.append(_any_of(positive))
    if negative:
        parts.append(_negate(_any_of(negative)))
    return parts


def _clause(
    entry: Source | Operation, table: Mapping[str, Callable[[str, Context], Any]], ctx: Context
) -> list[Any]:
    return [
        part
        for name, compile_value in table.items()
        for part in _field(compile_value, getattr(entry, name), getattr(entry, "not_" + name), ctx)
    ]


def _conjunction(parts: list[Any], kind: type) -> Any:
    return _all_of(parts) if parts else kind(any=True)


def _condition(condition: Condition, ctx: Context) -> tuple[list[Principal], list[Permission]]:
    name = condition.key.partition("[")[0]
    if name in WHEN_PERMISSIONS:
        return [], _field(WHEN_PERMISSIONS[name], condition.values, condition.not_values, ctx)
    compile_value = WHEN_PRINCIPALS.get(name) or BRACKETED_WHEN_PRINCIPALS[name](
        when_arguments(condition.key)
    )
    return _field(compile_value, condition.values, condition.not_values, ctx), []


def rule_policy(rule: Rule, ctx: Context) -> rbac_pb2.Policy:
    """One Istio rule (already known to compile for the evaluator) as one Envoy policy."""
    principals: list[Principal] = []
    permissions: list[Permission] = []
    if rule.from_ is not None:
        principals.append(
            _any_of(
                [
                    _conjunction(_clause(e.source, SOURCE_FIELDS, ctx), Principal)
                    for e in rule.from_
                    if e.source
                ]
            )
        )
    if rule.to is not None:
        permissions.append(
            _any_of(
                [
                    _conjunction(_clause(e.operation, OPERATION_FIELDS, ctx), Permission)
                    for e in rule.to
                    if e.operation
                ]
            )
        )
    for condition in rule.when:
        on_principal, on_permission = _condition(condition, ctx)
        principals.extend(on_principal)
        permissions.extend(on_permission)
    return rbac_pb2.Policy(
        permissions=[_conjunction(permissions, Permission)], principals=[_conjunction(principals, Principal)]
    )


_MATCH_ALL = rbac_pb2.Policy(permissions=[Permission(any=True)], principals=[Principal(any=True)])


def _rule_or_constant(rule: Rule, ctx: Context, action: str) -> rbac_pb2.Policy | None:
    """The rule, or its fail-closed constant: nothing in ALLOW (``None``), everything elsewhere."""
    try:
        compile_rule(rule, ctx)  # the evaluator's verdict on whether the rule is understood
    except RuleError:
        return None if action == "ALLOW" else _MATCH_ALL
    return rule_policy(rule, ctx)


def policy_name(resource: Resource[Any], index: int) -> str:
    """Istio's name: ``ns[NS]-policy[NAME]-rule[I]`` (it appears in Envoy's RBAC stats and logs)."""
    return f"ns[{resource.namespace}]-policy[{resource.name}]-rule[{index}]"


def rbac_policies(resources: Iterable[Resource[Any]], mesh: MeshConfig) -> dict[str, rbac_pb2.Policy]:
    out: dict[str, rbac_pb2.Policy] = {}
    for resource in resources:
        ctx = Context(resource.namespace, TrustDomains(mesh.trust_domain, mesh.trust_domain_aliases))
        for i, rule in enumerate(resource.spec.rules):
            policy = _rule_or_constant(rule, ctx, resource.spec.action)
            if policy is not None:
                out[policy_name(resource, i)] = policy
    return out


def rbac_filters(
    policies: Sequence[Resource[Any]], mesh: MeshConfig
) -> list[http_connection_manager_pb2.HttpFilter]:
    """The RBAC filters for the AuthorizationPolicies that apply to one workload (no CUSTOM),
    in Istio's order. An action with only dry-run policies gets shadow rules and no enforcement;
    an enforced ALLOW set with no rule that can match still denies everything (``spec: {}``)."""
    filters = []
    for action, envoy_action in ACTIONS:
        of_action = [p for p in policies if p.spec.action == action]
        enforced = [p for p in of_action if not (action != "AUDIT" and is_dry_run(p))]
        shadow = [p for p in of_action if action != "AUDIT" and is_dry_run(p)]
        if not enforced and not shadow:
            continue
        config = http_rbac_pb2.RBAC(shadow_rules_stat_prefix="istio_dry_run_")
        if enforced:
            config.rules.CopyFrom(rbac_pb2.RBAC(action=envoy_action, policies=rbac_policies(enforced, mesh)))
        if shadow:
            config.shadow_rules.CopyFrom(
                rbac_pb2.RBAC(action=envoy_action, policies=rbac_policies(shadow, mesh))
            )
        out = http_connection_manager_pb2.HttpFilter(name=RBAC_FILTER)
        out.typed_config.Pack(config)
        filters.append(out)
    return filters
