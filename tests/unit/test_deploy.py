"""deploy/: the Prometheus rules pass promtool (syntax and the rule unit tests shipped next to
them), the scrape config is valid, and dashboards and rules name only metrics pilotfish exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from harness.promtext import _NAME, dashboard_metrics, exported_names

from pilotfish.metrics import Metrics
from pilotfish.xds.status import PushStatus, proxy_states

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool not installed: `make install` runs scripts/system-packages.sh"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def test_promtool_check_rules_passes_on_the_shipped_rules() -> None:
    done = promtool("check", "rules", str(PROMETHEUS / "pilotfish.rules.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(PROMETHEUS / "pilotfish.rules.test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules_fails_on_a_broken_rule(tmp_path: Path) -> None:
    """The check can fail: a rule with a PromQL syntax error is refused."""
    groups = yaml.safe_load((PROMETHEUS / "pilotfish.rules.yml").read_text())
    groups["groups"][0]["rules"][0]["expr"] = "sum by (type (rate(pilotfish_xds_pushes_total[5m]))"
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(yaml.safe_dump(groups))
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_promtool_check_config_passes_on_the_scrape_config() -> None:
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def exported() -> set[str]:
    """What serve's /metrics offers: the collectors the control plane registers."""
    metrics = Metrics()
    metrics.use_proxy_states(lambda: proxy_states(PushStatus()))
    metrics.use_authz_workers(list)
    return exported_names(metrics.exposition().decode())


def test_dashboards_name_only_exported_metrics() -> None:
    named = dashboard_metrics(DEPLOY / "grafana")
    assert {"pilotfish_xds_pushes_total", "pilotfish_authz_checks_total"} <= named
    assert not named - exported(), sorted(named - exported())


def test_rules_name_only_exported_metrics() -> None:
    text = (PROMETHEUS / "pilotfish.rules.yml").read_text()
    named = set(_NAME.findall(text))
    assert not named - exported(), sorted(named - exported())


@pytest.mark.parametrize("name", ["control-plane", "authz", "certificates"])
def test_dashboards_are_grafana_json(name: str) -> None:
    board = json.loads((DEPLOY / "grafana" / f"{name}.json").read_text())
    assert board["uid"].startswith("pilotfish-") and board["panels"]
    for panel in board["panels"]:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
