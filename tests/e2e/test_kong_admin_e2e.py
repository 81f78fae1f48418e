"""Issue "Kong's model on Envoy", done-when: a script of curl calls from Kong's Admin API
documentation (``examples/kong/admin-api.sh``) runs against ``pilotfish serve
--kong-admin-port`` with Kong's status codes and response fields; what it wrote is pilotfish
resources and registrations (secrets hashed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from harness import http
from harness.pilotfish import PilotfishProcess

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "kong" / "admin-api.sh"


def calls() -> list[tuple[int, list[str], str]]:
    out, expect = [], None
    for line in SCRIPT.read_text().splitlines():
        m = re.match(r"# expect (\d+)\s*(\S*)", line)
        if m:
            expect = (int(m.group(1)), [f for f in m.group(2).split(",") if f])
        elif line.startswith("curl") and expect is not None:
            out.append((*expect, line))
            expect = None
    return out


def test_kongs_documented_curl_calls_work_unchanged(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    pf = PilotfishProcess(config, tmp_path / "pf")
    pf.start()
    try:
        base = f"http://127.0.0.1:{pf.kong_admin_port}"
        assert pf.kong_admin_port
        script = calls()
        assert len(script) >= 25
        answers = []
        for status, fields, command in script:
            run = subprocess.run(
                ["bash", "-c", command.replace("curl -s", "curl -s -w '\\n%{http_code}'", 1)],
                env={"KONG_ADMIN": base, "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            body, _, code = run.stdout.rpartition("\n")
            assert int(code) == status, (command, code, body)
            data = json.loads(body) if body.strip() else {}
            missing = [f for f in fields if f not in data]
            assert not missing, (command, missing, data)
            answers.append(data)

        admin = f"http://127.0.0.1:{pf.admin_port}"
        alice = http.get(f"{admin}/apis/Consumer/default/alice").json()
        text = json.dumps(alice)
        assert "alice-secret-key" not in text and "OpenSesame" not in text
        assert [g["group"] for g in alice["spec"]["acls"]] == ["gold"]
        rules = http.get(f"{admin}/apis/DestinationRule?namespace=default").json()["items"]
        (upstream,) = [r for r in rules if r["spec"]["host"] == "example-upstream"]
        assert upstream["spec"]["trafficPolicy"]["loadBalancer"] == {
            "consistentHash": {"httpHeaderName": "x-user"}
        }
        regs = http.get(f"{admin}/registrations").json()["items"]
        assert [(r["address"], r["port"]) for r in regs if r["service"] == "example-upstream"] == [
            ("10.1.0.1", 80)
        ]
        # a key is shown in the answer that created it, then never
        assert answers[5]["key"] == "alice-secret-key" and len(answers[7]["key"]) == 32
        listed = http.get(f"{base}/consumers/alice/key-auth").json()
        assert listed["data"] and "alice-secret-key" not in json.dumps(listed)
        assert http.get(f"{base}/consumers/bob/key-auth").status == 404  # bob was deleted at the end
        assert http.get(f"{admin}/apis/Consumer/default/bob").status == 404
        # pagination: next pages through everything
        page = http.get(f"{base}/plugins?size=1").json()
        seen = len(page["data"])
        while page["next"]:
            page = http.get(base + page["next"]).json()
            seen += len(page["data"])
        assert seen == 3
    except BaseException:
        print(pf.log_text()[-3000:])
        raise
    finally:
        pf.stop()
