"""Random and adversarial tokens and headers through the whole Check path (``CheckService``:
CheckRequest in, CheckResponse out, decision cache included). It never raises, and it never
allows a request the pure path (``check_request``: attributes, ``authenticate``, ``evaluate``)
denies; asking twice gives the same answer (the second comes from the decision cache)."""

from __future__ import annotations

import asyncio
import base64
import json

from authz_support import NOW, SigningKey, jwks_text, load, policy_doc
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilotfish.config.mesh import DEFAULT_MESH
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.check import check_request
from pilotfish.extauthz.request import check_input
from pilotfish.extauthz.server import CheckService

KEY = SigningKey("rsa", "k1")
ISS = "https://issuer.example.com"
DOCS = (
    policy_doc(
        {
            "rules": [
                {"from": [{"source": {"requestPrincipals": [f"{ISS}/alice"]}}]},
                {
                    "to": [{"operation": {"paths": ["/public*"]}}],
                    "when": [{"key": "request.headers[x-ok]", "values": ["y*"]}],
                },
            ]
        },
        name="allow",
    ),
    policy_doc(
        {"action": "DENY", "rules": [{"when": [{"key": "request.auth.claims[role]", "values": ["banned"]}]}]},
        name="deny",
    ),
    policy_doc(
        {
            "jwtRules": [
                {"issuer": ISS, "jwks": jwks_text(KEY)},
                {
                    "issuer": "other",
                    "jwks": jwks_text(KEY),
                    "fromHeaders": [{"name": "x-jwt"}],
                    "fromParams": ["t"],
                },
            ]
        },
        name="jwt",
        kind="RequestAuthentication",
    ),
)
RESOURCES = load(*DOCS)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([ISS, "other", "", 7, None]),
        "sub": st.sampled_from(["alice", "bob", 1, [], None]),
        "exp": st.one_of(
            st.integers(-(2**70), 2**70),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([NOW + 60, 0, "x"]),
        ),
        "nbf": st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False)),
        "role": st.sampled_from(["banned", "user", ["banned"], {"x": 1}]),
        "aud": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3)),
    },
)
signed = claims.map(KEY.sign_raw)
forged = st.tuples(st.binary(max_size=40), st.binary(max_size=80), st.binary(max_size=40)).map(
    lambda parts: ".".join(b64(p) for p in parts)
)
nested = st.integers(1, 3000).map(
    lambda n: ".".join((b64(b'{"alg":"RS256","kid":"k1"}'), b64(deep(n)), "sig"))
)
headerish = st.builds(
    lambda alg, kid, body: ".".join((b64(json.dumps({"alg": alg, "kid": kid}).encode()), b64(body), "c2ln")),
    st.one_of(st.text(max_size=6), st.integers(), st.none()),
    st.one_of(st.text(max_size=4), st.integers(), st.lists(st.integers(), max_size=2)),
    st.binary(max_size=30),
)
tokens = st.one_of(signed, forged, nested, headerish, st.text(max_size=60))
values = st.one_of(tokens.map(lambda t: f"Bearer {t}"), tokens, st.text(max_size=30))
headers = st.dictionaries(
    st.sampled_from(
        [
            "authorization",
            "x-jwt",
            "x-ok",
            "cookie",
            "origin",
            "access-control-request-method",
            "x-forwarded-proto",
        ]
    ),
    values,
    max_size=4,
)


def request(method: str, path: str, found: dict[str, str]) -> external_auth_pb2.CheckRequest:
    out = external_auth_pb2.CheckRequest()
    http = out.attributes.request.http
    http.method, http.path, http.host = method, path, "httpbin.foo"
    http.headers.update(found)
    out.attributes.context_extensions.update({"namespace": "foo", "labels": json.dumps({"app": "a"})})
    return out


async def unreachable(uri: str) -> str:
    raise AssertionError(f"no fetch expected: {uri}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "OPTIONS", ""]),
    path=st.one_of(
        st.sampled_from(["/", "/public/x", "/public?t=x", "/a"]), st.text(max_size=30).map(lambda p: "/" + p)
    ),
    found=headers,
)
def test_the_check_path_never_raises_and_never_allows_what_the_evaluator_denies(
    method: str, path: str, found: dict[str, str]
) -> None:
    svc = CheckService(AuthzBundle.build(RESOURCES), clock=lambda: NOW)
    checked = request(method, path, found)
    first = asyncio.run(svc.check(checked))
    again = asyncio.run(svc.check(checked))
    assert (again.status.code, again.SerializeToString()) == (first.status.code, first.SerializeToString())
    attributes = check_input(checked, NOW).attributes
    pure = asyncio.run(check_request(RESOURCES, DEFAULT_MESH, attributes, unreachable))
    if not pure.allow:
        assert first.status.code != code_pb2.OK, pure
    assert (first.status.code == code_pb2.OK) == pure.allow
