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
