"""JWT authentication with real RS256/ES256 keys: Envoy jwt_authn outcomes as Istio configures it
(reference istio-security.md §3), and the strict mode."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from authz_support import NOW, SigningKey, attrs, compiled, jwks_text, load, policy_doc

from pilotfish.extauthz.evaluate import evaluate
from pilotfish.extauthz.jwks import JwksCache, KeySet, TokenCache, parse_jwks
from pilotfish.extauthz.jwt import (
    Authenticator,
    AuthnResult,
    JwtProvider,
    Verified,
    audience_allowed,
    authenticate,
    claim_header_value,
    compile_providers,
    verify_token,
)

ISS = "https://issuer.example.com"
RSA = SigningKey("rsa", "rsa-1")
EC = SigningKey("ec", "ec-1")
GOOD = {"iss": ISS, "sub": "alice", "exp": int(NOW) + 3600, "iat": int(NOW)}


def request_authn(*rules: dict[str, Any], name: str = "ra", namespace: str = "foo") -> str:
    return policy_doc({"jwtRules": list(rules)}, name=name, namespace=namespace, kind="RequestAuthentication")


def rule(**kw: Any) -> dict[str, Any]:
    return {"issuer": ISS, "jwks": jwks_text(RSA, EC), **kw}


def providers(*docs: str) -> tuple[JwtProvider, ...]:
    return compile_providers(load(*docs), "foo", {"app": "httpbin"}, "istio-system")


def authn(
    provs: tuple[JwtProvider, ...], *, strict: bool = False, now: float = NOW, **kw: Any
) -> AuthnResult:
    return authenticate(provs, attrs(**kw).request, {}, now, strict=strict)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


ONE = providers(request_authn(rule()))


# ---- outcomes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
def test_valid_token_gives_the_request_principal(key):
    result = authn(ONE, headers=bearer(key.sign(GOOD)))
    assert result.ok and result.principal == f"{ISS}/alice"
    assert result.headers_to_remove == ("authorization",)  # forwardOriginalToken defaults to false


def test_forward_original_token_keeps_the_header():
    result = authn(providers(request_authn(rule(forwardOriginalToken=True))), headers=bearer(RSA.sign(GOOD)))
    assert result.ok and result.headers_to_remove == ()


def test_no_token_passes_without_identity():
    result = authn(ONE)
    assert result.ok and result.claims is None and result.principal is None


def test_no_request_authentication_passes():
    assert authn((), headers=bearer("garbage")).ok


def test_expired_token_is_401_with_challenge():
    token = RSA.sign({**GOOD, "exp": int(NOW) - 61})
    result = authn(ONE, headers=bearer(token), host="httpbin.foo", path="/get?access=1")
    assert (result.status, result.reason) == (401, "Jwt is expired")
    assert result.response_headers == (
        ("www-authenticate", 'Bearer realm="http://httpbin.foo/get", error="invalid_token"'),
    )


def test_clock_skew_is_60_seconds():
    assert authn(ONE, headers=bearer(RSA.sign({**GOOD, "exp": int(NOW) - 59}))).ok
    assert authn(ONE, headers=bearer(RSA.sign({**GOOD, "nbf": int(NOW) + 59}))).ok
    late = authn(ONE, headers=bearer(RSA.sign({**GOOD, "nbf": int(NOW) + 61})))
    assert (late.status, late.reason) == (401, "Jwt not yet valid")


def test_wrong_issuer_is_401():
    result = authn(ONE, headers=bearer(RSA.sign({**GOOD, "iss": "https://evil.example.com"})))
    assert (result.status, result.reason) == (401, "Jwt issuer is not configured")


def test_tampered_payload_is_401():
    header, _payload, signature = RSA.sign(GOOD).split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**GOOD, "sub": "admin"}).encode()).rstrip(b"=").decode()
    result = authn(ONE, headers=bearer(f"{header}.{forged}.{signature}"))
    assert (result.status, result.reason) == (401, "Jwt verification fails")


def test_token_signed_by_a_key_not_in_the_set_is_401():
    stranger = SigningKey("rsa", "rsa-1")  # same kid, other key
    assert authn(ONE, headers=bearer(stranger.sign(GOOD))).status == 401


@pytest.mark.parametrize("token", ["invalidToken", "a.b.c", "a.b", "..", "eyJhbGciOiJub25lIn0.e30."])
def test_malformed_token_is_401(token):
    assert authn(ONE, headers=bearer(token)).status == 401


def test_alg_none_is_rejected():
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(GOOD).encode()).rstrip(b"=").decode()
    for strict in (False, True):
        result = authn(ONE, headers=bearer(f"{header}.{payload}."), strict=strict)
        assert (result.status, result.reason) == (401, "Jwt header [alg] is not supported")


@pytest.mark.parametrize("claims", [{**GOOD, "exp": "tomorrow"}, {**GOOD, "aud": 5}, {**GOOD, "iss": 7}])
def test_claims_of_the_wrong_type_are_401(claims):
    assert authn(ONE, headers=bearer(RSA.sign_raw(claims))).status == 401


# ---- audiences -----------------------------------------------------------------------------------

AUD = providers(request_authn(rule(audiences=["api.example.com"])))


def test_disallowed_audience_is_403():
    result = authn(AUD, headers=bearer(RSA.sign({**GOOD, "aud": "other"})))
    assert (result.status, result.reason) == (403, "Audiences in Jwt are not allowed")
    assert evaluate((), attrs(), result).status == 403


def test_missing_audience_with_audiences_configured_is_403():
    assert authn(AUD, headers=bearer(RSA.sign(GOOD))).status == 403


def test_audience_any_of_list_and_scheme_insensitive():
    assert authn(AUD, headers=bearer(RSA.sign({**GOOD, "aud": ["x", "https://api.example.com/"]}))).ok
    assert audience_allowed(("https://a.com/",), ("a.com",))
    assert not audience_allowed(("a.com",), ("b.com",))
    assert audience_allowed((), ("anything",))


def test_rules_for_the_same_issuer_are_ored():
    # ISTIO-TEST aud/verify-policies-are-combined: one rule with audiences, one without.
    provs = providers(request_authn(rule(audiences=["api"]), rule()))
    assert authn(provs, headers=bearer(RSA.sign(GOOD))).ok


# ---- locations -----------------------------------------------------------------------------------


def test_access_token_query_param_is_a_default_location():
    result = authn(ONE, path=f"/get?access_token={RSA.sign(GOOD)}")
    assert result.principal == f"{ISS}/alice"
    assert result.headers_to_remove == ()  # params are never removed


def test_bearer_prefix_is_case_sensitive():
    result = authn(ONE, headers={"authorization": f"bearer {RSA.sign({**GOOD, 'exp': 1})}"})
    assert result.ok and result.principal is None  # not read at all: treated as missing


def test_custom_header_with_prefix_replaces_the_defaults():
    provs = providers(request_authn(rule(fromHeaders=[{"name": "X-Jwt", "prefix": "Token "}])))
    token = RSA.sign(GOOD)
    assert authn(provs, headers={"x-jwt": f"Token {token}"}).principal == f"{ISS}/alice"
    assert (
        authn(provs, headers={"x-jwt": f"Other; Token {token}"}).principal == f"{ISS}/alice"
    )  # found anywhere
    assert authn(provs, headers={"x-jwt": token}).principal is None  # no prefix: skipped
    assert authn(provs, headers=bearer(RSA.sign({**GOOD, "exp": 1}))).ok  # Authorization no longer read


def test_from_params_and_cookies():
    provs = providers(request_authn(rule(fromParams=["token"], fromCookies=["session"])))
    token = RSA.sign(GOOD)
    assert authn(provs, path=f"/x?token={token}").principal == f"{ISS}/alice"
    assert authn(provs, headers={"cookie": f"a=1; session={token}"}).principal == f"{ISS}/alice"
    assert authn(provs, path=f"/x?access_token={token}").principal is None


def test_every_token_must_be_valid():
    # ISTIO-TEST headers-params/invalid-token-set: one good and one expired token → 401.
    provs = providers(request_authn(rule(fromParams=["token", "secondary_token"])))
    good, expired = RSA.sign(GOOD), RSA.sign({**GOOD, "sub": "bob", "exp": 1})
    assert authn(provs, path=f"/x?token={good}&secondary_token={expired}").status == 401
    assert authn(provs, path=f"/x?token={good}&secondary_token={good}").ok


def test_several_issuers():
    other = SigningKey("ec", "other-1")
    provs = providers(
        request_authn(rule(), {"issuer": "https://other.example.com", "jwks": jwks_text(other)}, name="ra")
    )
    token = other.sign({**GOOD, "iss": "https://other.example.com"})
    assert authn(provs, headers=bearer(token)).principal == "https://other.example.com/alice"
    assert authn(provs, headers=bearer(RSA.sign(GOOD))).principal == f"{ISS}/alice"
    assert authn(provs, headers=bearer(RSA.sign({**GOOD, "iss": "https://third"}))).status == 401


def test_specific_failure_wins_over_unknown_issuer():
    provs = providers(request_authn(rule(audiences=["api"]), {"issuer": "https://b", "jwks": jwks_text(EC)}))
    assert authn(provs, headers=bearer(RSA.sign({**GOOD, "aud": "nope"}))).status == 403


def test_cors_preflight_bypasses_jwt():
    expired = RSA.sign({**GOOD, "exp": 1})
    preflight = {"origin": "https://a", "access-control-request-method": "GET", **bearer(expired)}
    assert authn(ONE, method="OPTIONS", headers=preflight).ok
    assert authn(ONE, method="OPTIONS", headers=bearer(expired)).status == 401


def test_request_authentication_scope():
    docs = (
        request_authn(rule(), name="root", namespace="istio-system"),
        request_authn({"issuer": "https://b", "jwks": jwks_text(EC)}, name="other-ns", namespace="bar"),
        policy_doc(
            {
                "selector": {"matchLabels": {"app": "nope"}},
                "jwtRules": [{"issuer": "https://c", "jwks": jwks_text(EC)}],
            },
            name="unselected",
            kind="RequestAuthentication",
        ),
    )
    assert [p.issuer for p in providers(*docs)] == [ISS]


# ---- outputs -------------------------------------------------------------------------------------


def test_output_payload_and_claims_to_headers():
    provs = providers(
        request_authn(
            rule(
                outputPayloadToHeader="X-Payload",
                outputClaimToHeaders=[
                    {"header": "X-Iat", "claim": "iat"},
                    {"header": "X-Nested", "claim": "nested.key2"},
                    {"header": "X-Missing", "claim": "nope"},
                ],
            )
        )
    )
    token = RSA.sign({**GOOD, "nested": {"key2": "valueC"}})
    result = authn(provs, headers={**bearer(token), "x-payload": "client-forged"})
    assert dict(result.headers_to_set) == {
        "x-payload": token.split(".")[1],
        "x-iat": str(int(NOW)),
        "x-nested": "valueC",
    }
    assert set(result.headers_to_remove) == {"x-missing", "authorization"}  # client copies sanitized


def test_output_headers_are_sanitized_without_a_token():
    provs = providers(request_authn(rule(outputPayloadToHeader="X-Payload")))
    assert authn(provs, headers={"x-payload": "forged"}).headers_to_remove == ("x-payload",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (2.0, "2"),
        (1.5, "1.500000"),
        ([1], None),
        ({}, None),
    ],
)
def test_claim_header_values(value, expected):
    assert claim_header_value({"a": {"b": value}}, "a.b") == expected


def test_space_delimited_claims_are_split_for_authorization():
    provs = providers(request_authn(rule(spaceDelimitedClaims=["roles"])))
    token = RSA.sign({**GOOD, "scope": "read write", "roles": "admin dev", "other": "a b"})
    result = authn(provs, headers=bearer(token))
    assert result.claims is not None
    assert (result.claims["scope"], result.claims["roles"], result.claims["other"]) == (
        ["read", "write"],
        ["admin", "dev"],
        "a b",
    )
    policy = compiled(
        policy_doc({"rules": [{"when": [{"key": "request.auth.claims[scope]", "values": ["write"]}]}]})
    )
    assert evaluate(policy, attrs(), result).allow


def test_require_jwt_with_allow_policy_end_to_end():
    policy = compiled(policy_doc({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}))
    assert not evaluate(policy, attrs(), authn(ONE)).allow  # no token: 403 from authz
    ok = authn(ONE, headers=bearer(RSA.sign(GOOD)))
    assert evaluate(policy, attrs(), ok).allow
    bad = authn(ONE, headers=bearer("bad"))
    assert evaluate(policy, attrs(), bad).status == 401


# ---- strict mode ---------------------------------------------------------------------------------


def test_strict_requires_the_jwk_alg():
    bare = SigningKey("rsa", "bare", jwk_alg=False)
    provs = providers(request_authn({"issuer": ISS, "jwks": jwks_text(bare)}))
    token = bare.sign(GOOD)
    assert authn(provs, headers=bearer(token)).ok
    assert authn(provs, headers=bearer(token), strict=True).status == 401


def test_jwk_alg_must_match_in_both_modes():
    mismatched = SigningKey("rsa", "m")
    mismatched.jwk["alg"] = "RS512"
    provs = providers(request_authn({"issuer": ISS, "jwks": jwks_text(mismatched)}))
    result = authn(provs, headers=bearer(mismatched.sign(GOOD)))
    assert (result.status, result.reason) == (401, "Jwks doesn't have key to match kid or alg from Jwt")


def test_strict_requires_exp_and_rejects_crit():
    no_exp = RSA.sign({"iss": ISS, "sub": "alice"})
    assert authn(ONE, headers=bearer(no_exp)).ok
    assert (
        authn(ONE, headers=bearer(no_exp), strict=True).reason
        == "Jwt payload [exp] is required (strict mode)"
    )
    crit = RSA.sign(GOOD, crit=["exp"])
    assert authn(ONE, headers=bearer(crit), strict=True).status == 401


def test_strict_checks_the_signature_before_the_audience():
    forged = SigningKey("rsa", "rsa-1").sign({**GOOD, "aud": "other"})
    assert authn(AUD, headers=bearer(forged)).status == 403  # Envoy: audience before signature
    assert authn(AUD, headers=bearer(forged), strict=True).status == 401


# ---- keys from a JwksCache -----------------------------------------------------------------------


class FakeIssuer:
    """An injected fetch serving whatever key set is current; counts calls; can go down."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys, self.calls, self.down = list(keys), 0, False

    async def __call__(self, uri: str) -> str:
        self.calls += 1
        if self.down:
            raise OSError("connection refused")
        return jwks_text(*self.keys)


REMOTE = providers(request_authn({"issuer": ISS, "jwksUri": "https://issuer.example.com/jwks"}))


def run(auth: Authenticator, now: float = NOW, **kw: Any) -> AuthnResult:
    return asyncio.run(auth.authenticate(REMOTE, attrs(**kw).request, now))


def test_no_token_means_no_fetch():
    issuer = FakeIssuer(RSA)
    assert run(Authenticator(JwksCache(issuer))).ok and issuer.calls == 0


def test_unknown_kid_refetches_once_rate_limited():
    issuer = FakeIssuer(RSA)
    auth = Authenticator(JwksCache(issuer))
    assert run(auth, headers=bearer(RSA.sign(GOOD))).ok and issuer.calls == 1
    rotated = SigningKey("ec", "new-kid")
    issuer.keys.append(rotated)
    assert run(auth, now=NOW + 1, headers=bearer(rotated.sign(GOOD))).ok
    assert issuer.calls == 2
    unknown = SigningKey("ec", "never-published")
    for i in range(5):
        assert run(auth, now=NOW + 2 + i, headers=bearer(unknown.sign(GOOD))).status == 401
    assert issuer.calls == 2  # the refetch at NOW + 1 was the one allowed in 30 s
    assert run(auth, now=NOW + 40, headers=bearer(unknown.sign(GOOD))).status == 401
    assert issuer.calls == 3  # the limit has passed: one more refetch


def test_outage_serves_last_good_keys():
    issuer = FakeIssuer(RSA)
    auth = Authenticator(JwksCache(issuer, ttl=60), token_cache=TokenCache(max_entries=0))
    assert run(auth, headers=bearer(RSA.sign(GOOD))).ok
    issuer.down = True
    later = NOW + 3000
    token = RSA.sign({**GOOD, "exp": int(later) + 60})
    assert run(auth, now=later, headers=bearer(token)).ok
    assert issuer.calls == 2  # it tried, failed, and kept the keys


def test_no_keys_is_401_never_allow():
    issuer = FakeIssuer(RSA)
    issuer.down = True
    auth = Authenticator(JwksCache(issuer))
    result = run(auth, headers=bearer(RSA.sign(GOOD)))
    assert (result.status, result.reason) == (401, "Jwks remote fetch is failed")
    allow_all = compiled(policy_doc({"rules": [{}]}))
    decision = evaluate(allow_all, attrs(), result)
    assert (decision.allow, decision.status) == (False, 401)


def test_non_jwks_response_keeps_last_good_keys():
    issuer = FakeIssuer(RSA)
    cache = JwksCache(issuer, ttl=10)
    assert asyncio.run(cache.keys("u", NOW)) is not None

    async def html(uri: str) -> str:
        return "<html>login</html>"

    cache._fetch = html  # swap the peer's behaviour
    keys = asyncio.run(cache.keys("u", NOW + 100))
    assert keys is not None and keys.kids() == {"rsa-1"}


def test_verified_tokens_are_cached_until_exp():
    issuer = FakeIssuer(RSA)
    tokens: TokenCache[Verified] = TokenCache()
    auth = Authenticator(JwksCache(issuer), token_cache=tokens)
    token = RSA.sign({**GOOD, "exp": int(NOW) + 100})
    assert run(auth, headers=bearer(token)).ok and len(tokens) == 1
    assert tokens.get(REMOTE[0], token, NOW + 150) is not None  # exp + 60 s skew
    assert run(auth, now=NOW + 161, headers=bearer(token)).status == 401
    assert tokens.get(REMOTE[0], token, NOW + 161) is None


def test_verify_token_is_pure_over_given_keys():
    keys = parse_jwks(jwks_text(RSA))
    provider = REMOTE[0]
    assert isinstance(verify_token(provider, RSA.sign(GOOD), keys, NOW), Verified)
    assert not isinstance(verify_token(provider, RSA.sign(GOOD), KeySet(()), NOW), Verified)
    assert not isinstance(verify_token(provider, RSA.sign(GOOD), None, NOW), Verified)


def test_unknown_kid_with_inline_keys_fetches_nothing():
    issuer = FakeIssuer(RSA)
    auth = Authenticator(JwksCache(issuer))
    stranger = SigningKey("ec", "unknown-kid")
    result = asyncio.run(auth.authenticate(ONE, attrs(headers=bearer(stranger.sign(GOOD))).request, NOW))
    assert result.status == 401 and issuer.calls == 0
