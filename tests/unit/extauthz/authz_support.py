"""Helpers for the ext_authz tests: YAML → compiled policies, request attributes, real signing keys."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import jwt as pyjwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from pilotfish.config.loader import load_text
from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig
from pilotfish.config.resource import Resource
from pilotfish.extauthz.attributes import Attributes, HttpRequest, Peer, Workload, normalize_headers
from pilotfish.extauthz.evaluate import Decision, evaluate
from pilotfish.extauthz.jwt import AuthnResult
from pilotfish.extauthz.policy import CompiledPolicy, compile_policies, policies_for_workload

NOW = 1_700_000_000.0
LABELS = {"app": "httpbin", "version": "v1"}
SLEEP = "spiffe://cluster.local/ns/foo/sa/sleep"


def policy_doc(
    spec: Mapping[str, Any],
    name: str = "p",
    namespace: str = "foo",
    annotations: Mapping[str, str] | None = None,
    kind: str = "AuthorizationPolicy",
) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return yaml.safe_dump(
        {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}
    )


def load(*docs: str) -> tuple[Resource[Any], ...]:
    result = load_text("---\n".join(textwrap.dedent(d) for d in docs), "test.yaml")
    assert not result.errors, [str(p) for p in result.errors]
    return result.resources


def compiled(
    *docs: str, mesh: MeshConfig = DEFAULT_MESH, namespace: str = "foo", labels: Mapping[str, str] = LABELS
) -> tuple[CompiledPolicy, ...]:
    return policies_for_workload(compile_policies(load(*docs), mesh), namespace, labels, mesh.root_namespace)


def attrs(
    *,
    method: str = "GET",
    path: str = "/",
    host: str = "httpbin.foo:8000",
    headers: Mapping[str, str | Sequence[str]] | None = None,
    principal: str | None = SLEEP,
    ip: str | None = "10.0.0.5",
    remote_ip: str | None = "203.0.113.7",
    sni: str | None = None,
    namespace: str = "foo",
    labels: Mapping[str, str] = LABELS,
    port: int | None = 8000,
    dest_ip: str | None = "10.0.0.9",
    now: float = NOW,
) -> Attributes:
    return Attributes(
        workload=Workload(namespace, dict(labels), "httpbin", dest_ip, port),
        source=Peer(principal, ip, remote_ip),
        request=HttpRequest(method, path, host, normalize_headers(headers or {}), sni),
        now=now,
    )


def decide(
    policies: Sequence[CompiledPolicy], claims: Mapping[str, Any] | None = None, **kw: Any
) -> Decision:
    return evaluate(policies, attrs(**kw), AuthnResult(claims=claims))


# ---- keys and tokens ---------------------------------------------------------------------------------


class SigningKey:
    """A real key pair and its public JWK."""

    def __init__(self, kind: str, kid: str, *, jwk_alg: bool = True) -> None:
        self.alg = {"rsa": "RS256", "ec": "ES256"}[kind]
        self.kid = kid
        if kind == "rsa":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": kid, **({"alg": self.alg} if jwk_alg else {})}

    def sign(self, claims: Mapping[str, Any], **header: Any) -> str:
        return pyjwt.encode(
            dict(claims), self.private, algorithm=self.alg, headers={"kid": self.kid, **header}
        )

    def sign_raw(self, claims: Mapping[str, Any]) -> str:
        """Sign any JSON payload, even claims PyJWT's encoder refuses (``iss: 7``)."""
        payload = json.dumps(dict(claims)).encode()
        return pyjwt.PyJWS().encode(payload, self.private, algorithm=self.alg, headers={"kid": self.kid})


def jwks_text(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.jwk for k in keys]})
