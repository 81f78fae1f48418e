"""Helpers for the Check server integration tests: keys, policies, CheckRequests, a gRPC client."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Mapping
from typing import Any

import grpc
import jwt as pyjwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from jwt.algorithms import RSAAlgorithm

from pilotfish.config.loader import load_text
from pilotfish.extauthz.bundle import AuthzBundle

ISS = "https://issuer.example.com"
WORKLOAD = {"namespace": "foo", "labels": json.dumps({"app": "httpbin"}), "workload": "httpbin"}


class RsaKey:
    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = {
            **RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True),
            "kid": kid,
            "alg": "RS256",
        }

    def jwks(self) -> str:
        return json.dumps({"keys": [self.jwk]})

    def token(self, **claims: Any) -> str:
        body = {"iss": ISS, "sub": "alice", "exp": int(time.time()) + 600, **claims}
        return pyjwt.encode(body, self.private, algorithm="RS256", headers={"kid": self.kid})

    def sign_payload(self, payload: bytes) -> str:
        """Sign any payload bytes, even JSON no encoder would produce (nested 10,000 deep)."""
        return pyjwt.PyJWS().encode(payload, self.private, algorithm="RS256", headers={"kid": self.kid})


def doc(kind: str, name: str, spec: Mapping[str, Any], namespace: str = "foo") -> str:
    meta = {"name": name, "namespace": namespace}
    return yaml.safe_dump(
        {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": dict(spec)}
    )


def bundle(*docs: str) -> AuthzBundle:
    result = load_text("---\n".join(textwrap.dedent(d) for d in docs), "test.yaml")
    assert not result.errors, [str(p) for p in result.errors]
    return AuthzBundle.build(result.resources)


def require_jwt(name: str = "require-jwt") -> str:
    return doc("AuthorizationPolicy", name, {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]})


def deny_path(path: str, name: str = "deny") -> str:
    return doc(
        "AuthorizationPolicy", name, {"action": "DENY", "rules": [{"to": [{"operation": {"paths": [path]}}]}]}
    )


def request_authn(jwt_rule: Mapping[str, Any], name: str = "jwt") -> str:
    return doc("RequestAuthentication", name, {"jwtRules": [{"issuer": ISS, **jwt_rule}]})


def check_request(
    path: str = "/get", token: str | None = None, context: Mapping[str, str] = WORKLOAD
) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", path, "httpbin.foo:8000"
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    request.attributes.context_extensions.update(context)
    return request


def check_sync(port: int, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
    """One Check on a fresh connection (a new connection may land on another worker)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        return external_auth_pb2_grpc.AuthorizationStub(ch).Check(request, timeout=5)
