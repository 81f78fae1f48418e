"""`pilotfish authz check`: the CLI contract (one JSON object; exit 2 on bad config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotfish.cli import main

POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: prod}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
"""


def request(tmp_path: Path, path: str) -> Path:
    file = tmp_path / "request.json"
    file.write_text(
        json.dumps(
            {
                "workload": {"namespace": "prod", "labels": {"app": "x"}},
                "request": {"method": "GET", "path": path, "host": "x"},
            }
        )
    )
    return file


@pytest.mark.parametrize(
    ("path", "decision", "status", "policy"),
    [
        ("/admin/users", "deny", 403, "prod/deny-admin"),
        ("/public", "allow", 200, None),
    ],
)
def test_decision_json(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: str,
    decision: str,
    status: int,
    policy: str | None,
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "ap.yaml").write_text(POLICY)
    assert main(["authz", "check", "--config", str(config), "--request", str(request(tmp_path, path))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["decision"], out["status"], out["policy"]) == (decision, status, policy)
    assert set(out) >= {"decision", "status", "reason", "policy", "rule", "headersToSet", "headersToRemove"}


def test_invalid_config_exits_2_with_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "ap.yaml").write_text(POLICY.replace("action: DENY", "action: BLOCK"))
    assert main(["authz", "check", "--config", str(config), "--request", str(request(tmp_path, "/"))]) == 2
    assert "spec.action" in capsys.readouterr().err


def test_a_jwt_nested_10000_levels_deep_is_a_401_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """json.loads raises RecursionError near depth 1000: the payload must be refused before."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", "alg": "RS256"}
    issuer = "https://issuer.example.com"
    payload = b'{"iss":"' + issuer.encode() + b'","a":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001
    token = pyjwt.PyJWS().encode(payload, key, algorithm="RS256", headers={"kid": "k1"})
    config = tmp_path / "config"
    config.mkdir()
    (config / "authn.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: jwt, namespace: prod}\n"
        f"spec:\n  jwtRules:\n  - issuer: {issuer}\n    jwks: '{json.dumps({'keys': [jwk]})}'\n"
    )
    file = request(tmp_path, "/x")
    data = json.loads(file.read_text())
    data["request"]["headers"] = {"authorization": f"Bearer {token}"}
    file.write_text(json.dumps(data))
    assert main(["authz", "check", "--config", str(config), "--request", str(file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["decision"], out["status"]) == ("deny", 401)
    assert out["reason"] == "JWT: Jwt payload is an invalid Base64url encoded JSON"


def test_the_path_is_normalized_as_the_mesh_says_before_evaluating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Envoy normalizes before the filters (BASE by default): ``/public/../admin`` is ``/admin``."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "ap.yaml").write_text(POLICY)
    assert (
        main(
            [
                "authz",
                "check",
                "--config",
                str(config),
                "--request",
                str(request(tmp_path, "/public/../admin/x")),
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert (out["decision"], out["normalizedPath"]) == ("deny", "/admin/x")
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("pathNormalization: {normalization: NONE}\n")
    args = ["authz", "check", "--config", str(config), "--mesh", str(mesh)]
    assert main([*args, "--request", str(request(tmp_path, "/public/../admin/x"))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["decision"], out["normalizedPath"]) == ("allow", "/public/../admin/x")


@pytest.mark.parametrize(
    ("mode_flag", "annotations", "expected"),
    [
        ("ext_authz", {}, "ext_authz"),
        ("native", {}, "native"),
        ("ext_authz", {"pilotfish.io/authz-mode": "native"}, "native"),
    ],
)
def test_it_says_which_enforcement_mode_the_workload_uses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode_flag: str,
    annotations: dict[str, str],
    expected: str,
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "ap.yaml").write_text(POLICY)
    file = tmp_path / "request.json"
    file.write_text(
        json.dumps({"workload": {"namespace": "prod", "annotations": annotations}, "request": {"path": "/"}})
    )
    assert (
        main(["authz", "check", "--config", str(config), "--request", str(file), "--authz-mode", mode_flag])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["enforcement"] == {"mode": expected, "fallback": None}
