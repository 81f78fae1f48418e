"""run_check: the offline `authz check` over a config dir, an optional mesh file and a request file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from authz_support import NOW, SigningKey, jwks_text, policy_doc

from pilotfish.errors import ConfigError
from pilotfish.extauthz.check import run_check

KEY = SigningKey("rsa", "k1")
ISS = "https://issuer.example.com"
KEYS = ["decision", "status", "reason", "policy", "rule", "headersToSet", "headersToRemove"]


def write_config(tmp_path: Path, *docs: str) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "policies.yaml").write_text("---\n".join(docs))
    return config


def write_request(tmp_path: Path, **overrides: Any) -> Path:
    request: dict[str, Any] = {
        "workload": {
            "namespace": "foo",
            "labels": {"app": "httpbin"},
            "serviceAccount": "httpbin",
            "ip": "10.0.0.9",
            "port": 8000,
        },
        "source": {
            "principal": "spiffe://cluster.local/ns/foo/sa/sleep",
            "ip": "10.0.0.5",
            "remoteIp": "203.0.113.7",
        },
        "request": {
            "method": "GET",
            "path": "/get?x=1",
            "host": "httpbin.foo:8000",
            "headers": {},
            "sni": None,
        },
        "now": NOW,
    }
    for section, values in overrides.items():
        request[section] = {**request[section], **values} if isinstance(values, dict) else values
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return path


def rules(*rs: Any, action: str = "ALLOW", name: str = "p") -> str:
    return policy_doc({"action": action, "rules": list(rs)}, name=name)


def jwt_rule(**kw: Any) -> str:
    return policy_doc({"jwtRules": [{"issuer": ISS, **kw}]}, name="jwt", kind="RequestAuthentication")


def test_allow_names_policy_and_rule(tmp_path):
    config = write_config(
        tmp_path,
        rules({"to": [{"operation": {"paths": ["/x"]}}]}, {"to": [{"operation": {"paths": ["/get"]}}]}),
    )
    out = run_check(config, None, write_request(tmp_path))
    assert list(out)[: len(KEYS)] == KEYS
    assert (out["decision"], out["status"], out["policy"], out["rule"]) == ("allow", 200, "foo/p", 1)
    json.dumps(out)  # JSON-ready


def test_deny_policy(tmp_path):
    config = write_config(
        tmp_path, rules({"from": [{"source": {"namespaces": ["foo"]}}]}, action="DENY", name="d")
    )
    out = run_check(config, None, write_request(tmp_path))
    assert (out["decision"], out["status"], out["policy"], out["rule"]) == ("deny", 403, "foo/d", 0)


def test_empty_spec_denies(tmp_path):
    out = run_check(write_config(tmp_path, policy_doc({})), None, write_request(tmp_path))
    assert (out["decision"], out["status"], out["policy"], out["rule"]) == ("deny", 403, None, None)


def test_inline_jwks_and_headers(tmp_path):
    config = write_config(
        tmp_path, jwt_rule(jwks=jwks_text(KEY), outputClaimToHeaders=[{"header": "x-sub", "claim": "sub"}])
    )
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": int(NOW) + 60})
    out = run_check(
        config, None, write_request(tmp_path, request={"headers": {"Authorization": f"Bearer {token}"}})
    )
    assert (out["decision"], out["headersToSet"], out["headersToRemove"]) == (
        "allow",
        {"x-sub": "alice"},
        ["authorization"],
    )


def test_expired_token_is_401_with_challenge(tmp_path):
    config = write_config(tmp_path, jwt_rule(jwks=jwks_text(KEY)))
    token = KEY.sign({"iss": ISS, "sub": "alice", "exp": int(NOW) - 120})
    out = run_check(
        config, None, write_request(tmp_path, request={"headers": {"authorization": f"Bearer {token}"}})
    )
    assert (out["decision"], out["status"], out["reason"]) == ("deny", 401, "JWT: Jwt is expired")
    assert out["responseHeaders"]["www-authenticate"].endswith('error="invalid_token"')


def test_jwks_uri_uses_the_injected_fetch(tmp_path):
    fetched: list[str] = []

    async def fetch(uri: str) -> str:
        fetched.append(uri)
        return jwks_text(KEY)

    config = write_config(tmp_path, jwt_rule(jwksUri="https://issuer.example.com/keys"))
    token = KEY.sign({"iss": ISS, "sub": "alice"})
    out = run_check(
        config, None, write_request(tmp_path, request={"path": f"/get?access_token={token}"}), fetch=fetch
    )
    assert out["decision"] == "allow" and fetched == ["https://issuer.example.com/keys"]


def test_mesh_file_trust_domain_and_custom_provider(tmp_path):
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "trustDomain: td1\n"
        "extensionProviders:\n"
        "- name: ext\n"
        "  envoyExtAuthzGrpc: {service: ext.foo.svc.cluster.local, port: 9000}\n"
    )
    config = write_config(
        tmp_path,
        rules({"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}]}),
        policy_doc({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}, name="c"),
    )
    out = run_check(
        config, mesh, write_request(tmp_path, source={"principal": "spiffe://td1/ns/foo/sa/sleep"})
    )
    assert (out["decision"], out["customProvider"]) == ("allow", "ext")
    out = run_check(config, mesh, write_request(tmp_path))  # cluster.local now means td1 only
    assert out["decision"] == "deny"


def test_now_as_rfc3339(tmp_path):
    config = write_config(tmp_path, jwt_rule(jwks=jwks_text(KEY)))
    token = KEY.sign({"iss": ISS, "sub": "a", "exp": 1_700_000_000})
    request = write_request(
        tmp_path, request={"headers": {"authorization": f"Bearer {token}"}}, now="2023-11-14T22:13:20Z"
    )
    assert run_check(config, None, request)["decision"] == "allow"


def test_invalid_config_raises(tmp_path):
    config = write_config(tmp_path, policy_doc({"action": "DENY"}))
    with pytest.raises(ConfigError):
        run_check(config, None, write_request(tmp_path))


@pytest.mark.parametrize(
    "body", ["not json", "[]", '{"workload": {"port": "80"}}', '{"source": {"ip": "nope"}}']
)
def test_bad_request_file_raises(tmp_path, body):
    config = write_config(tmp_path, policy_doc({}))
    request = tmp_path / "r.json"
    request.write_text(body)
    with pytest.raises(ConfigError, match="bad request file"):
        run_check(config, None, request)
