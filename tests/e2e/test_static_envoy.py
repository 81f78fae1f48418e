"""A real Envoy from the checked-in static bootstrap, in front of two real echo servers.

This proves the harness every later e2e test stands on: Envoy starts from a rendered template,
traffic flows through it, round robin splits evenly, the admin helpers read what happened, and
Envoy is always stopped, also when the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import http
from harness.envoy import EnvoyError, EnvoyProcess, load_template
from harness.processes import is_running

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "envoy" / "static-two-echo.yaml"
TESTS_DIR = REPO / "tests"
REQUESTS = 20


@pytest.fixture
def two_echo_envoy(echo_factory, envoy_factory):
    """Envoy routing ``/`` to echo servers ``a`` and ``b``; returns ``(envoy, echo_a, echo_b)``."""
    echo_a = echo_factory("a", labels={"version": "v1"})
    echo_b = echo_factory("b", labels={"version": "v2"})
    envoy = envoy_factory(
        load_template(TEMPLATE), ports={"echo_a_port": echo_a.port, "echo_b_port": echo_b.port}
    )
    return envoy, echo_a, echo_b


def test_request_passes_through_envoy(two_echo_envoy):
    envoy, _, _ = two_echo_envoy
    status, headers, body = http.get(envoy.url(path="/hello?x=1"), headers={"x-test": "through"})
    assert status == 200
    assert headers["server"] == "envoy"
    assert "x-envoy-upstream-service-time" in headers
    request = body["request"]
    assert request["path"] == "/hello"
    assert request["query"] == "x=1"
    assert request["headers"]["x-test"] == "through"
    assert request["headers"]["x-request-id"]
    assert "x-envoy-expected-rq-timeout-ms" in request["headers"]
    assert body["name"] in {"a", "b"}


def test_round_robin_splits_evenly_and_stats_count_it(two_echo_envoy):
    envoy, echo_a, echo_b = two_echo_envoy
    counts = http.count_by_name(envoy.url(), REQUESTS)
    assert counts == {"a": REQUESTS // 2, "b": REQUESTS // 2}
    assert echo_a.stats()["requests"] == REQUESTS // 2
    assert echo_b.stats()["requests"] == REQUESTS // 2
    assert envoy.stat("cluster.echo.upstream_rq_total") == REQUESTS
    assert envoy.stats()["cluster.echo.upstream_rq_200"] == REQUESTS


def test_admin_helpers_describe_the_static_config(two_echo_envoy):
    envoy, echo_a, echo_b = two_echo_envoy
    assert sorted(envoy.endpoints("echo")) == sorted([f"127.0.0.1:{echo_a.port}", f"127.0.0.1:{echo_b.port}"])
    assert envoy.listeners() == {"ingress": f"127.0.0.1:{envoy.ports['listener_port']}"}
    assert "echo" in envoy.clusters()
    dump_types = [config["@type"].rsplit(".", 1)[-1] for config in envoy.config_dump()["configs"]]
    assert "ClustersConfigDump" in dump_types
    assert "ClustersConfigDump versions=-: echo" in envoy.config_summary()
    assert envoy.stat("no.such.stat") is None


def test_concurrent_requests_are_all_answered(two_echo_envoy):
    envoy, echo_a, _ = two_echo_envoy
    echo_a.configure(delay=0.2)
    counts = http.count_by_name(envoy.url(), 8, concurrency=8)
    assert counts == {"a": 4, "b": 4}


def test_upstream_failures_show_in_counts(two_echo_envoy):
    envoy, echo_a, _ = two_echo_envoy
    echo_a.configure(fail_rate=1.0, fail_status=503)
    counts = http.count_by_name(envoy.url(), 4)
    assert counts == {"a": 2, "b": 2}  # the echo still answers with its JSON body, status 503
    assert envoy.stat("cluster.echo.upstream_rq_503") == 2


def test_context_manager_stops_envoy(echo_factory, tmp_path):
    echo_a, echo_b = echo_factory("a"), echo_factory("b")
    ports = {"echo_a_port": echo_a.port, "echo_b_port": echo_b.port}
    with EnvoyProcess(load_template(TEMPLATE), ports=ports, workdir=tmp_path / "envoy") as envoy:
        pid = envoy.pid
        assert envoy.is_ready()
    assert not is_running(pid)
    assert not envoy.running
    assert "starting main dispatch loop" in envoy.log_text()


def test_exception_inside_context_still_reaps_envoy(echo_factory):
    echo_a, echo_b = echo_factory("a"), echo_factory("b")
    ports = {"echo_a_port": echo_a.port, "echo_b_port": echo_b.port}
    envoy = EnvoyProcess(load_template(TEMPLATE), ports=ports)
    with pytest.raises(RuntimeError, match="boom"), envoy:
        raise RuntimeError("boom")
    assert not is_running(envoy.pid)
    assert not envoy.workdir.exists()  # a work directory the harness created is removed
    assert "exiting" in envoy.log_text()  # the log outlives the directory


def test_invalid_bootstrap_fails_fast_with_log():
    admin = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{admin_port}"}}}
    envoy = EnvoyProcess({"admin": admin, "no_such_field": 1})
    with pytest.raises(EnvoyError, match="no_such_field"):
        envoy.start(timeout=10)
    assert not is_running(envoy.pid)


INNER_TEST = """
    import pytest
    from pathlib import Path

    def test_fails_with_envoy(envoy_factory):
        envoy = envoy_factory({{"admin": {{"address": {{"socket_address":
            {{"address": "127.0.0.1", "port_value": "{{admin_port}}"}}}}}}}})
        Path("{pid_file}").write_text(str(envoy.pid))
        assert False, "deliberate failure"
"""


def test_failing_test_reaps_envoy_and_reports_its_log(tmp_path):
    """Run a deliberately failing test in a child pytest; its Envoy must be gone and its log shown."""
    pid_file = tmp_path / "envoy.pid"
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST.format(pid_file=pid_file)))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    plugins = ["-p", "harness.plugin", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-q", "test_inner.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deliberate failure" in result.stdout
    assert "envoy envoy0" in result.stdout  # the diagnostics section header
    assert "config_dump summary" in result.stdout
    assert "starting main dispatch loop" in result.stdout  # a line from Envoy's log
    assert not is_running(int(pid_file.read_text()))
