"""How one AuthorizationPolicy value matches one request attribute: the tables behind ``policy``.

Each ``from.source`` field, ``to.operation`` field and ``when`` key maps to a *compiler*: a
function from one policy value to a ``Predicate`` over a ``View`` (the request attributes plus
the verified JWT claims). ``SOURCE_FIELDS``, ``OPERATION_FIELDS`` and ``WHEN_KEYS`` are those
tables; an unknown key or a value that cannot be read raises ``RuleError``, which ``policy``
turns into the fail-closed outcome for the whole rule.

String syntax (istio ``pilot/pkg/security/authz/matcher/string.go``): ``*`` alone is presence
(non-empty; for headers, hosts and methods Envoy ``present_match``: present even if empty),
``*abc`` suffix, ``abc*`` prefix, anything else exact; an inner ``*`` is a literal character.
Every positive matcher is false on a missing attribute (plaintext peer, no JWT, no header), so
its ``notValues`` twin is true (reference §3.4, §4.5, §8 item 8).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config.security.authorization_policy import (
    EXPERIMENTAL_FILTERS,
    MATCH_ANY_TEMPLATE,
    MATCH_ONE_TEMPLATE,
    path_template,
    when_arguments,
    when_key,
)
from pilotfish.extauthz.attributes import Attributes

Claims = Mapping[str, Any]
SPIFFE = "spiffe://"


class RuleError(ValueError):
    """A rule holds a key or value the evaluator cannot understand."""


@dataclass(frozen=True, slots=True)
class View:
    """What predicates read: the request, and the verified JWT claims (``None`` without a valid JWT)."""

    attrs: Attributes
    claims: Claims | None = None


Predicate = Callable[[View], bool]


@dataclass(frozen=True, slots=True)
class TrustDomains:
    """The mesh trust domain and its aliases (MeshConfig ``trustDomain``/``trustDomainAliases``)."""

    domain: str = "cluster.local"
    aliases: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.domain, *self.aliases)))

    def expands(self, domain: str) -> bool:
        """istio ``trustdomain/bundle.go``: the mesh domain, an alias, or the literal ``cluster.local``."""
        return domain in (*self.all, "cluster.local")


@dataclass(frozen=True, slots=True)
class Context:
    """What compiling a value needs beyond the value: the policy namespace and the trust domains."""

    namespace: str
    trust: TrustDomains = TrustDomains()


# ---- Istio string syntax ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: Literal["exact", "prefix", "suffix", "presence"]
    text: str = ""
    ignore_case: bool = False
    empty_is_present: bool = False  # Envoy present_match (headers): an empty value still counts

    @classmethod
    def parse(cls, value: str, *, ignore_case: bool = False, empty_is_present: bool = False) -> Pattern:
        if not value:
            raise RuleError("empty value")
        if value == "*":
            return cls("presence", "", ignore_case, empty_is_present)
        if value.startswith("*"):
            return cls("suffix", value[1:], ignore_case, empty_is_present)
        if value.endswith("*"):
            return cls("prefix", value[:-1], ignore_case, empty_is_present)
        return cls("exact", value, ignore_case, empty_is_present)

    def test(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.kind == "presence":
            return self.empty_is_present or value != ""
        text, value = (self.text.lower(), value.lower()) if self.ignore_case else (self.text, value)
        return _STRING_TESTS[self.kind](value, text)


_STRING_TESTS: Mapping[str, Callable[[str, str], bool]] = {
    "exact": lambda value, text: value == text,
    "prefix": lambda value, text: value.startswith(text),
    "suffix": lambda value, text: value.endswith(text),
}


def _on(read: Callable[[View], str | None], pattern: Pattern) -> Predicate:
    return lambda view: pattern.test(read(view))


# ---- peer identity ----------------------------------------------------------------------------------


def _principal(view: View) -> str | None:
    return view.attrs.source.principal or None


def expand_trust_domain(value: str, trust: TrustDomains) -> tuple[str, ...]:
    """``td/ns/N/sa/S`` naming the mesh domain, an alias or ``cluster.local`` stands for every
    domain of the mesh (istio ``trustdomain/bundle.go`` ``replaceTrustDomains``, T-TD). Other
    values (``*`` domains, other shapes, foreign domains) are kept as written."""
    parts = value.split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not trust.expands(parts[0]):
        return (value,)
    return tuple("/".join((domain, *parts[1:])) for domain in trust.all)


def _spiffe_test(pattern: Pattern) -> Callable[[str | None], bool]:
    """istio ``generator.go`` principals: exact/prefix on ``spiffe://`` + value, suffix as the
    regex ``spiffe://.*<v>``, ``*`` as ``.+`` (any authenticated peer)."""
    if pattern.kind == "presence":
        return lambda p: bool(p)
    if pattern.kind == "suffix":
        return lambda p: p is not None and p.startswith(SPIFFE) and p[len(SPIFFE) :].endswith(pattern.text)
    spiffe = Pattern(pattern.kind, SPIFFE + pattern.text)
    return spiffe.test


def principal(value: str, ctx: Context) -> Predicate:
    tests = [_spiffe_test(Pattern.parse(v)) for v in expand_trust_domain(value, ctx.trust)]
    return lambda view: any(test(_principal(view)) for test in tests)


def _glob_regex(value: str) -> str:
    return ".*".join(re.escape(part) for part in value.split("*"))


def namespace(value: str, ctx: Context) -> Predicate:
    """istio ``generator.go`` ``srcNamespaceGenerator``: regex ``.*/ns/<v>/.*`` on the peer
    principal, ``*`` becoming ``.*``; the trust domain is ignored."""
    if not value:
        raise RuleError("empty namespace")
    regex = re.compile(f".*/ns/{_glob_regex(value)}/.*", re.DOTALL)
    return lambda view: (p := _principal(view)) is not None and regex.fullmatch(p) is not None


def service_account(value: str, ctx: Context) -> Predicate:
    """``ns/sa``, or ``sa`` in the policy's namespace: regex
    ``spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`` (istio ``generator.go`` ``srcServiceAccountGenerator``)."""
    ns, _, account = value.rpartition("/")
    if not account or "*" in value or value.count("/") > 1:
        raise RuleError(f"bad service account {value!r}")
    ns = ns or ctx.namespace
    regex = re.compile(f"spiffe://.+/ns/{re.escape(ns)}/(.+/|)sa/{re.escape(account)}(/.+)?", re.DOTALL)
    return lambda view: (p := _principal(view)) is not None and regex.fullmatch(p) is not None


def _trust_domain_of(view: View) -> str | None:
    p = _principal(view)
    if p is None or not p.startswith(SPIFFE):
        return None
    return p[len(SPIFFE) :].split("/", 1)[0] or None


def trust_domain(value: str, ctx: Context) -> Predicate:
    """The peer's SPIFFE trust domain; a mesh domain or alias stands for all of them (istio
    ``generator.go`` ``srcTrustDomainGenerator``)."""
    values = ctx.trust.all if ctx.trust.expands(value) else (value,)
    patterns = [Pattern.parse(v) for v in values]
    return lambda view: any(p.test(_trust_domain_of(view)) for p in patterns)


# ---- JWT identity and claims -------------------------------------------------------------------------


def _claim_string(view: View, name: str) -> str | None:
    value = view.claims.get(name) if view.claims is not None else None
    return value if isinstance(value, str) else None


def split_request_principal(value: str) -> tuple[Pattern, Pattern]:
    """istio ``generator.go`` ``requestPrincipalGenerator`` (≥1.22): ``*`` needs a non-empty iss
    and sub; otherwise split at the **last** ``/`` into iss and sub matchers. A value without
    ``/`` is an iss with an empty sub (``abc*``: an iss prefix and any sub)."""
    if value == "*":
        return Pattern("presence"), Pattern("presence")
    iss, slash, sub = value.rpartition("/")
    if not slash:
        sub_pattern = Pattern("presence") if value.endswith("*") else Pattern("exact", "")
        return Pattern.parse(value), sub_pattern
    return Pattern.parse(iss), Pattern.parse(sub)


def request_principal(value: str, ctx: Context) -> Predicate:
    iss, sub = split_request_principal(value)
    return lambda view: iss.test(_claim_string(view, "iss")) and sub.test(_claim_string(view, "sub"))


def _claim_at(claims: Claims | None, path: Sequence[str]) -> Any:
    value: Any = claims
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def claim(path: Sequence[str]) -> Callable[[str, Context], Predicate]:
    """A claim (nested by path) matched as Istio's ``or(list.one_of(v), v)`` (``matcher/metadata.go``):
    a string claim matches the value; a list matches when any string element does; other types never."""

    def compile_value(value: str, ctx: Context) -> Predicate:
        pattern = Pattern.parse(value)

        def test(view: View) -> bool:
            found = _claim_at(view.claims, path)
            items = found if isinstance(found, list) else [found]
            return any(isinstance(item, str) and pattern.test(item) for item in items)

        return test

    return compile_value


# ---- network, HTTP ------------------------------------------------------------------------------------


def _cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)  # Envoy CidrRange masks host bits
    except ValueError:
        raise RuleError(f"bad IP address or CIDR range {value!r}") from None


def ip_in(read: Callable[[View], str | None]) -> Callable[[str, Context], Predicate]:
    def compile_value(value: str, ctx: Context) -> Predicate:
        network = _cidr(value)

        def test(view: View) -> bool:
            ip = read(view)
            return ip is not None and ipaddress.ip_address(ip) in network

        return test

    return compile_value


def port(value: str, ctx: Context) -> Predicate:
    if not (value.isascii() and value.isdigit() and int(value) <= 65535):
        raise RuleError(f"bad port {value!r}")
    number = int(value)
    return lambda view: view.attrs.workload.port == number


def string_on(
    read: Callable[[View], str | None], *, ignore_case: bool = False, empty_is_present: bool = False
) -> Callable[[str, Context], Predicate]:
    def compile_value(value: str, ctx: Context) -> Predicate:
        return _on(read, Pattern.parse(value, ignore_case=ignore_case, empty_is_present=empty_is_present))

    return compile_value


def header(name: str) -> Callable[[str, Context], Predicate]:
    """``request.headers[name]``: name case-insensitive, value case-sensitive, repeated values
    joined with ``,`` (istio ``matcher/header.go``; NORM "Duplicate headers")."""
    return string_on(lambda view: view.attrs.request.header(name), empty_is_present=True)


_PCHAR = "a-zA-Z0-9\\-._~%!$&'()+,;:@="
# Envoy uri_template (pattern_template_internal.cc): {*} one non-empty segment, {**} the rest.
_TEMPLATE_REGEX = {MATCH_ONE_TEMPLATE: f"[{_PCHAR}]+", MATCH_ANY_TEMPLATE: f"[{_PCHAR}/]*"}


def path(value: str, ctx: Context) -> Predicate:
    """``paths``: the path without query or fragment, case-sensitive; ``{*}``/``{**}`` templates
    (API-AP ``Operation.paths``; istio ``permission.go``)."""
    if MATCH_ONE_TEMPLATE not in value and MATCH_ANY_TEMPLATE not in value:
        return _on(lambda view: view.attrs.request.url_path, Pattern.parse(value))
    regex = re.compile(template_regex(value))
    return lambda view: regex.fullmatch(view.attrs.request.url_path) is not None


def template_regex(value: str) -> str:
    """The regex (RE2 syntax too) a ``{*}``/``{**}`` path template means; ``RuleError`` if bad."""
    problem = path_template(value)
    if problem:
        raise RuleError(problem)
    return "/".join(_TEMPLATE_REGEX.get(s) or re.escape(s) for s in value.split("/"))


# ---- the tables -------------------------------------------------------------------------------------

Compiler = Callable[[str, Context], Predicate]


def _host(view: View) -> str | None:
    return view.attrs.request.host or None


# Source/Operation attribute name (snake_case, as the config dataclasses) → compiler. The ``not_``
# twin of each field uses the same compiler.
SOURCE_FIELDS: Mapping[str, Compiler] = {
    "principals": principal,
    "request_principals": request_principal,
    "namespaces": namespace,
    "service_accounts": service_account,
    "ip_blocks": ip_in(lambda view: view.attrs.source.ip),
    "remote_ip_blocks": ip_in(lambda view: view.attrs.source.remote_ip),
    "trust_domains": trust_domain,
}
OPERATION_FIELDS: Mapping[str, Compiler] = {
    # hosts: :authority, case-insensitive, port included as sent (istio header.go; GHSA-7774-7vr3-cc8j)
    "hosts": string_on(_host, ignore_case=True, empty_is_present=True),
    "ports": port,
    "methods": string_on(lambda view: view.attrs.request.method, empty_is_present=True),
    "paths": path,
}
# when key (the part before any ``[``) → compiler; bracketed keys get their argument first.
WHEN_KEYS: Mapping[str, Compiler] = {
    "source.ip": ip_in(lambda view: view.attrs.source.ip),
    "remote.ip": ip_in(lambda view: view.attrs.source.remote_ip),
    "source.namespace": namespace,
    "source.principal": principal,
    "source.serviceAccount": service_account,
    "source.trustDomain": trust_domain,
    "request.auth.principal": request_principal,
    "request.auth.audiences": claim(("aud",)),
    "request.auth.presenter": claim(("azp",)),
    "destination.ip": ip_in(lambda view: view.attrs.workload.ip),
    "destination.port": port,
    "connection.sni": string_on(lambda view: view.attrs.request.sni),
}
BRACKETED_WHEN_KEYS: Mapping[str, Callable[[tuple[str, ...]], Compiler]] = {
    "request.headers": lambda args: header(args[0]),
    "request.experimental.inline.headers": lambda args: header(args[0]),
    "request.auth.claims": claim,
}


def when_compiler(key: str) -> Compiler:
    """The compiler for a ``when`` key; ``RuleError`` for keys Istio rejects and for
    ``experimental.envoy.filters.*`` (Envoy dynamic metadata never reaches ext_authz here)."""
    problem = when_key(key)
    if problem:
        raise RuleError(problem)
    name = key.partition("[")[0]
    if name.startswith(EXPERIMENTAL_FILTERS):
        raise RuleError(f"{key}: Envoy filter metadata is not available to the ext_authz server")
    if name in WHEN_KEYS:
        return WHEN_KEYS[name]
    args, make = when_arguments(key), BRACKETED_WHEN_KEYS.get(name)
    if make is None or not args or not all(args) or (name != "request.auth.claims" and len(args) != 1):
        raise RuleError(f"bad key ({key}): not a key the evaluator understands")
    return make(args)
