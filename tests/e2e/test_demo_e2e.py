"""``make demo`` keeps its word, and Prometheus sees what the shipped rules and dashboards expect.

The demo (examples/demo.py, free ports) runs bookinfo and httpbin in foo behind issuer-foo's JWT
policy. Its banner's curl lines are run as printed, by a shell, and must give the status codes the
banner prints next to them. Then a real Prometheus server (Debian's ``prometheus``) scrapes the
demo's ``pilotfish serve`` with the shipped rules loaded, and its HTTP API must return pilotfish's
push and authz series; every metric the Grafana dashboards name must be on ``/metrics``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.demo import Demo
from harness.ports import free_port
from harness.processes import stop_process
from harness.promtext import dashboard_metrics, exported_names

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "pilotfish.rules.yml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = Demo(tmp_path_factory.mktemp("demo"))
    try:
        running.start()
        yield running
    except BaseException:
        print(running.log_text()[-5000:])
        raise
    finally:
        running.stop()


def shell(command: str) -> str:
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    return done.stdout.strip()


def test_printed_curl_lines_give_the_printed_codes(demo: Demo) -> None:
    commands = demo.commands()
    jwt_story = [(c, code) for c, code in commands if "httpbin" in c]
    # 403 without a token, 200 with one, 401 with a bad one, 200 on /healthz.
    assert [code for _, code in jwt_story] == ["403", "200", "401", "200"], demo.banner
    for command, code in commands:
        assert shell(command) == code, command


def test_printed_mint_command_gives_an_issuer_foo_token(demo: Demo) -> None:
    token = shell(demo.mint_command())
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == "issuer-foo" and claims["exp"] > time.time() and signature


def test_banner_names_the_console_and_opens_nothing(demo: Demo) -> None:
    assert f"web console: {demo.admin}/ui/" in demo.banner


# ---- Prometheus -------------------------------------------------------------------------------


def get_json(url: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def metrics_text(demo: Demo) -> str:
    request = urllib.request.Request(f"{demo.admin}/metrics")
    request.add_header("Authorization", f"Bearer {demo.admin_token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module")
def prometheus(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real Prometheus, configured like deploy/prometheus/prometheus.yml but scraping the demo
    every second (a token file as an operator would with --admin-tokens), stopped after."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not installed: `make install` runs scripts/system-packages.sh"
    root = tmp_path_factory.mktemp("prometheus")
    (root / "token").write_text(demo.admin_token)
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                **shipped["scrape_configs"][0],
                "static_configs": [{"targets": [f"127.0.0.1:{demo.admin_port}"]}],
                "authorization": {"type": "Bearer", "credentials_file": str(root / "token")},
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [
        binary,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (root / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 30, "ready")
        yield url
    except BaseException:
        print((root / "prometheus.log").read_text()[-5000:])
        raise
    finally:
        stop_process(proc)


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"not {what} within {timeout}s (last error: {last})")


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = get_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_push_and_authz_series(demo: Demo, prometheus: str) -> None:
    for command, _code in demo.commands():  # traffic: allowed and denied Checks
        shell(command)
    pushes = wait_for(lambda: query(prometheus, "pilotfish_xds_pushes_total"), 30, "scraped")
    assert {s["metric"]["type"] for s in pushes} >= {"CDS", "EDS", "LDS", "RDS"}
    assert all(s["metric"]["job"] == "pilotfish" for s in pushes)
    checks = wait_for(
        lambda: query(prometheus, 'pilotfish_authz_checks_total{decision="deny"}'), 30, "authz series"
    )
    assert any(s["metric"]["reason"] == "no_allow_match" for s in checks), checks
    allowed = query(prometheus, 'sum(pilotfish_authz_checks_total{decision="allow"})')
    assert float(allowed[0]["value"][1]) >= 2  # the 200 with a token, the 200 on /healthz
    synced = query(prometheus, 'pilotfish_xds_proxies{state="SYNCED"}')
    assert float(synced[0]["value"][1]) == 7  # five bookinfo sidecars, the gateway, httpbin's


def test_shipped_rules_load_and_record(prometheus: str) -> None:
    rules = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    assert {g["name"] for g in rules} == {"pilotfish.recording", "pilotfish.alerts"}
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    wait_for(lambda: query(prometheus, "pilotfish:cert_lifetime_remaining:ratio"), 30, "recorded")
    firing = query(prometheus, 'ALERTS{alertstate="firing"}')
    assert firing == [], firing  # a healthy demo fires nothing


def test_every_dashboard_metric_is_on_metrics(demo: Demo) -> None:
    named = dashboard_metrics(ROOT / "deploy" / "grafana")
    assert len(named) >= 10
    missing = named - exported_names(metrics_text(demo))
    assert not missing, f"dashboards name metrics /metrics does not export: {sorted(missing)}"
