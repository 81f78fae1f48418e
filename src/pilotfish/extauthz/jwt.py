"""JWT authentication with Istio RequestAuthentication semantics (Envoy ``jwt_authn``, as istiod sets it).

Theory of operation. Every jwtRule of every RequestAuthentication in scope becomes one
``JwtProvider`` (``compile_providers``; rules merged and sorted by issuer, istio
``pilot/pkg/security/authn/policy_applier.go:70-95``). Istio builds the Envoy requirement
``requires_any: [P1 … PN, requires_all: [any(Pi, allow_missing) …]]`` (``policy_applier.go``
``convertToEnvoyJwtConfig``), so for each provider we compute one outcome:

* **missing**: no token in any of the provider's locations;
* **ok**: every token found there verifies (Envoy ``authenticator.cc``: "If a request has
  multiple tokens, all of them must be valid");
* **failed**: some token does not.

The request passes when some provider is ok, or no provider failed (every one ok or missing);
so no token at all passes with no identity (API-RA). Otherwise it fails: 403 when the failure is
``JwtAudienceNotAllowed``, else 401 (Envoy ``filter.cc`` ``onComplete``), with
``WWW-Authenticate: Bearer realm="…", error="invalid_token"``. When several providers failed we
report the most specific failure: one from a provider whose issuer matched the token, before
``JwtUnknownIssuer`` (derived; Envoy's ``requires_any`` error choice is not specified).

Per token (``verify_token``), in jwt_verify_lib / ``authenticator.cc`` order: parse, issuer,
time (``exp``/``nbf`` with 60 s skew, ``iat`` not compared), audiences (any match, ``http(s)://``
and one trailing ``/`` stripped on both sides, JVL ``check_audience.cc``; none configured → no
check), then the signature against the keys whose ``kid`` and ``alg`` fit (JVL ``verify.cc``).

``strict=True`` applies RFC 8725/7515 MUSTs where Envoy is lenient (documented in ``STRICT``):
the JWK must name the token's ``alg``; a JWK ``use`` must be ``sig``; a ``crit`` header is
rejected; ``exp`` is required; the signature is checked before any claim is trusted, so a forged
token with a wrong audience is 401, never 403. ``alg: none`` and algorithms Envoy does not
implement are rejected in both modes.

``authenticate`` is pure (keys and ``now`` are arguments). ``Authenticator`` is the async shell:
it gets keys from a ``JwksCache``, refetches once on an unknown ``kid`` (rate-limited by the
cache), and memoizes verified tokens in a ``TokenCache``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt

from pilotfish.config.resource import Resource
from pilotfish.config.security.request_authentication import JWTRule
from pilotfish.config.security.targeting import resource_in_scope
from pilotfish.extauthz.attributes import HttpRequest
from pilotfish.extauthz.jwks import Jwk, JwksCache, KeySet, TokenCache, parse_jwks
from pilotfish.limits import loads_json

Claims = Mapping[str, Any]
CLOCK_SKEW = 60.0  # Envoy jwt_authn clock_skew_seconds default (authenticator.cc kClockSkewInSecond)
DEFAULT_SPACE_DELIMITED = frozenset({"scope", "permission"})  # policy_applier.go: always split

# alg → (JWK kty, JWK crv or "" for any): what Envoy's jwt_authn implements (jwt_authn_filter.rst).
ALGORITHMS: Mapping[str, tuple[str, str]] = {
    **{f"RS{n}": ("RSA", "") for n in (256, 384, 512)},
    **{f"PS{n}": ("RSA", "") for n in (256, 384, 512)},
    **{f"HS{n}": ("oct", "") for n in (256, 384, 512)},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", ""),
}

# jwt_verify_lib ``status.cc`` names and messages (the 401/403 body Envoy sends).
MESSAGES: Mapping[str, str] = {
    "JwtBadFormat": "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    "JwtHeaderParseError": "Jwt header is an invalid Base64url encoded JSON",
    "JwtHeaderBadAlg": "Jwt header [alg] field is required and must be a string",
    "JwtHeaderNotImplementedAlg": "Jwt header [alg] is not supported",
    "JwtHeaderBadKid": "Jwt header [kid] field is not a string",
    "JwtPayloadParseError": "Jwt payload is an invalid Base64url encoded JSON",
    "JwtPayloadBadClaim": "Jwt payload has a claim of the wrong type",
    "JwtUnknownIssuer": "Jwt issuer is not configured",
    "JwtExpired": "Jwt is expired",
    "JwtNotYetValid": "Jwt not yet valid",
    "JwtAudienceNotAllowed": "Audiences in Jwt are not allowed",
    "JwksKidAlgMismatch": "Jwks doesn't have key to match kid or alg from Jwt",
    "JwtVerificationFail": "Jwt verification fails",
    "JwksFetchFail": "Jwks remote fetch is failed",
    "JwtCriticalHeader": "Jwt header [crit] is not supported (strict mode)",
    "JwtMissingExp": "Jwt payload [exp] is required (strict mode)",
}
STRICT = (
    "JWK must carry alg equal to the token alg (RFC 8725 §3.1); JVL accepts a JWK without alg",
    "JWK use, when present, must be sig (RFC 7517 §4.2)",
    "a crit header is rejected (RFC 7515 §4.1.11); JVL ignores it",
    "exp is required (Envoy require_expiration); Envoy accepts tokens without exp",
    "the signature is verified before issuer/time/audience, so a forged token is 401 never 403",
)


# ---- providers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderLocation:
    name: str  # lower-case
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Locations:
    headers: tuple[HeaderLocation, ...] = ()
    params: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()


# API-RA / Envoy extractor.cc: used only when a rule sets none of fromHeaders/fromParams/fromCookies.
DEFAULT_LOCATIONS = Locations((HeaderLocation("authorization", "Bearer "),), ("access_token",))


@dataclass(frozen=True, slots=True)
class JwtProvider:
    """One jwtRule, compiled. ``jwks`` holds inline keys; otherwise ``key_uri`` is fetched."""

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: KeySet | None = None
    locations: Locations = DEFAULT_LOCATIONS
    output_payload_to_header: str = ""
    claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, dotted claim)
    forward_original_token: bool = False
    space_delimited_claims: frozenset[str] = DEFAULT_SPACE_DELIMITED
    origin: str = ""  # "ns/name#i", for messages

    @property
    def key_uri(self) -> str:
        """Where the keys come from: ``jwksUri``, else OpenID discovery on the issuer (API-RA)."""
        if self.jwks_uri:
            return self.jwks_uri
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def output_headers(self) -> tuple[str, ...]:
        named = (self.output_payload_to_header, *(h for h, _ in self.claim_to_headers))
        return tuple(h.lower() for h in named if h)


def provider_from_rule(rule: JWTRule, origin: str = "") -> JwtProvider:
    custom = rule.from_headers or rule.from_params or rule.from_cookies
    locations = (
        Locations(
            tuple(HeaderLocation(h.name.lower(), h.prefix) for h in rule.from_headers),
            rule.from_params,
            rule.from_cookies,
        )
        if custom
        else DEFAULT_LOCATIONS
    )
    return JwtProvider(
        issuer=rule.issuer,
        audiences=rule.audiences,
        jwks_uri=rule.jwks_uri,
        jwks=_inline_keys(rule.jwks) if rule.jwks else None,
        locations=locations,
        output_payload_to_header=rule.output_payload_to_header,
        claim_to_headers=tuple((c.header, c.claim) for c in rule.output_claim_to_headers),
        forward_original_token=rule.forward_original_token,
        space_delimited_claims=DEFAULT_SPACE_DELIMITED | frozenset(rule.space_delimited_claims),
        origin=origin,
    )


def _inline_keys(text: str) -> KeySet:
    """Inline keys; an unusable set is empty, so its tokens fail (validation rejects it anyway)."""
    try:
        return parse_jwks(text)
    except ValueError:
        return KeySet(())


def compile_providers(
    resources: Iterable[Resource[Any]], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> tuple[JwtProvider, ...]:
    """The providers of every RequestAuthentication that applies to the workload, sorted by issuer."""
    providers = [
        provider_from_rule(rule, f"{r.namespace}/{r.name}#{i}")
        for r in resources
        if r.kind == "RequestAuthentication" and resource_in_scope(r, namespace, labels, root_namespace)
        for i, rule in enumerate(r.spec.jwt_rules)
    ]
    return tuple(sorted(providers, key=lambda p: p.issuer))


# ---- token extraction (Envoy extractor.cc) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoundToken:
    raw: str
    header: str | None = None  # the header it came from; None for a param or cookie


# RFC 4648 §5 base64url characters plus ".": where Envoy starts reading a token after a prefix.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _after_prefix(value: str, prefix: str) -> str | None:
    """Envoy ``extractor.cc``: without a prefix the whole value is the token; otherwise the
    prefix is searched anywhere in the value, case-sensitively (a value without it is skipped),
    and the token runs from the first base64url/``.`` character after it to the **end** of the
    value (``extractJWT``; trailing text makes the token invalid). With no such character the
    whole value is the token."""
    if not prefix:
        return value
    at = value.find(prefix)
    if at < 0:
        return None
    start = next((i for i in range(at + len(prefix), len(value)) if value[i] in _TOKEN_CHARS), None)
    return value if start is None else value[start:]


def extract(locations: Locations, request: HttpRequest) -> tuple[FoundToken, ...]:
    """Every token in the provider's locations, as Envoy's extractor finds them: a header or
    parameter that is present yields a token even when empty (it then fails verification)."""
    found: dict[str, FoundToken] = {}
    for loc in locations.headers:
        for value in request.headers.get(loc.name, ()):
            raw = _after_prefix(value, loc.prefix)
            if raw is not None:
                found.setdefault(raw, FoundToken(raw, loc.name))
    for name in locations.params:
        raw = request.query_param(name)
        if raw is not None:
            found.setdefault(raw, FoundToken(raw))
    for name in locations.cookies:
        raw = request.cookie(name)
        if raw is not None:
            found.setdefault(raw, FoundToken(raw))
    return tuple(found.values())


def is_cors_preflight(request: HttpRequest) -> bool:
    """Istio sets ``bypass_cors_preflight``: OPTIONS with non-empty Origin and
    Access-Control-Request-Method skips JWT checks (Envoy ``filter.cc`` ``isCorsPreflightRequest``)."""
    return (
        request.method == "OPTIONS"
        and bool(request.header("origin"))
        and bool(request.header("access-control-request-method"))
    )


# ---- one token ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    unknown_kid: bool = False  # the set lacks the token's kid: a refetch may help

    @property
    def message(self) -> str:
        return MESSAGES.get(self.code, self.code)

    @property
    def http_status(self) -> int:
        return 403 if self.code == "JwtAudienceNotAllowed" else 401


@dataclass(frozen=True, slots=True)
class Verified:
    claims: Claims  # the payload with space-delimited claims split (Envoy payload_in_metadata)
    payload: Claims  # the payload as sent
    payload_segment: str  # the base64url payload, for outputPayloadToHeader
    expires_at: float | None  # exp + skew: when caches drop it (a re-check may still pass within that second)


@dataclass(frozen=True, slots=True)
class ParsedJwt:
    header: Claims
    payload: Claims
    signing_input: bytes
    signature: bytes
    payload_segment: str

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else ""


def _b64(segment: str) -> bytes:
    if not all(ch in _TOKEN_CHARS and ch != "." for ch in segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str) -> dict[str, Any] | None:
    """The JSON object a segment encodes, or None. Nesting is bounded (``limits.MAX_NESTING``, the
    depth protobuf's JSON parser — Envoy's — accepts): a payload nested 10,000 levels deep is a
    parse failure (401), never a ``RecursionError`` in the Check server."""
    try:
        value = loads_json(_b64(segment), "the JWT segment")
    except (ValueError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


def parse_jwt(raw: str) -> ParsedJwt | Failure:
    parts = raw.split(".")
    if len(parts) != 3:
        return Failure("JwtBadFormat")
    header, payload = _json_object(parts[0]), _json_object(parts[1])
    if header is None:
        return Failure("JwtHeaderParseError")
    if not isinstance(header.get("alg"), str):
        return Failure("JwtHeaderBadAlg")
    if header["alg"] not in ALGORITHMS:
        return Failure("JwtHeaderNotImplementedAlg")
    if "kid" in header and not isinstance(header["kid"], str):
        return Failure("JwtHeaderBadKid")
    if payload is None:
        return Failure("JwtPayloadParseError")
    if not _claim_types_ok(payload):
        return Failure("JwtPayloadBadClaim")
    try:
        signature = _b64(parts[2])
    except (ValueError, binascii.Error):
        return Failure("JwtBadFormat")
    return ParsedJwt(header, payload, f"{parts[0]}.{parts[1]}".encode(), signature, parts[1])


INT64 = (-(2**63), 2**63 - 1)


def _is_time(value: Any) -> bool:
    """JVL ``StructUtils::GetInt64``: a JSON number within int64; fractions are truncated
    (``claim_time``), so ``exp: 1.5e9 + 0.5`` is fine and ``exp: 1e20`` is a bad claim."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and INT64[0] <= value <= INT64[1]


def claim_time(payload: Claims, name: str) -> int:
    """A time claim as JVL reads it (C++ ``static_cast<int64_t>``: toward zero); 0 when absent."""
    return int(payload.get(name, 0))


def _claim_types_ok(payload: Claims) -> bool:
    """jwt_verify_lib ``jwt.cc``: iss/sub/jti strings; aud a string or a list of strings; times numbers."""
    strings = all(isinstance(payload[c], str) for c in ("iss", "sub", "jti") if c in payload)
    times = all(_is_time(payload[c]) for c in ("exp", "nbf", "iat") if c in payload)
    return strings and times and audiences_of(payload) is not None


def audiences_of(payload: Claims) -> tuple[str, ...] | None:
    """``aud`` as a tuple; ``None`` when it is neither a string nor a list of strings."""
    aud = payload.get("aud")
    if aud is None:
        return ()
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return tuple(aud)
    return None


def _sanitize_audience(aud: str) -> str:
    """JVL ``check_audience.cc`` ``sanitizeAudience``: drop ``http(s)://`` and one trailing ``/``."""
    for scheme in ("http://", "https://"):
        if aud.startswith(scheme):
            aud = aud[len(scheme) :]
            break
    return aud[:-1] if aud.endswith("/") else aud


def audience_allowed(configured: tuple[str, ...], token: tuple[str, ...]) -> bool:
    if not configured:
        return True  # "If not specified, will not check audiences" (Envoy config.proto)
    allowed = {_sanitize_audience(a) for a in configured}
    return any(_sanitize_audience(a) in allowed for a in token)


def _time_failure(payload: Claims, now: float) -> Failure | None:
    """JVL ``verifyTimeConstraint`` on whole seconds (Envoy passes ``absl::ToUnixSeconds``):
    not yet valid if now + skew < nbf; expired if exp is set (non-zero) and now > exp + skew."""
    seconds = math.floor(now)
    if seconds + CLOCK_SKEW < claim_time(payload, "nbf"):
        return Failure("JwtNotYetValid")
    exp = claim_time(payload, "exp")
    if exp and seconds > exp + CLOCK_SKEW:
        return Failure("JwtExpired")
    return None


def _key_fits(key: Jwk, token: ParsedJwt, strict: bool) -> bool:
    """JVL ``verify.cc``: kty (and EC curve) fit the alg; a kid on both sides must agree; a JWK
    alg must equal the token's (strict: the JWK must have one); strict: ``use`` is ``sig``."""
    kty, crv = ALGORITHMS[token.alg]
    if key.kty != kty or (crv and key.crv and key.crv != crv):
        return False
    if token.kid and key.kid and key.kid != token.kid:
        return False
    if strict:
        return key.alg == token.alg and key.use in ("", "sig")
    return key.alg in ("", token.alg)


# One verification step: a failure, or None to go on.
Step = Callable[[JwtProvider, ParsedJwt, "KeySet | None", float, bool], "Failure | None"]


def _signature_step(
    provider: JwtProvider, token: ParsedJwt, keys: KeySet | None, now: float, strict: bool
) -> Failure | None:
    if not keys or not keys.keys:
        return Failure("JwksFetchFail")
    candidates = [k for k in keys.keys if _key_fits(k, token, strict)]
    if not candidates:
        return Failure("JwksKidAlgMismatch", unknown_kid=bool(token.kid) and token.kid not in keys.kids())
    algorithm = pyjwt.get_algorithm_by_name(token.alg)
    for key in candidates:
        try:
            if algorithm.verify(token.signing_input, key.key, token.signature):
                return None
        except Exception:  # a key of the wrong shape for this algorithm  # noqa: BLE001, S112
            continue
    return Failure("JwtVerificationFail")


def _claims_step(
    provider: JwtProvider, token: ParsedJwt, keys: KeySet | None, now: float, strict: bool
) -> Failure | None:
    """Issuer, then exp/nbf, then audiences (Envoy ``authenticator.cc`` ``startVerify``)."""
    if provider.issuer and token.payload.get("iss") != provider.issuer:
        return Failure("JwtUnknownIssuer")
    time_failure = _time_failure(token.payload, now)
    if time_failure:
        return time_failure
    if not audience_allowed(provider.audiences, audiences_of(token.payload) or ()):
        return Failure("JwtAudienceNotAllowed")
    return None


def _strict_step(
    provider: JwtProvider, token: ParsedJwt, keys: KeySet | None, now: float, strict: bool
) -> Failure | None:
    if "crit" in token.header:
        return Failure("JwtCriticalHeader")
    return None if "exp" in token.payload else Failure("JwtMissingExp")


# Envoy checks claims before fetching keys, so a forged token with a wrong audience is a 403;
# strict mode trusts no claim before the signature.
ENVOY_STEPS: tuple[Step, ...] = (_claims_step, _signature_step)
STRICT_STEPS: tuple[Step, ...] = (_strict_step, _signature_step, _claims_step)


def verify_token(
    provider: JwtProvider, raw: str, keys: KeySet | None, now: float, strict: bool = False
) -> Verified | Failure:
    """Verify one token for one provider. Pure: ``keys`` and ``now`` are given."""
    token = parse_jwt(raw)
    if isinstance(token, Failure):
        return token
    for step in STRICT_STEPS if strict else ENVOY_STEPS:
        failure = step(provider, token, keys, now, strict)
        if failure:
            return failure
    exp = claim_time(token.payload, "exp")
    return Verified(
        claims=normalize_claims(token.payload, provider.space_delimited_claims),
        payload=token.payload,
        payload_segment=token.payload_segment,
        expires_at=float(exp + CLOCK_SKEW) if exp else None,
    )


def normalize_claims(payload: Claims, space_delimited: frozenset[str]) -> Claims:
    """Envoy ``normalize_payload_in_metadata``: split space-delimited string claims into lists."""
    return {
        name: value.split(" ") if name in space_delimited and isinstance(value, str) else value
        for name, value in payload.items()
    }


# ---- one request ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthnResult:
    """What authentication decided. ``status`` 200 means pass (with or without identity)."""

    status: int = 200
    reason: str = "no JWT"
    claims: Claims | None = None  # the verified payload giving the request principal
    headers_to_set: tuple[tuple[str, str], ...] = ()
    headers_to_remove: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()  # sent to the client on failure
    unknown_kid_uris: frozenset[str] = field(default_factory=frozenset)
    valid_until: float | None = None  # the earliest expiry (exp + skew) of the tokens it accepted

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def principal(self) -> str | None:
        """``iss/sub`` (T-JWT), when the token has both."""
        if not self.claims:
            return None
        iss, sub = self.claims.get("iss"), self.claims.get("sub")
        return f"{iss}/{sub}" if isinstance(iss, str) and isinstance(sub, str) else None


NO_AUTHN = AuthnResult()

Verify = Callable[[JwtProvider, str, KeySet | None, float, bool], "Verified | Failure"]


@dataclass(frozen=True, slots=True)
class _Outcome:
    provider: JwtProvider
    tokens: tuple[FoundToken, ...]
    verified: tuple[Verified, ...] = ()
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return bool(self.tokens) and self.failure is None


def keys_for(provider: JwtProvider, keys: Mapping[str, KeySet | None]) -> KeySet | None:
    return provider.jwks if provider.jwks is not None else keys.get(provider.key_uri)


def _outcome(
    provider: JwtProvider,
    request: HttpRequest,
    keys: Mapping[str, KeySet | None],
    now: float,
    strict: bool,
    verify: Verify,
) -> _Outcome:
    tokens = extract(provider.locations, request)
    results = [verify(provider, t.raw, keys_for(provider, keys), now, strict) for t in tokens]
    failure = next((r for r in results if isinstance(r, Failure)), None)
    verified = tuple(r for r in results if isinstance(r, Verified))
    return _Outcome(provider, tokens, verified, failure)


def authenticate(
    providers: Iterable[JwtProvider],
    request: HttpRequest,
    keys: Mapping[str, KeySet | None],
    now: float,
    *,
    strict: bool = False,
    verify: Verify = verify_token,
) -> AuthnResult:
    """Authenticate one request against the workload's providers. Pure."""
    providers = tuple(providers)
    if not providers:
        return AuthnResult(reason="no RequestAuthentication")
    if is_cors_preflight(request):
        return AuthnResult(reason="CORS preflight: JWT check bypassed")
    outcomes = [_outcome(p, request, keys, now, strict, verify) for p in providers]
    sanitized = tuple(dict.fromkeys(h for p in providers for h in p.output_headers))
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if o.failure]
    if ok or not failed:
        return _passed(ok, sanitized)
    return _failed(failed, request)


def _passed(ok: list[_Outcome], sanitized: tuple[str, ...]) -> AuthnResult:
    if not ok:
        return AuthnResult(reason="no JWT", headers_to_remove=sanitized)
    to_set = dict(kv for o in ok for v in o.verified for kv in _output_headers(o.provider, v))
    dropped = [t.header for o in ok if not o.provider.forward_original_token for t in o.tokens if t.header]
    remove = tuple(dict.fromkeys(h for h in (*sanitized, *dropped) if h not in to_set))
    expiries = [v.expires_at for o in ok for v in o.verified if v.expires_at is not None]
    return AuthnResult(
        reason=f"JWT verified by {ok[0].provider.origin or ok[0].provider.issuer}",
        claims=ok[0].verified[0].claims,
        headers_to_set=tuple(to_set.items()),
        headers_to_remove=remove,
        valid_until=min(expiries, default=None),
    )


def _failed(failed: list[_Outcome], request: HttpRequest) -> AuthnResult:
    specific = [o for o in failed if o.failure and o.failure.code != "JwtUnknownIssuer"]
    failure = (specific or failed)[0].failure
    assert failure is not None  # the outcomes are failures
    unknown = frozenset(
        o.provider.key_uri for o in failed if o.failure and o.failure.unknown_kid and o.provider.jwks is None
    )
    challenge = f'Bearer realm="{_realm(request)}", error="invalid_token"'
    return AuthnResult(
        status=failure.http_status,
        reason=failure.message,
        response_headers=(("www-authenticate", challenge),),
        unknown_kid_uris=unknown,
    )


def _realm(request: HttpRequest) -> str:
    """Envoy ``buildOriginalUri``: scheme://host/path. We drop the query so a token sent as
    ``?access_token=`` is never echoed back in the challenge."""
    scheme = request.header("x-forwarded-proto") or "http"
    return f"{scheme}://{request.host}{request.url_path}"


def _output_headers(provider: JwtProvider, verified: Verified) -> Iterator[tuple[str, str]]:
    if provider.output_payload_to_header:
        yield provider.output_payload_to_header.lower(), verified.payload_segment
    for header, claim in provider.claim_to_headers:
        value = claim_header_value(verified.payload, claim)
        if value is not None:
            yield header.lower(), value


def claim_header_value(payload: Claims, dotted: str) -> str | None:
    """Envoy ``addJWTClaimToHeader``: a nested (``.``) claim of type string, number or bool."""
    value: Any = payload
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6f}"  # std::to_string(double)
    return value if isinstance(value, str) else None


# ---- the async shell ------------------------------------------------------------------------------


class Authenticator:
    """Fetch keys through a ``JwksCache`` and authenticate; memoize verified tokens."""

    def __init__(
        self, cache: JwksCache, *, strict: bool = False, token_cache: TokenCache[Verified] | None = None
    ) -> None:
        self.cache, self.strict = cache, strict
        self.tokens: TokenCache[Verified] = token_cache if token_cache is not None else TokenCache()

    def _verify(
        self, provider: JwtProvider, raw: str, keys: KeySet | None, now: float, strict: bool
    ) -> Verified | Failure:
        hit = self.tokens.get(provider, raw, now)
        if hit is not None:
            return hit
        result = verify_token(provider, raw, keys, now, strict)
        if isinstance(result, Verified):
            self.tokens.put(provider, raw, result, result.expires_at)
        return result

    async def _keys(
        self, providers: tuple[JwtProvider, ...], request: HttpRequest, now: float
    ) -> dict[str, KeySet | None]:
        """Keys only for remote providers that have a token to check: no token, no fetch."""
        uris = dict.fromkeys(p.key_uri for p in providers if p.jwks is None and extract(p.locations, request))
        return {uri: await self.cache.keys(uri, now) for uri in uris}

    async def authenticate(
        self, providers: Iterable[JwtProvider], request: HttpRequest, now: float
    ) -> AuthnResult:
        providers = tuple(providers)
        keys = await self._keys(providers, request, now)
        result = authenticate(providers, request, keys, now, strict=self.strict, verify=self._verify)
        refetched = [
            u for u in sorted(result.unknown_kid_uris) if await self.cache.refetch_for_unknown_kid(u, now)
        ]
        if not refetched:
            return result
        keys.update({uri: self.cache.current(uri) for uri in refetched})
        return authenticate(providers, request, keys, now, strict=self.strict, verify=self._verify)
