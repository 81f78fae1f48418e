"""Issue "Self-contained and self-healing": ``pilotfish register --keepalive`` survives the
control plane being killed (SIGKILL) and restarted: it keeps retrying while nothing answers,
registers again once the server is back without its lease (here: on an empty store, so the
heartbeat is answered 404; tests/e2e/test_keepalive_e2e.py restarts on the same store), and
exits only on SIGTERM, deregistering then. Real processes: ``pilotfish serve`` and the command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.processes import is_running, stop_process
from harness.waiting import wait_for
from registry_api_support import Api

pytestmark = pytest.mark.integration

HOST = "ratings.prod.svc.cluster.local"
SERVICE = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
"""
TTL = 1.0
ID = f"10.0.0.9:80@{HOST}"


def addresses(api: Api) -> list[str]:
    try:
        response = api.call("GET", "/registrations")
    except OSError:
        return []
    return [item["address"] for item in response.json()["items"]] if response.status == 200 else []


def test_keepalive_survives_a_killed_server_and_registers_again_when_it_returns(
    tmp_path: Path, pilotfish_factory
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    pf = pilotfish_factory(config)
    api = Api(pf.admin)
    out, err = tmp_path / "register.out", tmp_path / "register.err"
    command = [sys.executable, "-m", "pilotfish", "register", "--service", HOST, "--address", "10.0.0.9"]
    command += ["--port", "80", "--ttl", str(TTL), "--keepalive", "--admin", pf.admin]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    try:
        wait_for(lambda: addresses(api) == ["10.0.0.9"], timeout=20, message="registered")
        # The store holds the lease before the 201 is written: killing the server in between
        # leaves the client retrying its first registration ("registered", not "again").
        wait_for(lambda: out.read_text().startswith("registered "), timeout=10, message="the client heard")
        pf.kill()  # SIGKILL: no goodbye to anyone
        time.sleep(3 * TTL)  # refused connections meanwhile; the lease lapses in the store
        assert process.poll() is None, f"keepalive exited while the server was down: {err.read_text()}"
        pf.extra_args += ["--store", f"sqlite:///{tmp_path / 'empty.db'}"]  # the lease is gone
        pf.start()  # same admin port
        restarted_at = time.monotonic()
        wait_for(lambda: addresses(api) == ["10.0.0.9"], timeout=TTL + 20, message="registered again")
        back_after = time.monotonic() - restarted_at
        time.sleep(2.5 * TTL)  # renewals keep it, well past a TTL
        assert addresses(api) == ["10.0.0.9"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            stop_process(process)
    print(f"\nserver READY → registration back after {back_after:.2f}s (ttl {TTL:g}s)")
    lines = out.read_text().splitlines()
    assert lines[0] == f"registered {ID} (ttl {TTL:g}s)"
    assert f"registered again {ID} (ttl {TTL:g}s)" in lines
    assert lines[-1] == f"deregistered {ID}"
    errors = err.read_text()
    assert errors.count("cannot renew") == 1, "one line for the outage, not one per retry"
    assert "Connection refused" in errors and "Traceback" not in errors
    assert addresses(api) == [], "deregistered on SIGTERM"
    assert not is_running(process.pid)
