"""Kong's plugins decided by ``kong.engine`` (pure, local rate limiting): precedence,
anonymous, multiple authentication, JWT algorithms and claims, ACL allow/deny."""

from __future__ import annotations

import asyncio
import textwrap
import time

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pilotfish.config.loader import load_text
from pilotfish.extauthz.attributes import HttpRequest, client_headers
from pilotfish.kong.engine import Engine, KongOutcome, KongRequest
from pilotfish.kong.model import KongConfig
from pilotfish.kong.ratelimit import RateLimiter, window_end, window_start

KEY = b"k" * 32
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def pem(private: object) -> str:
    return (
        private.public_key()
        .public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


def consumers() -> str:
    rsa_pem = textwrap.indent(pem(RSA), "        ")
    ec_pem = textwrap.indent(pem(EC), "        ")
    return f"""
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {{name: alice}}
spec:
  username: alice
  keyAuth: [{{key: alice-key}}]
  acls: [{{group: gold}}, {{group: beta}}]
  jwt:
    - key: rsa-iss
      algorithm: RS256
      rsa_public_key: |
{rsa_pem}
---
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {{name: bob}}
spec:
  username: bob
  keyAuth: [{{key: bob-key}}]
  acls: [{{group: banned}}]
  jwt:
    - key: ec-iss
      algorithm: ES256
      rsa_public_key: |
{ec_pem}
    - {{key: hs-iss, secret: "{"s" * 32}"}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {{name: guest}}
spec: {{username: guest}}
"""


def plugins(text: str) -> KongConfig:
    result = load_text(consumers() + textwrap.dedent(text))
    assert not result.errors, result.errors
    return KongConfig.build(result.resources, KEY)


def run(
    config: KongConfig,
    headers: dict[str, str] | None = None,
    path: str = "/",
    route: str = "r",
    now: float | None = None,
) -> KongOutcome:
    req = KongRequest(
        HttpRequest("GET", path, "api.example.com", client_headers(headers or {})),
        "10.0.0.1",
        "api.default.svc.cluster.local",
        route,
        time.time() if now is None else now,
    )
    return asyncio.run(Engine(RateLimiter()).run(config, req))


def plugin(name: str, plugin_name: str, spec: str) -> str:
    head = f"---\napiVersion: pilotfish.io/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}}}\n"
    return head + f"spec: {{plugin: {plugin_name}, {spec}}}\n"


def test_the_most_specific_plugin_instance_wins() -> None:
    config = plugins(
        plugin("global", "key-auth", "config: {}")
        + plugin(
            "svc-limit", "rate-limiting", "service: api.default.svc.cluster.local, config: {minute: 100}"
        )
        + plugin("bob-limit", "rate-limiting", "consumer: bob, config: {minute: 1}")
    )
    assert run(config, {"apikey": "bob-key"}).allow
    assert run(config, {"apikey": "alice-key"}).response_headers[0] == ("ratelimit-limit", "100")
    assert dict(run(config, {"apikey": "bob-key"}).response_headers)["ratelimit-limit"] == "1"


def test_route_scope_and_no_plugin_elsewhere() -> None:
    config = plugins(plugin("ka", "key-auth", "route: r, config: {}"))
    assert run(config, route="r").status == 401
    assert run(config, route="other").allow


def test_anonymous_consumer_and_multiple_auth_or() -> None:
    config = plugins(
        plugin("ka", "key-auth", "config: {anonymous: guest}")
        + plugin("jwt", "jwt", "config: {anonymous: guest}")
    )
    anon = run(config)
    assert anon.allow and ("x-anonymous-consumer", "true") in anon.headers_to_set
    assert ("x-consumer-username", "guest") in anon.headers_to_set
    keyed = run(config, {"apikey": "alice-key"})
    assert ("x-consumer-username", "alice") in keyed.headers_to_set
    assert "x-anonymous-consumer" in keyed.headers_to_remove


def test_jwt_rs256_es256_hs256_and_claims() -> None:
    config = plugins(plugin("jwt", "jwt", "config: {claims_to_verify: [exp, nbf], maximum_expiration: 600}"))
    now = time.time()

    def bearer(claims: dict[str, object], key: object, alg: str) -> dict[str, str]:
        return {"authorization": "Bearer " + pyjwt.encode(claims, key, algorithm=alg)}  # type: ignore[arg-type]

    good = {"exp": int(now) + 60, "nbf": int(now) - 1}
    assert run(config, bearer({"iss": "rsa-iss", **good}, RSA, "RS256"), now=now).allow
    assert run(config, bearer({"iss": "ec-iss", **good}, EC, "ES256"), now=now).allow
    assert run(config, bearer({"iss": "hs-iss", **good}, "s" * 32, "HS256"), now=now).allow
    wrong_alg = run(config, bearer({"iss": "rsa-iss", **good}, "s" * 32, "HS256"), now=now)
    assert (wrong_alg.status, wrong_alg.message) == (403, "Invalid algorithm")
    other_key = run(
        config, bearer({"iss": "rsa-iss", **good}, rsa.generate_private_key(65537, 2048), "RS256"), now=now
    )
    assert (other_key.status, other_key.message) == (401, "Invalid signature")
    long_lived = {"iss": "hs-iss", "exp": int(now) + 3600, "nbf": int(now)}
    too_long = run(config, bearer(long_lived, "s" * 32, "HS256"), now=now)
    assert too_long.status == 403
    early = run(
        config,
        bearer({"iss": "hs-iss", "exp": int(now) + 60, "nbf": int(now) + 30}, "s" * 32, "HS256"),
        now=now,
    )
    assert (early.status, early.message) == (401, "token not valid yet")
    no_exp = run(config, bearer({"iss": "hs-iss"}, "s" * 32, "HS256"), now=now)
    assert no_exp.status == 401
    assert (
        run(config, bearer({"sub": "x", **good}, "s" * 32, "HS256"), now=now).message
        == "No mandatory 'iss' in claims"
    )


def test_acl_allow_and_deny_lists() -> None:
    deny = plugins(plugin("ka", "key-auth", "config: {}") + plugin("acl", "acl", "config: {deny: [banned]}"))
    assert run(deny, {"apikey": "alice-key"}).allow
    blocked = run(deny, {"apikey": "bob-key"})
    assert (blocked.status, blocked.message) == (403, "You cannot consume this service")
    no_auth = plugins(plugin("acl", "acl", "config: {allow: [gold]}"))
    assert run(no_auth).status == 401
    hidden = plugins(
        plugin("ka", "key-auth", "config: {}")
        + plugin("acl", "acl", "config: {allow: [gold], hide_groups_header: true}")
    )
    assert "x-consumer-groups" in run(hidden, {"apikey": "alice-key"}).headers_to_remove


def test_calendar_windows() -> None:
    t = 1_709_251_199.5  # 2024-02-29 23:59:59.5 UTC
    assert window_start("minute", t) == 1_709_251_140
    assert window_start("month", t) == 1_706_745_600  # 2024-02-01
    assert window_end("month", window_start("month", t)) == 1_709_251_200  # 2024-03-01
    assert window_end("year", window_start("year", t)) == 1_735_689_600  # 2025-01-01


def test_a_key_claimed_twice_stays_with_the_first_consumer_and_is_reported() -> None:
    text = consumers().replace("keyAuth: [{key: bob-key}]", "keyAuth: [{key: alice-key}]")
    text += plugin("ka", "key-auth", "config: {}") + plugin(
        "nobody", "acl", "consumer: ghost, config: {allow: [x]}"
    )
    result = load_text(text)
    assert not result.errors, result.errors
    config = KongConfig.build(result.resources, KEY)
    assert any("already default/alice's" in c for c in config.conflicts)
    assert any("consumer 'ghost' not found" in c for c in config.conflicts)
    assert ("x-consumer-username", "alice") in run(config, {"apikey": "alice-key"}).headers_to_set
