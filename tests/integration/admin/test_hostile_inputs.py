"""Hostile inputs against a real ``pilotfish serve`` (and ``pilotfish validate``): a ~550-byte
YAML "billion laughs" through every entry point, undecodable and abandoned bodies, registrations
Envoy would NACK. Memory is read from ``/proc`` of the process under test (``harness.memory``)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import http
from harness.bombs import billion_laughs
from harness.memory import run_measured, status_bytes
from registry_api_support import Api

pytestmark = pytest.mark.integration

MB = 1024 * 1024
HOST = "ratings.prod.svc.cluster.local"
SERVICE = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
"""
TOKENS = """tokens:
  - {token: t-admin, subject: admin}
  - {token: t-viewer, subject: viewer}
roles:
  - {name: all, rules: [{verbs: ["*"], kinds: ["*"]}]}
  - {name: view, rules: [{verbs: [get, list], kinds: ["*"]}]}
bindings:
  - {subject: admin, role: all}
  - {subject: viewer, role: view}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    return config


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    return path


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("where", ["managedFields", "status"])
def test_the_bomb_through_the_admin_api_is_refused_quickly_and_small(
    config, tokens, pilotfish_factory, where: str
) -> None:
    pf = pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)])
    bomb = billion_laughs(where)
    assert len(bomb.encode()) < 600
    before = status_bytes(pf.pid, "VmRSS")

    started = time.perf_counter()
    viewer = Api(pf.admin, "t-viewer").call("POST", "/apis", bomb)
    assert viewer.status == 403, viewer
    assert viewer.json()["error"] == "RBAC: access denied: viewer may not apply anything"
    refused = Api(pf.admin, "t-admin").call("POST", "/apis?file=bomb.yaml", bomb)
    elapsed = time.perf_counter() - started
    assert refused.status == 400, refused
    (problem,) = refused.json()["problems"]
    assert problem["file"] == "bomb.yaml" and problem["line"] == line_of(bomb, "&f")
    assert problem["message"].startswith("YAML aliases expand this document by more than 100000 nodes")

    grown = status_bytes(pf.pid, "VmHWM") - before
    print(f"\nbomb via POST /apis ({where}): 403 + 400 in {elapsed * 1000:.0f} ms, RSS +{grown / MB:.1f} MB")
    assert elapsed < 1.0 and grown < 50 * MB
    assert Api(pf.admin).call("GET", "/healthz").status == 200
    assert Api(pf.admin, "t-admin").call("GET", "/apis/ServiceEntry/default/bomb").status == 404


def test_the_bomb_in_the_config_directory_is_reported_and_the_last_good_config_kept(
    config, pilotfish_factory
) -> None:
    pf = pilotfish_factory(config)
    wait_until_watching(pf, config)
    before = status_bytes(pf.pid, "VmRSS")
    started = time.perf_counter()
    (config / "bomb.yaml").write_text(billion_laughs())
    expected = f"{config / 'bomb.yaml'}:{line_of(billion_laughs(), '&f')}: YAML aliases expand"
    while expected not in pf.log_text():
        assert time.perf_counter() - started < 10, pf.log_text()
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    grown = status_bytes(pf.pid, "VmHWM") - before
    print(
        f"\nbomb in --config: reported {elapsed * 1000:.0f} ms after the write, peak RSS +{grown / MB:.1f} MB"
    )
    # The time includes the file watcher's debounce; the parse itself takes microseconds.
    assert elapsed < 1.5 and grown < 50 * MB
    kinds = {(r["kind"], r["name"]) for r in pf.get_json("/debug/configz")}
    assert kinds == {("ServiceEntry", "ratings"), ("ServiceEntry", "probe")}, "the rest is still served"


def wait_until_watching(pf: Any, config: Path) -> None:
    """The directory watcher starts in the background after READY: a file written in that window
    can go unnoticed until the next change, so write a probe until it is picked up."""
    probe = SERVICE.replace("name: ratings", "name: probe").replace(HOST, "probe.prod.svc.cluster.local")
    for _ in range(20):
        (config / "probe.yaml").write_text(probe)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if any(r["name"] == "probe" for r in pf.get_json("/debug/configz")):
                return
            time.sleep(0.02)
    raise AssertionError(f"the config directory watcher never noticed a new file\n{pf.log_text()}")


def test_the_bomb_through_pilotfish_validate(tmp_path: Path) -> None:
    good, bomb = tmp_path / "good.yaml", tmp_path / "bomb.yaml"
    good.write_text(SERVICE)
    bomb.write_text(billion_laughs("status"))
    validate = [sys.executable, "-m", "pilotfish", "validate"]
    baseline = run_measured([*validate, str(good)])
    assert baseline.returncode == 0, baseline.output
    run = run_measured([*validate, str(bomb)])
    print(
        f"\npilotfish validate: good file {baseline.seconds:.2f}s / {baseline.peak_rss / MB:.0f} MB "
        f"peak RSS, bomb {run.seconds:.2f}s / {run.peak_rss / MB:.0f} MB"
    )
    assert run.returncode == 1
    assert f"{bomb}:{line_of(billion_laughs('status'), '&f')}: YAML aliases expand" in run.output
    assert run.seconds < baseline.seconds + 1.0
    assert run.peak_rss < baseline.peak_rss + 50 * MB


def test_a_body_that_is_not_utf8_is_400(config, pilotfish_factory) -> None:
    pf = pilotfish_factory(config)
    latin1 = "apiVersion: v1\nkind: ServiceEntry\nmetadata: {name: caf\xe9}\n".encode("latin-1")
    for path, content_type in (("/apis", "application/yaml"), ("/registrations", "application/json")):
        response = http.request("POST", f"http://{pf.admin}{path}", {"content-type": content_type}, latin1)
        assert response.status == 400, response
        assert "UTF-8" in response.json()["error"]
    assert Api(pf.admin).call("GET", "/healthz").status == 200


def test_json_nested_too_deeply_is_400(config, pilotfish_factory) -> None:
    pf = pilotfish_factory(config)
    deep = '{"service": ' + "[" * 5000 + "]" * 5000 + "}"
    response = http.request(
        "POST", f"http://{pf.admin}/registrations", {"content-type": "application/json"}, deep
    )
    assert response.status == 400 and "nests deeper than 100 levels" in response.json()["error"]


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"address": "not-an-ip!"}, "address", "is not a valid FQDN or an IP address"),
        ({"address": "unix:///var/run/app.sock"}, "address", "must be an IP address or a hostname"),
        ({"port": 70000}, "port", "must be in 1..65535"),
        ({"ttlSeconds": 1e308}, "ttlSeconds", "must be 1..86400 seconds"),
        ({"ttlSeconds": 0.1}, "ttlSeconds", "must be 1..86400 seconds"),
    ],
)
def test_a_registration_envoy_would_nack_is_400_with_the_field(
    config, pilotfish_factory, fields, path, message
) -> None:
    api = Api(pilotfish_factory(config).admin)
    body = {"service": HOST, "address": "10.0.0.1", "port": 80, **fields}
    response = api.call("POST", "/registrations", body)
    assert response.status == 400, response
    (problem,) = response.json()["problems"]
    assert problem["path"] == path and message in problem["message"]
    assert api.call("GET", "/registrations").json()["items"] == []


def test_an_abandoned_upload_is_one_log_line(config, pilotfish_factory) -> None:
    pf = pilotfish_factory(config)
    with socket.create_connection(("127.0.0.1", pf.admin_port)) as sock:
        sock.sendall(
            b"POST /apis HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/yaml\r\n"
            b"Content-Length: 100000\r\n\r\napiVersion: networking.istio.io/v1\n"
        )
        time.sleep(0.2)  # the handler is reading the body
    deadline = time.monotonic() + 5
    while "the client abandoned" not in pf.log_text():
        assert time.monotonic() < deadline, pf.log_text()
        time.sleep(0.02)
    time.sleep(0.2)
    log = pf.log_text()
    assert "Traceback" not in log, log
    (line,) = [x for x in log.splitlines() if "the client abandoned" in x]
    assert "POST /apis: the client abandoned the request" in line
