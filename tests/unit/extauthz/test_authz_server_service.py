"""CheckService without a network: protobuf in, protobuf out, metrics hooks, bundle swaps."""

from __future__ import annotations

import asyncio
import json

import pytest
from authz_support import NOW, SigningKey, jwks_text, load, policy_doc
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2

from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.evaluate import Decision
from pilotfish.extauthz.request import BadCheckRequest
from pilotfish.extauthz.server import CheckService, reason_label
from pilotfish.metrics import Metrics

KEY = SigningKey("rsa", "k1")
ISS = "https://issuer.example.com"
REQUIRE_JWT = policy_doc(
    {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}, name="require-jwt"
)
REQUEST_AUTHN = policy_doc(
    {"jwtRules": [{"issuer": ISS, "jwks": jwks_text(KEY)}]}, name="jwt", kind="RequestAuthentication"
)
REMOTE_AUTHN = policy_doc(
    {"jwtRules": [{"issuer": ISS, "jwksUri": "https://keys.example.com/jwks"}]},
    name="jwt",
    kind="RequestAuthentication",
)


def check(
    token: str | None = None, namespace: str = "foo", path: str = "/get"
) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", path, "httpbin.foo"
    if token:
        http.headers["authorization"] = f"Bearer {token}"
    if namespace:
        request.attributes.context_extensions.update(
            {"namespace": namespace, "labels": json.dumps({"app": "a"})}
        )
    return request


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def service(*docs: str, **kw) -> CheckService:
    return CheckService(AuthzBundle.build(load(*docs)), clock=lambda: NOW, **kw)


def test_allow_and_deny_are_responses_and_are_counted():
    metrics = Metrics()
    svc = service(REQUIRE_JWT, REQUEST_AUTHN, hooks=metrics)
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": NOW + 60})
    assert asyncio.run(svc.check(check(token))).status.code == code_pb2.OK
    assert asyncio.run(svc.check(check(token))).status.code == code_pb2.OK  # the same answer again
    assert asyncio.run(svc.check(check(token, path="/other"))).status.code == code_pb2.OK
    denied = asyncio.run(svc.check(check()))
    assert (denied.status.code, denied.denied_response.body) == (
        code_pb2.PERMISSION_DENIED,
        "RBAC: access denied",
    )
    assert svc.stats()["allow"] == 3 and svc.stats()["deny"] == 1
    allowed = {"decision": "allow", "reason": "allowed", "policy": "foo/require-jwt"}
    assert sample(metrics, "pilotfish_authz_checks_total", **allowed) == 3
    assert (
        sample(metrics, "pilotfish_authz_checks_total", decision="deny", reason="no_allow_match", policy="")
        == 1
    )
    assert sample(metrics, "pilotfish_authz_check_duration_seconds_count") == 4
    assert sample(metrics, "pilotfish_authz_decision_cache_lookups_total", result="hit") == 1
    assert sample(metrics, "pilotfish_authz_decision_cache_lookups_total", result="miss") == 3
    assert sample(metrics, "pilotfish_authz_token_cache_lookups_total", result="miss") == 1
    assert sample(metrics, "pilotfish_authz_token_cache_lookups_total", result="hit") == 1


def test_a_request_without_workload_raises_and_counts_an_error():
    svc = service(REQUIRE_JWT)
    with pytest.raises(BadCheckRequest):
        asyncio.run(svc.check(check(namespace="")))
    assert svc.stats()["error"] == 1


def test_swap_installs_new_versions_only():
    svc = service(REQUIRE_JWT)
    first = svc.bundle
    assert not svc.swap(AuthzBundle.build(load(REQUIRE_JWT)))
    assert svc.bundle is first
    assert svc.swap(AuthzBundle.build(()))
    assert asyncio.run(svc.check(check())).status.code == code_pb2.OK  # no policy: allow


def test_refresh_prefetches_remote_jwks_and_counts_fetches():
    metrics = Metrics()
    fetched: list[str] = []

    async def fetch(uri: str) -> str:
        fetched.append(uri)
        if len(fetched) == 1:
            raise OSError("issuer down")
        return jwks_text(KEY)

    svc = service(REQUIRE_JWT, REMOTE_AUTHN, hooks=metrics, fetch=fetch)
    asyncio.run(svc.refresh_jwks(NOW))
    assert fetched == ["https://keys.example.com/jwks"]
    assert sample(metrics, "pilotfish_authz_jwks_fetches_total", result="error") == 1
    asyncio.run(svc.refresh_jwks(NOW + 61))  # after the cache's retry_after
    assert sample(metrics, "pilotfish_authz_jwks_fetches_total", result="ok") == 1
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": NOW + 600})
    assert asyncio.run(svc.check(check(token))).status.code == code_pb2.OK
    assert len(fetched) == 2  # the Check used the prefetched keys


@pytest.mark.parametrize(
    ("decision", "label"),
    [
        (Decision(True, 200, "allowed by ALLOW policy foo/a rule 0", "foo/a", 0), "allowed"),
        (Decision(False, 401, "JWT: Jwt is expired"), "jwt"),
        (Decision(False, 401, "JWT: Jwks remote fetch is failed"), "jwks_unavailable"),
        (Decision(False, 403, "denied by DENY policy foo/d rule 1", "foo/d", 1), "deny_policy"),
        (Decision(False, 403, "no ALLOW policy matched"), "no_allow_match"),
    ],
)
def test_reason_labels_are_a_small_fixed_set(decision, label):
    assert reason_label(decision) == label


def test_repeated_denies_are_logged_a_few_times_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    """Denied requests arrive at the client's pace; the deny line is rate-limited per policy and
    workload (``lograte``) while every deny is still counted."""
    import logging

    from pilotfish.extauthz import server as authz_server

    caplog.set_level(logging.INFO, logger=authz_server.log.name)
    authz_server.deny_log.sweep(float("inf"))  # forget windows earlier tests opened
    svc = service(REQUIRE_JWT)

    async def denies() -> None:
        for _ in range(500):
            assert (await svc.check(check())).status.code == code_pb2.PERMISSION_DENIED

    asyncio.run(denies())
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("deny 403")]
    assert len(logged) == authz_server.deny_log.burst and svc.stats()["deny"] == 500
    authz_server.deny_log.sweep(float("inf"))
    assert (
        caplog.records[-1].getMessage().startswith(f"{500 - authz_server.deny_log.burst} more like the above")
    )


def test_a_repeated_request_is_answered_from_the_decision_cache_until_its_token_expires():
    now = [NOW]
    svc = CheckService(AuthzBundle.build(load(REQUIRE_JWT, REQUEST_AUTHN)), clock=lambda: now[0])
    svc.answers.ttl = 3600.0  # so only the token's expiry can end the entry
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": int(NOW) + 1})
    request = check(token)
    request.attributes.request.http.headers["x-request-id"] = "1"
    assert asyncio.run(svc.check(request)).status.code == code_pb2.OK
    request.attributes.request.http.headers["x-request-id"] = "2"  # a header no policy reads
    assert asyncio.run(svc.check(request)).status.code == code_pb2.OK
    assert len(svc.answers) == 1
    now[0] = int(NOW) + 1 + 61  # past exp and Envoy's 60 s skew: decided again, and denied
    assert asyncio.run(svc.check(request)).status.code != code_pb2.OK


def test_what_a_decision_reads_is_part_of_the_key():
    svc = service(REQUIRE_JWT, REQUEST_AUTHN)
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": NOW + 60})
    assert asyncio.run(svc.check(check(token))).status.code == code_pb2.OK
    assert asyncio.run(svc.check(check())).status.code != code_pb2.OK  # the token header differs
    assert asyncio.run(svc.check(check(token, namespace="bar"))).status.code == code_pb2.OK
    assert len(svc.answers) == 3
    svc.swap(AuthzBundle.build(load(REQUEST_AUTHN)))  # a new bundle version: nothing is reused
    assert asyncio.run(svc.check(check())).status.code == code_pb2.OK


def test_a_jwks_fetch_is_bounded_by_the_rules_timeout():
    """Envoy's remote_jwks ``http_uri.timeout`` is the jwtRule ``timeout``: a JWKS server slower
    than that is a failed fetch (401), never a Check that waits for it."""
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": NOW + 60})

    async def slow(uri: str) -> str:
        await asyncio.sleep(0.3)
        return jwks_text(KEY)

    def with_timeout(timeout: str) -> CheckService:
        rule = {"issuer": ISS, "jwksUri": "https://keys.example.com/jwks", "timeout": timeout}
        authn = policy_doc({"jwtRules": [rule]}, name="jwt", kind="RequestAuthentication")
        return CheckService(AuthzBundle.build(load(REQUIRE_JWT, authn)), fetch=slow, clock=lambda: NOW)

    assert asyncio.run(with_timeout("50ms").check(check(token))).denied_response.status.code == 401
    assert asyncio.run(with_timeout("2s").check(check(token))).status.code == code_pb2.OK
