"""RequestAuthentication (security.istio.io v1beta1 and v1): which JWTs a workload accepts.

Fields: istio/api ``security/v1beta1/request_authentication.proto`` and the CRD schema. Rules:
istio/istio ``pkg/config/validation/validation.go`` ``ValidateRequestAuthentication`` /
``validateJwtRule``, ``pkg/config/security/security.go`` ``ParseJwksURI``, and the CRD's CEL rules
(only one of jwks / jwksUri; jwksUri scheme http or https; timeout at least 1ms).

Semantics a consumer needs (API docs, ``JWTRule``): a request with an invalid token is rejected; a
request without one passes with no identity. With no ``fromHeaders``/``fromParams``/``fromCookies``
the token is read from ``Authorization: Bearer <token>`` and the ``access_token`` query parameter.
``timeout`` ``None`` means Istio's default of 5s. Several rules may name the same issuer (Istio
merges them; a token is accepted if any rule accepts it), so duplicates are not an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, field
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.security.annotations import dry_run_findings
from pilotfish.config.security.targeting import PolicyTargetReference, targeting
from pilotfish.config.selector import WorkloadSelector
from pilotfish.limits import loads_json

DEFAULT_JWKS_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class JWTHeader(Message):
    """A header carrying the token; ``prefix`` (e.g. ``"Bearer "``) is stripped before verifying."""

    name: str = field(required=True)
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ClaimToHeader(Message):
    """Copy a claim (nested with ``.``) of a verified token into a request header."""

    header: str = field(required=True)
    claim: str = field(required=True)


@dataclass(frozen=True, slots=True)
class JWTRule(Message):
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: str = ""
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    space_delimited_claims: tuple[str, ...] = ()
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class RequestAuthenticationSpec(Message):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: RequestAuthenticationSpec = resource.spec
    yield from targeting(spec.selector, spec.target_ref, spec.target_refs)
    yield from dry_run_findings(resource)
    if len(spec.jwt_rules) > 4096:
        yield Finding(("jwtRules",), f"at most 4096 jwtRules are allowed; got {len(spec.jwt_rules)}")
    for i, rule in enumerate(spec.jwt_rules):
        yield from validate_jwt_rule(rule, ("jwtRules", i))


def validate_jwt_rule(rule: JWTRule, path: Path) -> Iterator[Finding]:
    if not rule.issuer and not rule.jwks_uri:
        yield Finding((*path, "issuer"), "issuer or jwksUri must be non-empty string")
    if rule.jwks and rule.jwks_uri:
        yield Finding((*path, "jwks"), "only one of jwks or jwksUri can be set")
    yield from checks.findings(
        ((*path, "jwksUri"), jwks_uri(rule.jwks_uri) if rule.jwks_uri else None),
        ((*path, "jwks"), jwks(rule.jwks) if rule.jwks else None),
        ((*path, "timeout"), checks.duration(rule.timeout) if rule.timeout is not None else None),
        ((*path, "outputPayloadToHeader"), _header_name(rule.output_payload_to_header)),
    )
    yield from _non_empty(rule.audiences, (*path, "audiences"), "audience must be non-empty string")
    yield from _non_empty(rule.from_params, (*path, "fromParams"), "location query must be non-empty string")
    yield from _non_empty(rule.from_cookies, (*path, "fromCookies"), "cookie name must be non-empty string")
    yield from _non_empty(
        rule.space_delimited_claims, (*path, "spaceDelimitedClaims"), "claim must be non-empty"
    )
    if len(rule.space_delimited_claims) > 64:
        yield Finding((*path, "spaceDelimitedClaims"), "at most 64 spaceDelimitedClaims are allowed")
    for j, header in enumerate(rule.from_headers):
        if not header.name:
            yield Finding((*path, "fromHeaders", j, "name"), "location header name must be non-empty string")
    for j, output in enumerate(rule.output_claim_to_headers):
        yield from _claim_to_header(output, (*path, "outputClaimToHeaders", j))
    if rule.jwks and _has_private_key(rule.jwks):
        yield Finding(
            (*path, "jwks"), "jwks contains private key material; only public keys belong here", "warning"
        )


def _non_empty(values: tuple[str, ...], path: Path, message: str) -> Iterator[Finding]:
    for k, value in enumerate(values):
        if not value:
            yield Finding((*path, k), message)


def _claim_to_header(output: ClaimToHeader, path: Path) -> Iterator[Finding]:
    if not output.claim:
        yield Finding((*path, "claim"), "outputClaimToHeaders claim must be non-empty string")
    problem = checks.http_header_name(output.header)
    if problem:
        yield Finding((*path, "header"), problem)


def _header_name(name: str) -> str | None:
    """``outputPayloadToHeader``: a header name when set."""
    return checks.http_header_name(name) if name else None


def jwks_uri(uri: str) -> str | None:
    """``security.ParseJwksURI`` + the CRD rules: an http(s) URL with a host and, if any, a numeric
    port; at most 2048 characters."""
    if len(uri) > 2048:
        return "jwksUri must be at most 2048 characters"
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        return f"invalid jwksUri {uri!r}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"URI scheme {parts.scheme!r} is not supported (url must have scheme http:// or https://)"
    return None if parts.hostname else f"jwksUri {uri!r} has no host"


def jwks(text: str) -> str | None:
    """An inline JSON Web Key Set (or a single JWK), as Istio's ``jwk.Parse`` requires."""
    try:
        data = loads_json(text, "the JWKS")
    except ValueError as exc:
        return f"jwks parse error: {exc}"
    keys = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and isinstance(k.get("kty"), str) for k in keys
    ):
        return 'jwks parse error: expected a JWK set {"keys": [...]} whose keys each have a "kty"'
    return None


def _has_private_key(text: str) -> bool:
    """Istio ``warnPrivateJwksKeys``: a key with a private part (``d``) in the inline set."""
    try:
        data = loads_json(text, "the JWKS")
    except ValueError:
        return False
    keys = data.get("keys", [data]) if isinstance(data, dict) else []
    return isinstance(keys, list) and any(isinstance(k, dict) and "d" in k for k in keys)
