"""AuthzBundle: content-hash versions, pickling as source, and the same decisions as `authz check`."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle

import pytest
from authz_support import NOW, SigningKey, attrs, jwks_text, load, policy_doc

from pilotfish.config.mesh import DEFAULT_MESH
from pilotfish.config.resource import Origin
from pilotfish.extauthz.bundle import AuthzBundle, bundle_version
from pilotfish.extauthz.check import check_request
from pilotfish.extauthz.jwks import JwksCache
from pilotfish.extauthz.jwt import Authenticator

KEY = SigningKey("rsa", "k1")
ISS = "https://issuer.example.com"

ALLOW_JWT = policy_doc(
    {
        "selector": {"matchLabels": {"app": "httpbin"}},
        "rules": [
            {"from": [{"source": {"requestPrincipals": ["*"]}}], "to": [{"operation": {"paths": ["/api*"]}}]}
        ],
    },
    name="allow-jwt",
)
DENY_ADMIN = policy_doc(
    {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/api/admin"]}}]}]}, name="deny"
)
REQUEST_AUTHN = policy_doc(
    {
        "jwtRules": [
            {
                "issuer": ISS,
                "jwks": jwks_text(KEY),
                "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
            }
        ]
    },
    name="jwt",
    kind="RequestAuthentication",
)
REMOTE_AUTHN = policy_doc(
    {"jwtRules": [{"issuer": "https://remote.example.com", "jwksUri": "https://remote.example.com/jwks"}]},
    name="remote",
    kind="RequestAuthentication",
)
SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: foo}
spec: {hosts: [ext.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}
"""


def test_version_is_a_content_hash_independent_of_order_and_origin():
    resources = load(ALLOW_JWT, DENY_ADMIN, REQUEST_AUTHN)
    moved = tuple(dataclasses.replace(r, origin=Origin("elsewhere.yaml", 99)) for r in reversed(resources))
    assert AuthzBundle.build(resources).version == AuthzBundle.build(moved).version
    assert bundle_version(resources, DEFAULT_MESH) == AuthzBundle.build(resources).version


def test_version_changes_with_any_policy_or_the_mesh():
    base = AuthzBundle.build(load(ALLOW_JWT, DENY_ADMIN)).version
    changed = DENY_ADMIN.replace("/api/admin", "/api/admin2")
    assert AuthzBundle.build(load(ALLOW_JWT, changed)).version != base
    assert AuthzBundle.build(load(ALLOW_JWT)).version != base
    other_mesh = dataclasses.replace(DEFAULT_MESH, trust_domain="example.org")
    assert AuthzBundle.build(load(ALLOW_JWT, DENY_ADMIN), other_mesh).version != base


def test_only_security_kinds_are_kept():
    with_se = AuthzBundle.build(load(ALLOW_JWT, SERVICE_ENTRY))
    assert [r.kind for r in with_se.resources] == ["AuthorizationPolicy"]
    assert with_se.version == AuthzBundle.build(load(ALLOW_JWT)).version


def test_pickles_as_source_and_recompiles_to_the_same_decisions():
    bundle = AuthzBundle.build(load(ALLOW_JWT, DENY_ADMIN, REQUEST_AUTHN))
    copy = pickle.loads(pickle.dumps(bundle))
    assert copy is not bundle and copy.version == bundle.version
    assert [p.ref for p in copy.policies] == [p.ref for p in bundle.policies]
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": NOW + 60})
    for path, headers in [
        ("/api/x", {"authorization": f"Bearer {token}"}),
        ("/api/x", {}),
        ("/api/admin", {}),
    ]:
        request = attrs(path=path, headers=headers)
        assert decide(copy, request) == decide(bundle, request)


def test_jwks_uris_lists_remote_key_locations_only():
    bundle = AuthzBundle.build(load(REQUEST_AUTHN, REMOTE_AUTHN))
    assert bundle.jwks_uris == ("https://remote.example.com/jwks",)


def test_for_workload_scopes_and_memoizes():
    bundle = AuthzBundle.build(load(ALLOW_JWT, DENY_ADMIN, REQUEST_AUTHN))
    httpbin = bundle.for_workload("foo", {"app": "httpbin"})
    assert [p.name for p in httpbin.policies] == ["allow-jwt", "deny"]
    assert [p.issuer for p in httpbin.providers] == [ISS]
    assert bundle.for_workload("foo", {"app": "httpbin"}) is httpbin
    assert [p.name for p in bundle.for_workload("foo", {"app": "other"}).policies] == ["deny"]
    assert bundle.for_workload("bar", {"app": "httpbin"}).policies == ()


def decide(bundle, request):
    authenticator = Authenticator(JwksCache(no_fetch))
    return asyncio.run(bundle.decide(request, authenticator))


async def no_fetch(uri: str) -> str:
    raise AssertionError(f"unexpected fetch of {uri}")


@pytest.mark.parametrize(
    ("path", "token_claims", "status"),
    [
        ("/api/items", {"iss": ISS, "sub": "alice", "exp": NOW + 60}, 200),
        ("/api/items", None, 403),
        ("/api/items", {"iss": ISS, "sub": "alice", "exp": NOW - 3600}, 401),
        ("/api/items", {"iss": "https://other", "sub": "alice", "exp": NOW + 60}, 401),
        ("/api/admin", {"iss": ISS, "sub": "alice", "exp": NOW + 60}, 403),
        ("/elsewhere", {"iss": ISS, "sub": "alice", "exp": NOW + 60}, 403),
    ],
)
def test_bundle_decides_exactly_like_authz_check(path, token_claims, status):
    resources = load(ALLOW_JWT, DENY_ADMIN, REQUEST_AUTHN)
    headers = {"authorization": f"Bearer {KEY.sign(token_claims)}"} if token_claims else {}
    request = attrs(path=path, headers=headers)
    offline = asyncio.run(check_request(resources, DEFAULT_MESH, request, no_fetch))
    served = decide(AuthzBundle.build(resources), request)
    assert served == offline
    assert served.status == status
