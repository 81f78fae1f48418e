"""Native enforcement (Envoy jwt_authn + RBAC) and ext_authz (the Check server) decide alike.

One ``pilotfish serve`` configures two sidecars of the same workload (same namespace, labels and
service account): one enforces through ext_authz (the default), the other natively
(``pilotfish.io/authz-mode: native`` in its node annotations). Each group of the case table
writes its AuthorizationPolicies, waits until both sidecars enforce them, and sends each of its
requests, through real Envoy with real tokens, source addresses and mTLS client certificates, to
both. The statuses (and so the 401/403 split) must be equal to each other, to the offline
``authz check`` answer (``extauthz.check.check_request``, the code behind the CLI, with the
mesh's path normalization) and to the hand-derived expectation in the table.

Waiting for a group: each group adds a RequestAuthentication whose only token location is a
header named after the group; a request carrying garbage there gets 401 only once that
group's config is enforced (a provider that finds no token in its header never fails a request,
so it changes no other case).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.jwks import ISSUER, Jwks
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port

from pilotfish.bootstrap import BootstrapOptions, bootstrap
from pilotfish.config.loader import load_paths
from pilotfish.config.mesh import DEFAULT_MESH
from pilotfish.extauthz.attributes import Attributes, HttpRequest, Peer, Workload, client_headers
from pilotfish.extauthz.check import check_request
from pilotfish.extauthz.jwks_fetch import fetch_jwks
from pilotfish.extauthz.path_normalization import normalize_path

pytestmark = pytest.mark.e2e

NS = "foo"
LABELS = {"app": "httpbin"}
HOST = "httpbin.foo.svc.cluster.local"
EXT_IP, NATIVE_IP = "127.0.12.1", "127.0.12.2"
SRC_A, SRC_B = "127.0.12.100", "127.0.12.101"  # client source addresses for ipBlocks
ISSUER2 = "https://issuer.example.com/tenant/v2"  # contains "/": requestPrincipals split at the last one
SLEEP = "spiffe://cluster.local/ns/bar/sa/sleep"
CURL = "spiffe://cluster.local/ns/foo/sa/curl"


# ---- the case table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    expect: int
    path: str = "/"
    method: str = "GET"
    token: str | None = None  # a key of ``tokens()``
    host: str = HOST
    headers: dict[str, str] = field(default_factory=dict)
    src: str = "127.0.0.1"
    peer: str | None = None  # a SPIFFE id: the request goes over mTLS with that certificate


@dataclass(frozen=True)
class Group:
    name: str
    policies: list[dict[str, Any]]
    reqs: list[Req]


def policy(
    name: str, action: str = "ALLOW", rules: list[Any] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS}
    if dry_run:
        metadata["annotations"] = {"istio.io/dry-run": "true"}
    spec: dict[str, Any] = {"selector": {"matchLabels": LABELS}, "action": action}
    if rules is not None:
        spec["rules"] = rules
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": metadata,
        "spec": spec,
    }


def src(**fields: Any) -> dict[str, Any]:
    return {"source": fields}


def op(**fields: Any) -> dict[str, Any]:
    return {"operation": fields}


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key}
    if values:
        out["values"] = values
    if not_values:
        out["notValues"] = not_values
    return out


WEIRD_ISSUER = "weird-keys"


def weird_keys_authn() -> dict[str, Any]:
    """A RequestAuthentication whose inline JWKS holds keys Envoy may refuse, beside good ones."""
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "weird-keys", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": LABELS},
            "jwtRules": [
                {
                    "issuer": WEIRD_ISSUER,
                    "jwks": json.dumps(WEIRD.jwks()),
                    "fromHeaders": [{"name": "x-weird"}],
                }
            ],
        },
    }


def groups(port: int) -> list[Group]:
    p = str(port)
    return [
        Group(
            "jwk-key-parameters",
            [weird_keys_authn()],
            [
                Req(200, headers={"x-weird": WEIRD.token("ec-good")}),
                Req(200, headers={"x-weird": WEIRD.token("ec-no-crv")}),  # the curve of its alg
                Req(401, headers={"x-weird": WEIRD.token("ec-wrong-crv")}),
                Req(200, headers={"x-weird": WEIRD.token("rsa-e3")}),
                Req(401, headers={"x-weird": WEIRD.token("rsa-e-even")}),
                Req(200, headers={"x-weird": WEIRD.token("okp-ed25519")}),
                Req(401, headers={"x-weird": WEIRD.token("okp-x25519")}),
                Req(200, headers={"x-weird": WEIRD.token("oct-hs256")}),
            ],
        ),
        Group(
            "authn-only",
            [],
            [
                Req(200),
                Req(200, token="alice"),
                Req(401, token="expired"),
                Req(401, token="tampered"),
                Req(401, token="unknown-issuer"),
                Req(401, token="wrong-key"),
                Req(200, token="iss2"),
                Req(403, token="iss2-bad-audience"),
                Req(200, token="iss2-param"),
                Req(401, token="iss2-in-bearer"),
                Req(200, token="alice-lowercase-prefix"),
                Req(401, token="garbage"),
                Req(401, token="alice-junk-after"),
                Req(200, token="bearer-empty"),  # Envoy trims the value to "Bearer": no prefix, no token
                Req(401, token="null-sub"),
                Req(200, token="no-sub"),
                Req(200, token="exp-fraction"),  # truncated to whole seconds
                Req(401, token="exp-negative"),
                Req(401, token="exp-huge"),
                Req(200, token="exp-zero"),
                Req(401, token="exp-string"),
                Req(401, token="nbf-future"),
                Req(200, token="nbf-within-skew"),
                Req(401, token="iat-string"),
                Req(401, token="kid-number"),
                Req(200, token="no-kid"),
                Req(401, token="no-alg"),
                Req(401, token="alg-none"),
                Req(401, token="alg-hs256"),
                Req(401, token="payload-array"),
                Req(401, token="two-segments"),
                Req(401, token="aud-number"),
            ],
        ),
        Group(
            "require-jwt",
            [policy("require-jwt", rules=[{"from": [src(requestPrincipals=["*"])]}])],
            [
                Req(403),
                Req(200, token="alice"),
                Req(200, token="bob"),
                Req(401, token="expired"),
                Req(200, token="iss2"),
                Req(403, token="alice-lowercase-prefix"),
                Req(200, token="iss2-param"),
                Req(403, token="no-sub"),
                Req(401, token="null-sub"),
            ],
        ),
        Group(
            "request-principals-exact",
            [
                policy(
                    "principals",
                    rules=[{"from": [src(requestPrincipals=[f"{ISSUER}/alice", f"{ISSUER2}/carol"])]}],
                )
            ],
            [
                Req(200, token="alice"),
                Req(403, token="bob"),
                Req(403),
                Req(200, token="iss2"),
                Req(200, token="iss2-param"),
            ],
        ),
        Group(
            "request-principals-wildcards",
            [
                policy(
                    "principals",
                    rules=[{"from": [src(requestPrincipals=["*/bob", "https://issuer.example.com/*"])]}],
                )
            ],
            # "https://issuer.example.com/*" splits at the last "/": issuer https://issuer.example.com
            [Req(200, token="bob"), Req(403, token="alice"), Req(403, token="iss2"), Req(403)],
        ),
        Group(
            "request-principals-subject-prefix",
            [policy("principals", rules=[{"from": [src(requestPrincipals=[f"{ISSUER2}/car*"])]}])],
            [Req(200, token="iss2"), Req(403, token="alice"), Req(403)],
        ),
        Group(
            "request-principals-issuer-only",
            [policy("principals", rules=[{"from": [src(requestPrincipals=[f"{ISSUER}/*"])]}])],
            [Req(200, token="alice"), Req(200, token="bob"), Req(403, token="iss2"), Req(403)],
        ),
        Group(
            "deny-not-request-principals",
            [policy("deny-anon", "DENY", [{"from": [src(notRequestPrincipals=["*"])]}])],
            [
                Req(403),
                Req(200, token="alice"),
                Req(403, token="alice-lowercase-prefix"),
                Req(401, token="expired"),
            ],
        ),
        Group(
            "paths",
            [
                policy(
                    "paths",
                    rules=[
                        {
                            "to": [
                                op(paths=["/public*", "/exact", "*/suffix", "/api/{*}/items", "/files/{**}"])
                            ]
                        }
                    ],
                )
            ],
            [
                Req(200, "/public/x"),
                Req(200, "/publicity"),
                Req(200, "/exact"),
                Req(403, "/exact/"),
                Req(200, "/a/b/suffix"),
                Req(200, "/api/v1/items"),
                Req(403, "/api/v1/v2/items"),
                Req(200, "/files/a/b/c"),
                Req(403, "/other"),
                Req(200, "/exact?q=1"),
                Req(403, "/EXACT"),
            ],
        ),
        Group(
            "not-paths-methods",
            [
                policy(
                    "api",
                    rules=[{"to": [op(paths=["/api*"], notPaths=["/api/admin*"], methods=["GET", "HEAD"])]}],
                )
            ],
            [
                Req(200, "/api/x"),
                Req(403, "/api/x", "POST"),
                Req(403, "/api/admin/1"),
                Req(200, "/api/y", "HEAD"),
                Req(403, "/x"),
                Req(403, "/api", "DELETE"),
            ],
        ),
        Group(
            "hosts-not-methods",
            [policy("hosts", rules=[{"to": [op(hosts=[HOST, "*.example.com"], notMethods=["DELETE"])]}])],
            [
                Req(200),
                Req(200, host=HOST.upper()),
                Req(200, host="a.example.com"),
                Req(403, host="evil.com"),
                Req(403, method="DELETE"),
                Req(403, host=f"{HOST}:80"),
            ],
        ),
        Group(
            "ports", [policy("ports", rules=[{"to": [op(ports=[p])]}])], [Req(200), Req(200, method="POST")]
        ),
        Group(
            "not-ports",
            [policy("ports", rules=[{"to": [op(notPorts=[p])]}])],
            [Req(403), Req(403, method="POST")],
        ),
        Group(
            "ip-blocks",
            [policy("ips", rules=[{"from": [src(ipBlocks=[f"{SRC_A}/32", "10.0.0.0/8"])]}])],
            [Req(200, src=SRC_A), Req(403, src=SRC_B), Req(403)],
        ),
        Group(
            "deny-not-ip-blocks",
            [policy("ips", "DENY", [{"from": [src(notIpBlocks=["127.0.12.0/24"])]}])],
            [Req(200, src=SRC_A), Req(200, src=SRC_B), Req(403)],
        ),
        Group(
            "remote-ip-blocks",
            [policy("remote", rules=[{"from": [src(remoteIpBlocks=[SRC_B])]}])],
            [Req(200, src=SRC_B), Req(403, src=SRC_A)],
        ),
        Group(
            "principals",
            [policy("mtls", rules=[{"from": [src(principals=["cluster.local/ns/bar/sa/sleep"])]}])],
            [Req(200, peer=SLEEP), Req(403, peer=CURL), Req(403)],
        ),
        Group(
            "principals-any-authenticated",
            [policy("mtls", rules=[{"from": [src(principals=["*"])]}])],
            [Req(200, peer=SLEEP), Req(200, peer=CURL), Req(403)],
        ),
        Group(
            "principals-prefix-suffix",
            [policy("mtls", rules=[{"from": [src(principals=["cluster.local/ns/b*", "*/sa/curl"])]}])],
            [Req(200, peer=SLEEP), Req(200, peer=CURL), Req(403)],
        ),
        Group(
            "namespaces",
            [policy("ns", rules=[{"from": [src(namespaces=["bar"])]}])],
            [Req(200, peer=SLEEP), Req(403, peer=CURL), Req(403)],
        ),
        Group(
            "deny-not-namespaces",
            [policy("ns", "DENY", [{"from": [src(notNamespaces=["foo", "ba*"])]}])],
            [Req(200, peer=SLEEP), Req(200, peer=CURL), Req(403)],
        ),
        Group(
            "service-accounts",
            [policy("sa", rules=[{"from": [src(serviceAccounts=["bar/sleep"])]}])],
            [Req(200, peer=SLEEP), Req(403, peer=CURL), Req(403)],
        ),
        Group(
            "trust-domains",
            [policy("td", rules=[{"from": [src(trustDomains=["cluster.local"])]}])],
            [Req(200, peer=SLEEP), Req(403)],
        ),
        Group(
            "deny-not-principals",
            [policy("deny", "DENY", [{"from": [src(notPrincipals=["cluster.local/ns/bar/sa/sleep"])]}])],
            [Req(200, peer=SLEEP), Req(403, peer=CURL), Req(403)],
        ),
        Group(
            "claims",
            [policy("claims", rules=[{"when": [when("request.auth.claims[groups]", ["admin"])]}])],
            [Req(200, token="alice"), Req(403, token="bob"), Req(403)],
        ),
        Group(
            "nested-claims",
            [policy("claims", rules=[{"when": [when("request.auth.claims[org][team]", ["blu*"])]}])],
            [Req(200, token="alice"), Req(403, token="bob"), Req(403)],
        ),
        Group(
            "audiences-presenter",
            [
                policy("aud", rules=[{"when": [when("request.auth.audiences", ["web"])]}]),
                policy("azp", rules=[{"when": [when("request.auth.presenter", ["client-2"])]}]),
            ],
            [Req(200, token="alice"), Req(200, token="bob"), Req(403, token="iss2"), Req(403)],
        ),
        Group(
            "space-delimited-scope",
            [policy("scope", rules=[{"when": [when("request.auth.claims[scope]", ["write"])]}])],
            [Req(200, token="alice"), Req(403, token="bob")],
        ),
        Group(
            "request-auth-principal-not-values",
            [
                policy(
                    "principal",
                    rules=[{"when": [when("request.auth.principal", [f"{ISSUER}/*"], [f"{ISSUER}/bob"])]}],
                )
            ],
            [Req(200, token="alice"), Req(403, token="bob"), Req(403, token="iss2"), Req(403)],
        ),
        Group(
            "request-headers",
            [
                policy("block", "DENY", [{"when": [when("request.headers[x-block]", ["yes", "true*"])]}]),
                policy("evil", "DENY", [{"when": [when("request.headers[X-Evil]", ["*"])]}]),
            ],
            [
                Req(403, headers={"x-block": "yes"}),
                Req(403, headers={"x-block": "trueish"}),
                Req(200, headers={"x-block": "no"}),
                Req(200),
                Req(403, headers={"x-evil": "1"}),
            ],
        ),
        Group(
            "connection-conditions",
            [
                policy(
                    "conn",
                    rules=[
                        {
                            "when": [
                                when("source.ip", [SRC_A]),
                                when("destination.port", [p]),
                                when("destination.ip", ["127.0.12.0/24"]),
                            ]
                        }
                    ],
                )
            ],
            [Req(200, src=SRC_A), Req(403, src=SRC_B), Req(403)],
        ),
        Group(
            "source-conditions",
            [
                policy(
                    "src",
                    rules=[
                        {"when": [when("source.namespace", ["bar"])]},
                        {
                            "when": [
                                when("source.principal", ["*/sa/curl"]),
                                when("remote.ip", ["127.0.0.0/8"]),
                            ]
                        },
                    ],
                )
            ],
            [Req(200, peer=SLEEP), Req(200, peer=CURL), Req(403)],
        ),
        Group(
            "deny-over-allow",
            [
                policy("allow-all", rules=[{}]),
                policy("deny-admin", "DENY", [{"to": [op(paths=["/admin*"])]}]),
            ],
            [
                Req(403, "/admin"),
                Req(200, "/x"),
                Req(403, "/admin/x", token="alice"),
                Req(401, "/x", token="expired"),
            ],
        ),
        Group(
            "dry-run",
            [
                policy("dry-deny", "DENY", [{"to": [op(paths=["/x"])]}], dry_run=True),
                policy("dry-allow", rules=[{"from": [src(requestPrincipals=["*"])]}], dry_run=True),
            ],
            [Req(200, "/x"), Req(200), Req(200, token="alice")],
        ),
        Group(
            "dry-run-beside-enforced",
            [
                policy("enforced", rules=[{"to": [op(paths=["/a"])]}]),
                policy("dry-allow", rules=[{}], dry_run=True),
            ],
            [Req(200, "/a"), Req(403, "/b")],
        ),
        Group(
            "audit",
            [policy("audit", "AUDIT", [{}]), policy("allow-x", rules=[{"to": [op(paths=["/x"])]}])],
            [Req(200, "/x"), Req(403, "/y")],
        ),
        Group("empty-allow-denies-all", [policy("nothing", rules=[])], [Req(403), Req(403, token="alice")]),
        Group(
            "deny-everything",
            [policy("deny-all", "DENY", [{}])],
            [Req(403), Req(403, token="alice"), Req(401, token="expired")],
        ),
        Group(
            "or-of-sources-and-operations",
            [
                policy(
                    "mixed",
                    rules=[
                        {
                            "from": [src(requestPrincipals=["*"]), src(ipBlocks=[SRC_A])],
                            "to": [op(methods=["GET"]), op(paths=["/post"])],
                        }
                    ],
                )
            ],
            [
                Req(200, token="alice"),
                Req(200, src=SRC_A),
                Req(403),
                Req(200, "/post", "POST", token="alice"),
                Req(403, "/x", "POST", token="alice"),
            ],
        ),
        Group(
            "when-not-values-only",
            [policy("env", rules=[{"when": [when("request.headers[x-env]", not_values=["prod"])]}])],
            [Req(200), Req(403, headers={"x-env": "prod"}), Req(200, headers={"x-env": "dev"})],
        ),
        Group(
            "path-normalization",
            [
                policy("allow-all", rules=[{}]),
                policy("deny-admin", "DENY", [{"to": [op(paths=["/admin*"])]}]),
            ],
            [
                Req(403, "/public/../admin"),
                Req(200, "/public/./x"),
                Req(200, "//admin"),
                Req(403, "/%61dmin"),
                Req(200, "/ADMIN"),
                Req(403, "/admin%2Fx"),
                Req(403, "/a/b/../../admin/c"),
            ],
        ),
        Group(
            "cors-preflight",
            [policy("require-jwt", rules=[{"from": [src(requestPrincipals=["*"])]}])],
            [
                Req(
                    403,
                    method="OPTIONS",
                    token="expired",
                    headers={"origin": "https://web.example.com", "access-control-request-method": "GET"},
                ),
                Req(401, method="OPTIONS", token="expired"),
            ],
        ),
        Group(
            "mixed-source-and-jwt",
            [
                policy(
                    "both",
                    rules=[
                        {
                            "from": [
                                src(
                                    principals=["cluster.local/ns/bar/sa/sleep"],
                                    requestPrincipals=[f"{ISSUER}/alice"],
                                )
                            ]
                        }
                    ],
                )
            ],
            [Req(200, peer=SLEEP, token="alice"), Req(403, peer=SLEEP, token="bob"), Req(403, token="alice")],
        ),
    ]


# ---- keys with unusual parameters (JVL jwks.cc decides which Envoy accepts) --------------------------


class WeirdKeys:
    """Private keys and their JWKs; some JWKs are edited into shapes Envoy may refuse."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
        from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
        rsa3 = rsa.generate_private_key(public_exponent=3, key_size=2048)
        rsa_good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        even = json.loads(RSAAlgorithm.to_jwk(rsa_good.public_key()))
        even["e"] = base64.urlsafe_b64encode((65536).to_bytes(3, "big")).rstrip(b"=").decode()
        ed = ed25519.Ed25519PrivateKey.generate()
        ed_jwk = json.loads(OKPAlgorithm.to_jwk(ed.public_key()))
        self.signers: dict[str, tuple[Any, str]] = {
            "ec-good": (ec_key, "ES256"),
            "ec-no-crv": (ec_key, "ES256"),
            "ec-wrong-crv": (ec_key, "ES256"),
            "rsa-e3": (rsa3, "RS256"),
            "rsa-e-even": (rsa_good, "RS256"),
            "okp-ed25519": (ed, "EdDSA"),
            "okp-x25519": (ed, "EdDSA"),
            "oct-hs256": (b"0123456789abcdef0123456789abcdef", "HS256"),
        }
        self.jwks_list = [
            {**ec_jwk, "kid": "ec-good", "alg": "ES256"},
            {k: v for k, v in {**ec_jwk, "kid": "ec-no-crv", "alg": "ES256"}.items() if k != "crv"},
            {**ec_jwk, "kid": "ec-wrong-crv", "alg": "ES256", "crv": "P-384"},
            {**json.loads(RSAAlgorithm.to_jwk(rsa3.public_key())), "kid": "rsa-e3", "alg": "RS256"},
            {**even, "kid": "rsa-e-even", "alg": "RS256"},
            {**ed_jwk, "kid": "okp-ed25519", "alg": "EdDSA"},
            {**ed_jwk, "kid": "okp-x25519", "alg": "EdDSA", "crv": "X25519"},
            {
                "kty": "oct",
                "kid": "oct-hs256",
                "alg": "HS256",
                "k": base64.urlsafe_b64encode(b"0123456789abcdef0123456789abcdef").rstrip(b"=").decode(),
            },
        ]

    def jwks(self) -> dict[str, Any]:
        return {"keys": self.jwks_list}

    def token(self, kid: str) -> str:
        key, alg = self.signers[kid]
        claims = {"iss": WEIRD_ISSUER, "sub": kid, "exp": int(time.time()) + 3600}
        return pyjwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


WEIRD = WeirdKeys()


# ---- the mesh ---------------------------------------------------------------------------------------


def request_authentication(jwks_port: int) -> list[dict[str, Any]]:
    uri = f"http://127.0.0.1:{jwks_port}/jwks.json"
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": LABELS},
                "jwtRules": [
                    {"issuer": ISSUER, "jwksUri": uri},
                    {
                        "issuer": ISSUER2,
                        "jwksUri": uri,
                        "audiences": ["svc-a"],
                        "fromHeaders": [{"name": "x-jwt", "prefix": "Token "}],
                        "fromParams": ["tok"],
                    },
                ],
            },
        }
    ]


def service(port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "httpbin", "namespace": NS},
            "spec": {
                "hosts": [HOST],
                "location": "MESH_INTERNAL",
                "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
                "resolution": "STATIC",
                "workloadSelector": {"labels": LABELS},
            },
        },
        *(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "WorkloadEntry",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "address": ip,
                    "ports": {"http": port},
                    "labels": LABELS,
                    "serviceAccount": "httpbin",
                },
            }
            for name, ip in (("httpbin-ext-authz", EXT_IP), ("httpbin-native", NATIVE_IP))
        ),
    ]


def sentinel(group: str, inline_jwks: str) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "sentinel", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": LABELS},
            "jwtRules": [
                {
                    "issuer": f"sentinel-{group}",
                    "jwks": inline_jwks,
                    "fromHeaders": [{"name": f"x-sentinel-{group}"}],
                }
            ],
        },
    }


def tokens(jwks: Jwks) -> dict[str, tuple[str, str]]:
    """name → (where, raw token)."""
    rich = {
        "groups": ["admin", "dev"],
        "org": {"team": "blue"},
        "aud": ["web"],
        "azp": "client-1",
        "scope": "read write",
    }
    exp = int(time.time()) + 3600
    alice = jwks.token("k1", claims=rich)
    head, body, signature = alice.split(".")
    tampered = ".".join((head, body, signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")))
    return {
        "alice": ("bearer", alice),
        "bob": (
            "bearer",
            jwks.token(
                "k1",
                sub="bob",
                claims={"groups": ["dev"], "aud": "mobile", "azp": "client-2", "scope": "read"},
            ),
        ),
        "expired": ("bearer", jwks.token("k1", lifetime=-3600)),
        "tampered": ("bearer", tampered),
        "unknown-issuer": ("bearer", jwks.token("k1", issuer="other-issuer")),
        "wrong-key": ("bearer", signed(jwks, "k2", {"iss": ISSUER, "sub": "alice", "exp": exp}, kid="k1")),
        "iss2": ("x-jwt", jwks.token("k2", issuer=ISSUER2, sub="carol", claims={"aud": "svc-a"})),
        "iss2-bad-audience": (
            "x-jwt",
            jwks.token("k2", issuer=ISSUER2, sub="carol", claims={"aud": "svc-b"}),
        ),
        "iss2-param": (
            "param",
            jwks.token("k2", issuer=ISSUER2, sub="carol", claims={"aud": ["svc-a", "x"]}),
        ),
        "iss2-in-bearer": ("bearer", jwks.token("k2", issuer=ISSUER2, sub="carol", claims={"aud": "svc-a"})),
        "alice-lowercase-prefix": ("bearer-lowercase", alice),
        "garbage": ("bearer", "not.a.jwt"),
        "alice-junk-after": ("bearer-junk", alice),
        "null-sub": ("bearer", jwks.token("k1", claims={"sub": None})),  # a claim of the wrong type
        "no-sub": ("bearer", signed(jwks, "k1", {"iss": ISSUER, "exp": exp})),
        "bearer-empty": ("bearer-empty", ""),
        # Envoy jwt_authn (jwt_verify_lib) edge cases: header field types, claim types and limits
        "exp-fraction": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": exp + 0.5}),
        ),
        "exp-negative": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": -5}),
        ),
        "exp-huge": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": 10**20}),
        ),
        "exp-zero": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": 0}),
        ),
        "exp-string": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": "soon"}),
        ),
        "nbf-future": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": exp, "nbf": exp}),
        ),
        "nbf-within-skew": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "nbf": exp - 3570}),
        ),
        "iat-string": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "iat": "x"}),
        ),
        "kid-number": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": 1}, {"iss": ISSUER, "sub": "a", "exp": exp}),
        ),
        "no-kid": ("bearer", forge(jwks, {"alg": "RS256"}, {"iss": ISSUER, "sub": "a", "exp": exp})),
        "no-alg": ("bearer", forge(jwks, {"kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": exp})),
        "alg-none": (
            "bearer",
            forge(jwks, {"alg": "none", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": exp}),
        ),
        "alg-hs256": (
            "bearer",
            forge(jwks, {"alg": "HS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "exp": exp}),
        ),
        "payload-array": ("bearer", forge(jwks, {"alg": "RS256", "kid": "k1"}, [ISSUER])),
        "two-segments": ("bearer", ".".join(alice.split(".")[:2])),
        "aud-number": (
            "bearer",
            forge(jwks, {"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "sub": "a", "aud": 5}),
        ),
    }


def signed(jwks: Jwks, key: str, payload: dict[str, Any], kid: str | None = None) -> str:
    """A token with exactly ``payload``, signed with ``key``, its header naming ``kid``."""
    return pyjwt.encode(payload, jwks.keys[key], algorithm="RS256", headers={"kid": kid or key})


def forge(jwks: Jwks, header: dict[str, Any], payload: Any, key: str = "k1") -> str:
    """A token with exactly this header and payload, RS256-signed with ``key`` whatever the
    header says (PyJWT refuses to write most of these)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = jwks.keys[key].sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def place(req: Req, token: tuple[str, str] | None) -> tuple[str, dict[str, str]]:
    """The request's path and headers with its token where the table says."""
    headers = {"host": req.host, **req.headers}
    path = req.path
    if token is None:
        return path, headers
    where, raw = token
    if where == "bearer":
        headers["authorization"] = f"Bearer {raw}"
    elif where == "bearer-lowercase":
        headers["authorization"] = f"bearer {raw}"
    elif where == "bearer-empty":
        headers["authorization"] = "Bearer "
    elif where == "bearer-junk":
        headers["authorization"] = f"Bearer {raw} trailing"
    elif where == "x-jwt":
        headers["x-jwt"] = f"Token {raw}"
    else:
        path += ("&" if "?" in path else "?") + f"tok={raw}"
    return path, headers


@dataclass
class Identity:
    spiffe: str
    cert_file: Path
    key_file: Path


def issue_client_cert(ca_dir: Path, spiffe: str, out: Path) -> Identity:
    """A workload certificate for ``spiffe`` signed by the mesh CA pilotfish keeps in ``ca_dir``."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca" / "ca-cert.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca" / "ca-key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    name = spiffe.rsplit("/", 1)[-1]
    cert_file, key_file = out / f"{name}.pem", out / f"{name}-key.pem"
    chain = cert.public_bytes(serialization.Encoding.PEM) + (ca_dir / "ca" / "ca-cert.pem").read_bytes()
    cert_file.write_bytes(chain)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Identity(spiffe, cert_file, key_file)


@dataclass
class Mesh:
    pf: PilotfishProcess
    envoys: dict[str, EnvoyProcess]
    jwks: Jwks
    port: int
    config: Path
    identities: dict[str, Identity]
    tokens: dict[str, tuple[str, str]]

    def send(self, ip: str, req: Req, path: str, headers: dict[str, str]) -> int:
        conn: http.client.HTTPConnection
        source = (req.src, 0)
        if req.peer is None:
            conn = http.client.HTTPConnection(ip, self.port, timeout=10, source_address=source)
        else:
            identity = self.identities[req.peer]
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the client checks nothing; the sidecar checks us
            context.load_cert_chain(identity.cert_file, identity.key_file)
            context.set_alpn_protocols(["http/1.1"])
            conn = http.client.HTTPSConnection(
                ip, self.port, timeout=10, source_address=source, context=context
            )
        try:
            conn.request(req.method, path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def write_group(self, group: Group) -> None:
        inline = self.jwks.document().decode()
        docs = [*group.policies, sentinel(group.name, inline)]
        (self.config / "policies.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def wait_enforced(self, group: Group, timeout: float = 20.0) -> None:
        probe = Req(401, headers={f"x-sentinel-{group.name}": "not.a.token"})
        path, headers = place(probe, None)
        deadline = time.monotonic() + timeout
        pending = dict.fromkeys(self.envoys.values())
        while pending and time.monotonic() < deadline:
            for envoy in list(pending):
                try:
                    status = self.send(envoy_ip(envoy), probe, path, headers)
                except OSError:  # the inbound listener is not there yet
                    continue
                if status == 401:
                    del pending[envoy]
            time.sleep(0.05)
        assert not pending, (
            f"group {group.name}: not enforced within {timeout}s\n{self.pf.log_text()[-3000:]}\n"
            + "\n".join(e.log_tail(30) for e in pending)
        )

    def offline(self, req: Req, path: str, headers: dict[str, str]) -> int:
        loaded = load_paths([self.config])
        assert not loaded.errors, loaded.errors
        normalized = normalize_path(path, DEFAULT_MESH.path_normalization.normalization)
        assert normalized is not None, f"Envoy would reject the path {path!r}"
        attributes = Attributes(
            workload=Workload(NS, LABELS, "httpbin", EXT_IP, self.port),
            source=Peer(principal=req.peer, ip=req.src, remote_ip=req.src),
            request=HttpRequest(
                method=req.method,
                path=normalized,
                host=req.host,
                headers=client_headers({k: v for k, v in headers.items() if k != "host"}),
            ),
            now=time.time(),
        )
        decision = asyncio.run(check_request(loaded.resources, DEFAULT_MESH, attributes, fetch_jwks))
        return decision.status


_ENVOY_IPS: dict[int, str] = {}


def envoy_ip(envoy: EnvoyProcess) -> str:
    return _ENVOY_IPS[id(envoy)]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("authz-differential")
    jwks = Jwks()
    jwks.add_key("k1")
    jwks.add_key("k2")
    jwks.start()
    port = free_port()
    config = root / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(
        yaml.safe_dump_all([*service(port), *request_authentication(jwks.port)])
    )
    pf = PilotfishProcess(config, root / "pf", extra_args=["--authz-workers", "1"])
    echo = EchoProcess("httpbin", labels=LABELS)
    envoys: dict[str, EnvoyProcess] = {}
    try:
        pf.start()
        echo.start()
        for mode, ip in (("ext_authz", EXT_IP), ("native", NATIVE_IP)):
            opts = BootstrapOptions(
                f"httpbin-{mode.replace('_', '-')}",
                NS,
                LABELS,
                service_account="httpbin",
                ip=ip,
                xds_port=pf.xds_port,
                admin_port=0,
                app_ports={port: echo.port},
                annotations={"pilotfish.io/authz-mode": mode},
            )
            envoy = EnvoyProcess(bootstrap(opts), workdir=root / f"envoy-{mode}")
            envoys[mode] = envoy
            _ENVOY_IPS[id(envoy)] = ip
            envoy.start()
        certs = root / "certs"
        certs.mkdir()
        identities = {s: issue_client_cert(pf.ca_dir, s, certs) for s in (SLEEP, CURL)}
        m = Mesh(pf, envoys, jwks, port, config, identities, tokens(jwks))
        yield m
    except BaseException:
        print(pf.log_text()[-5000:])
        raise
    finally:
        for envoy in envoys.values():
            envoy.stop()
        echo.stop()
        pf.stop()
        jwks.stop()


def test_the_table_has_at_least_150_cases() -> None:
    assert sum(len(g.reqs) for g in groups(8080)) >= 150


def test_each_mode_gets_its_own_filters(mesh: Mesh) -> None:
    group = next(g for g in groups(mesh.port) if g.name == "require-jwt")
    mesh.write_group(group)
    mesh.wait_enforced(group)
    names = {mode: filter_names(envoy) for mode, envoy in mesh.envoys.items()}
    assert "envoy.filters.http.ext_authz" in names["ext_authz"]
    assert "envoy.filters.http.rbac" not in names["ext_authz"]
    assert {"envoy.filters.http.jwt_authn", "envoy.filters.http.rbac"} <= names["native"]
    assert "envoy.filters.http.ext_authz" not in names["native"]


def filter_names(envoy: EnvoyProcess) -> set[str]:
    dump = json.dumps(envoy.admin_json("/config_dump?resource=dynamic_listeners"))
    return {
        name
        for name in (
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.rbac",
            "envoy.filters.http.jwt_authn",
        )
        if f'"{name}"' in dump
    }


def test_native_and_ext_authz_decide_alike(mesh: Mesh) -> None:
    mismatches: list[str] = []
    for group in groups(mesh.port):
        mesh.write_group(group)
        mesh.wait_enforced(group)
        for i, req in enumerate(group.reqs):
            token = mesh.tokens[req.token] if req.token else None
            path, headers = place(req, token)
            got = {
                mode: mesh.send(envoy_ip(envoy), req, path, headers) for mode, envoy in mesh.envoys.items()
            }
            got["offline"] = mesh.offline(req, path, headers)
            if set(got.values()) != {req.expect}:
                mismatches.append(
                    f"{group.name}[{i}] {req.method} {path} token={req.token} peer={req.peer} src={req.src}: "
                    f"expected {req.expect}, got {got}"
                )
    assert not mismatches, "\n".join(mismatches)
