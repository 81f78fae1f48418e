"""RequestAuthentication: Istio's documented examples decode; each validation rule rejects at its
path (istio/istio pkg/config/validation validateJwtRule, security.ParseJwksURI, the CRD's CEL rules)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import yaml

from pilotfish.config.loader import LoadResult, load_text
from pilotfish.config.security import request_authentication as ra

VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")
JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "e": "AQAB",
                "n": (
                    "xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg"
                    "4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4i"
                    "gnkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8Wtr"
                    "tOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ"
                    "0BJ_EyxOGuHJrLsn00fnMQ"
                ),
            }
        ]
    }
)


def doc(spec: Any, *, version: str = VERSIONS[0], annotations: dict[str, str] | None = None) -> str:
    meta: dict[str, Any] = {
        "name": "jwt",
        "namespace": "foo",
        **({"annotations": annotations} if annotations else {}),
    }
    return yaml.safe_dump(
        {"apiVersion": version, "kind": "RequestAuthentication", "metadata": meta, "spec": spec}
    )


def load(spec: Any, **kw: Any) -> LoadResult:
    return load_text(doc(spec, **kw), "ra.yaml")


def accepted(spec: Any, **kw: Any) -> ra.RequestAuthenticationSpec:
    result = load(spec, **kw)
    assert not result.errors, [str(p) for p in result.errors]
    (resource,) = result.resources
    spec_: ra.RequestAuthenticationSpec = resource.spec
    return spec_


def errors(spec: Any, **kw: Any) -> list[tuple[str, str]]:
    result = load(spec, **kw)
    assert not result.resources
    return [(p.path, p.message) for p in result.errors]


# ---- documented examples (istio.io reference/config/security/request_authentication) -------------

DOCUMENTED = """
selector:
  matchLabels:
    app: httpbin
jwtRules:
- issuer: "issuer-foo"
  jwksUri: https://example.com/.well-known/jwks.json
  audiences: ["bookstore_android.apps.example.com", "bookstore_web.apps.example.com"]
  fromHeaders:
  - name: x-jwt-assertion
    prefix: "Bearer "
  fromParams: ["my_token"]
  fromCookies: ["session"]
  outputPayloadToHeader: x-jwt-payload
  outputClaimToHeaders:
  - header: x-jwt-claim-group
    claim: nested.key.group
  forwardOriginalToken: true
  spaceDelimitedClaims: ["roles"]
  timeout: 10s
- issuer: "issuer-bar"
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_documented_example_decodes_every_field(version: str) -> None:
    spec = accepted(yaml.safe_load(DOCUMENTED), version=version)
    first, second = spec.jwt_rules
    assert first == ra.JWTRule(
        issuer="issuer-foo",
        audiences=("bookstore_android.apps.example.com", "bookstore_web.apps.example.com"),
        jwks_uri="https://example.com/.well-known/jwks.json",
        from_headers=(ra.JWTHeader("x-jwt-assertion", "Bearer "),),
        from_params=("my_token",),
        from_cookies=("session",),
        output_payload_to_header="x-jwt-payload",
        forward_original_token=True,
        output_claim_to_headers=(ra.ClaimToHeader("x-jwt-claim-group", "nested.key.group"),),
        space_delimited_claims=("roles",),
        timeout=timedelta(seconds=10),
    )
    assert second == ra.JWTRule(issuer="issuer-bar") and second.timeout is None


def test_snake_case_spellings_and_inline_jwks_are_accepted() -> None:
    spec = accepted(
        {"jwt_rules": [{"issuer": "a", "jwks": JWKS, "from_headers": [{"name": "x"}], "jwks_uri": ""}]}
    )
    assert spec.jwt_rules[0].jwks == JWKS and spec.jwt_rules[0].from_headers == (ra.JWTHeader("x"),)


def test_jwks_uri_alone_satisfies_the_issuer_rule() -> None:
    assert (
        accepted({"jwtRules": [{"jwksUri": "http://keys.example.com:8080/jwks"}]}).jwt_rules[0].issuer == ""
    )


def test_rules_for_the_same_issuer_are_allowed_istio_merges_them() -> None:
    spec = accepted({"jwtRules": [{"issuer": "a", "audiences": ["x"]}, {"issuer": "a"}]})
    assert [r.issuer for r in spec.jwt_rules] == ["a", "a"]


def test_an_empty_spec_is_a_valid_policy() -> None:
    assert accepted({}) == ra.RequestAuthenticationSpec()


# ---- every rule ---------------------------------------------------------------------------------------


def rule(**fields: Any) -> dict[str, Any]:
    return {"jwtRules": [{"issuer": "iss", **fields}]}


R = "spec.jwtRules[0]"
REJECTED = [
    (
        "no-issuer-no-jwks-uri",
        {"jwtRules": [{"jwks": JWKS}]},
        f"{R}.issuer",
        "issuer or jwksUri must be non-empty",
    ),
    (
        "jwks-and-jwks-uri",
        rule(jwks=JWKS, jwksUri="https://a.example/jwks"),
        f"{R}.jwks",
        "only one of jwks or jwksUri",
    ),
    (
        "jwks-uri-both-spellings",
        rule(jwksUri="https://a/j", jwks_uri="https://b/j"),
        f"{R}.jwks_uri",
        "set twice",
    ),
    (
        "jwks-uri-scheme",
        rule(jwksUri="ftp://example.com/jwks"),
        f"{R}.jwksUri",
        "scheme 'ftp' is not supported",
    ),
    ("jwks-uri-relative", rule(jwksUri="/jwks.json"), f"{R}.jwksUri", "is not supported"),
    ("jwks-uri-no-host", rule(jwksUri="https:///jwks"), f"{R}.jwksUri", "has no host"),
    ("jwks-uri-bad-port", rule(jwksUri="https://example.com:http/jwks"), f"{R}.jwksUri", "invalid jwksUri"),
    ("jwks-uri-too-long", rule(jwksUri="https://e.com/" + "a" * 2048), f"{R}.jwksUri", "at most 2048"),
    ("jwks-not-json", rule(jwks="{not json"), f"{R}.jwks", "jwks parse error"),
    ("jwks-no-kty", rule(jwks='{"keys": [{"n": "x"}]}'), f"{R}.jwks", "jwks parse error"),
    ("jwks-keys-not-list", rule(jwks='{"keys": {"kty": "RSA"}}'), f"{R}.jwks", "jwks parse error"),
    ("empty-audience", rule(audiences=["a", ""]), f"{R}.audiences[1]", "audience must be non-empty"),
    (
        "header-without-name",
        rule(fromHeaders=[{"prefix": "Bearer "}]),
        f"{R}.fromHeaders[0].name",
        "required field is missing",
    ),
    ("header-empty-name", rule(fromHeaders=[{"name": ""}]), f"{R}.fromHeaders[0].name", "must be non-empty"),
    ("empty-param", rule(fromParams=[""]), f"{R}.fromParams[0]", "location query must be non-empty"),
    ("empty-cookie", rule(fromCookies=[""]), f"{R}.fromCookies[0]", "cookie name must be non-empty"),
    (
        "claim-header-invalid",
        rule(outputClaimToHeaders=[{"header": "x jwt", "claim": "sub"}]),
        f"{R}.outputClaimToHeaders[0].header",
        "not a valid header name",
    ),
    (
        "claim-header-empty",
        rule(outputClaimToHeaders=[{"header": "", "claim": "sub"}]),
        f"{R}.outputClaimToHeaders[0].header",
        "cannot be empty",
    ),
    (
        "claim-empty",
        rule(outputClaimToHeaders=[{"header": "x-sub", "claim": ""}]),
        f"{R}.outputClaimToHeaders[0].claim",
        "must be non-empty",
    ),
    (
        "claim-missing",
        rule(outputClaimToHeaders=[{"header": "x-sub"}]),
        f"{R}.outputClaimToHeaders[0].claim",
        "required field is missing",
    ),
    (
        "payload-header-invalid",
        rule(outputPayloadToHeader="x:payload"),
        f"{R}.outputPayloadToHeader",
        "not a valid header name",
    ),
    ("timeout-zero", rule(timeout="0s"), f"{R}.timeout", "greater than 1ms"),
    ("timeout-sub-ms", rule(timeout="1500us"), f"{R}.timeout", "ms precision"),
    ("timeout-negative", rule(timeout="-1s"), f"{R}.timeout", "invalid duration"),
    (
        "empty-space-delimited-claim",
        rule(spaceDelimitedClaims=[""]),
        f"{R}.spaceDelimitedClaims[0]",
        "non-empty",
    ),
    (
        "too-many-space-delimited-claims",
        rule(spaceDelimitedClaims=[f"c{i}" for i in range(65)]),
        f"{R}.spaceDelimitedClaims",
        "at most 64",
    ),
    (
        "selector-and-target-ref",
        {
            "selector": {"matchLabels": {"a": "b"}},
            "targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"},
        },
        "spec.targetRef",
        "only one of",
    ),
    (
        "selector-wildcard-key",
        {"selector": {"matchLabels": {"app*": "b"}}},
        "spec.selector.matchLabels.app*",
        "wildcard",
    ),
    (
        "target-bad-kind",
        {"targetRefs": [{"kind": "Pod", "name": "p"}]},
        "spec.targetRefs[0].kind",
        "targetRef must be to one of",
    ),
    ("unknown-field", rule(jwksUrl="https://a/j"), f"{R}.jwksUrl", "unknown field"),
]


@pytest.mark.parametrize(("case", "spec", "path", "message"), REJECTED, ids=[c[0] for c in REJECTED])
def test_invalid_rule_is_rejected_at_its_path(
    case: str, spec: dict[str, Any], path: str, message: str
) -> None:
    found = errors(spec)
    assert any(p == path and message in m for p, m in found), found


def test_private_key_material_in_inline_jwks_is_a_warning() -> None:
    private = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}]})
    result = load(rule(jwks=private))
    assert result.resources and any("private key" in p.message for p in result.warnings)
    assert not load(rule(jwks=JWKS)).warnings


def test_dry_run_annotation_is_not_supported_on_request_authentication() -> None:
    found = errors(rule(), annotations={"istio.io/dry-run": "true"})
    assert any("does not support this annotation" in m for _, m in found), found


def test_jwks_uri_checker_accepts_http_and_https_urls_with_ports() -> None:
    assert ra.jwks_uri("https://example.com/jwks") is None
    assert ra.jwks_uri("http://10.0.0.1:8080/keys?x=1") is None
    assert ra.jwks_uri("https://[::1]:443/jwks") is None


def test_default_jwks_timeout_is_istios_five_seconds() -> None:
    assert timedelta(seconds=5) == ra.DEFAULT_JWKS_TIMEOUT
