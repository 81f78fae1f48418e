"""Issue "Self-contained and self-healing", done-when: ``pilotfish serve`` is killed with SIGKILL
and restarted (same ports, same SQLite store) while two ``pilotfish register --keepalive``
targets serve traffic through a real Envoy configured by pilotfish; both are back (receiving
traffic) within TTL + 2 s of the restart, and stay: their clients renew with the new server.

The server stays down longer than the TTL, so the leases lapse in the store. The new server
does not reap leases that lapsed before it started for ``--lease-recovery-grace`` (nothing could
renew them); the clients' heartbeats renew them, which it logs, and the targets never leave."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from harness import http
from harness.echo import EchoProcess
from harness.mesh import TARGET_HEADER, node_id, sidecar_bootstrap
from harness.processes import stop_process
from harness.waiting import wait_for
from registry_e2e_support import CLUSTER, HOST, SERVICE, Api, timed_until

pytestmark = pytest.mark.e2e

TTL = 2.0


def keepalive(admin: str, echo: EchoProcess, workdir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pilotfish", "register", "--service", HOST, "--address", "127.0.0.1"]
    command += ["--port", str(echo.port), "--ttl", str(TTL), "--keepalive", "--admin", admin]
    with (workdir / f"{echo.name}.out").open("wb") as out, (workdir / f"{echo.name}.err").open("wb") as err:
        return subprocess.Popen(command, stdout=out, stderr=err)


def _registered(out: Path) -> bool:
    return out.read_text().startswith("registered ")


def _logged(pf, text: str) -> bool:
    return text in pf.log_text()


def _state(pf, envoy, workdir: Path) -> str:
    """What each side holds: Envoy's endpoints, the store's leases, the clients' output."""
    registrations = Api(pf.admin).call("GET", "/registrations").body
    outputs = [f"{f.name}: {f.read_text()}" for f in sorted(workdir.glob("ratings-*.*"))]
    return "\n".join([f"envoy: {envoy.endpoints(CLUSTER)}", f"registrations: {registrations}", *outputs])


def test_keepalive_targets_are_back_within_ttl_plus_2s_of_a_sigkilled_server_restarting(
    tmp_path: Path, pilotfish_factory, envoy_factory, echo_factory
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    pf = pilotfish_factory(config)
    envoy = envoy_factory(sidecar_bootstrap(pf.xds_port))
    echoes = [echo_factory("ratings-a"), echo_factory("ratings-b")]
    names = {e.name for e in echoes}

    def served() -> Counter[str]:
        return http.count_by_name(envoy.url(), 8, headers={TARGET_HEADER: CLUSTER}, timeout=2)

    clients = [keepalive(pf.admin, echo, tmp_path) for echo in echoes]
    try:
        timed_until(lambda: names <= set(served()), timeout=30, message="both targets take traffic")
        for echo in echoes:  # and each client has its 201 (the lease is stored before it is sent)
            wait_for(partial(_registered, tmp_path / f"{echo.name}.out"), timeout=10, message=echo.name)
        pf.kill()
        time.sleep(TTL + 1.0)  # down longer than the TTL: the stored leases lapse
        assert all(c.poll() is None for c in clients), "a keepalive client exited while the server was down"
        before_restart = len(pf.log_text())
        pf.start()  # same xDS and admin ports, same store
        proxy = node_id()

        def back_with_the_new_server() -> bool:
            synced = pf.type_status(proxy, "EDS").get("state") == "SYNCED"
            return synced and names <= set(served())

        back = timed_until(back_with_the_new_server, timeout=TTL + 30, message="both targets back")
        print(
            f"\nserve READY → Envoy synced with it and both targets take traffic: {back:.2f}s (ttl {TTL:g}s)"
        )
        assert back <= TTL + 2.0, f"took {back:.2f}s"
        for echo in echoes:  # each lapsed lease was renewed by its client's heartbeat, not reaped
            said = f"lease 127.0.0.1:{echo.port}@{HOST} had lapsed, not yet reaped: renewed by its heartbeat"
            timed_until(partial(_logged, pf, said), timeout=TTL + 2, message=said)
        assert "leases expired" not in pf.log_text()[before_restart:]
        time.sleep(2 * TTL)  # the targets stay: their leases are renewed with the new server
        counts = served()
        if set(counts) != names:
            # Renewals every TTL / 3 keep a lease unless the server did not answer for ~2 TTLs;
            # on a loaded machine a lease may lapse once and the client registers again at once
            # (pilotfish logs "leases expired"). Lost for good — a registry or push that missed
            # the change — fails here, with what each side holds.
            try:
                again = timed_until(lambda: names <= set(served()), timeout=2 * TTL, message="both stay")
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"{counts}: {exc}\n{_state(pf, envoy, tmp_path)}") from None
            print(f"a target left and came back within {again:.2f}s: {counts}\n{_state(pf, envoy, tmp_path)}")
        for client in clients:
            client.send_signal(signal.SIGTERM)
        assert [c.wait(10) for c in clients] == [0, 0]
        timed_until(lambda: not envoy.endpoints(CLUSTER), timeout=10, message="deregistered on SIGTERM")
    finally:
        for client in clients:
            stop_process(client)  # type: ignore[arg-type]
    for echo in echoes:
        errors = (tmp_path / f"{echo.name}.err").read_text()
        assert "Traceback" not in errors, errors
