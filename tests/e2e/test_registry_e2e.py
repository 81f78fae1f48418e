"""Issue "Registry and datastore", done-when: targets register through the admin API and take real
traffic through a real Envoy; leases that stop being renewed lapse; a clean deregistration fails
no request; a proxy that connects with auto-registration metadata joins its WorkloadGroup and
leaves after the grace period."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import http
from harness.envoy import EnvoyProcess
from harness.mesh import TARGET_HEADER, sidecar_bootstrap
from harness.pilotfish import PilotfishProcess
from registry_e2e_support import CLUSTER, HOST, SERVICE, Api, has_endpoint, timed_until

from pilotfish.app import AUTO_REGISTER_LABEL

pytestmark = pytest.mark.e2e

GROUP = """apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: ratings-vms, namespace: prod}
spec:
  metadata: {labels: {app: ratings}}
  template: {ports: {http: PORT}}
"""


@dataclass
class Mesh:
    pilotfish: PilotfishProcess
    envoy: EnvoyProcess
    api: Api
    config: Path

    def ask(self) -> str:
        """Which echo answered one request through Envoy (``<503>`` when none could)."""
        return http.echo_name(http.get(self.envoy.url(), headers={TARGET_HEADER: CLUSTER}, timeout=5))

    def send(self, n: int) -> Counter[str]:
        return http.count_by_name(self.envoy.url(), n, headers={TARGET_HEADER: CLUSTER})


@pytest.fixture
def mesh(tmp_path, envoy_factory, pilotfish_factory) -> Mesh:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    pf = pilotfish_factory(config, extra_args=["--auto-register-grace", "1"])
    envoy = envoy_factory(sidecar_bootstrap(pf.xds_port))
    envoy.wait_for(lambda: CLUSTER in envoy.clusters(), message="the ratings cluster")
    return Mesh(pf, envoy, Api(pf.admin), config)


def test_a_registered_target_takes_traffic_through_envoy_within_a_second(mesh: Mesh, echo_factory) -> None:
    echo = echo_factory("ratings-a")
    assert mesh.ask() == "<503>", "no endpoint yet"
    started = time.perf_counter()
    response = mesh.api.register("127.0.0.1", echo.port, ttlSeconds=30)
    assert response.status == 201, response
    assert response.json()["id"] == f"127.0.0.1:{echo.port}@{HOST}"
    elapsed = timed_until(lambda: mesh.ask() == echo.name, timeout=5, message="traffic reaches the target")
    total = time.perf_counter() - started
    print(f"\nregister → first request served through Envoy: {total * 1000:.0f} ms")
    assert total < 1.0, f"took {total:.3f}s"
    assert elapsed <= total and mesh.send(20) == Counter({echo.name: 20})


def test_a_target_that_stops_heartbeating_leaves_within_ttl_plus_one_second(mesh: Mesh, echo_factory) -> None:
    echo = echo_factory("ratings-a")
    ttl = 2.0
    lease = mesh.api.register("127.0.0.1", echo.port, ttlSeconds=ttl).json()
    mesh.envoy.wait_for(lambda: has_endpoint(mesh.envoy, "127.0.0.1"), message="registered")
    for _ in range(4):  # renewals keep it in, well past one TTL
        time.sleep(ttl / 2)
        renewed = mesh.api.heartbeat(lease["id"])
        assert renewed.status == 200, renewed
    last_renewal = time.perf_counter()
    assert mesh.ask() == echo.name
    timed_until(lambda: not has_endpoint(mesh.envoy, "127.0.0.1"), timeout=ttl + 5, message="lease lapsed")
    gone_after = time.perf_counter() - last_renewal
    print(f"\nlast heartbeat → endpoint gone from Envoy: {gone_after:.2f}s (ttl {ttl:g}s)")
    assert ttl <= gone_after + 0.05 and gone_after <= ttl + 1.0
    assert mesh.ask() == "<503>"
    assert mesh.api.heartbeat(lease["id"]).status == 404, "a lapsed lease is not renewed: register again"


class Load:
    """Requests through Envoy from a few threads until stopped; counts who answered."""

    def __init__(self, mesh: Mesh, threads: int = 4) -> None:
        self.mesh = mesh
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                name = self.mesh.ask()
            except OSError as exc:
                name = f"<{type(exc).__name__}>"
            with self._lock:
                self.counts[name] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)


def test_a_clean_deregistration_fails_no_request(mesh: Mesh, echo_factory) -> None:
    leaving, staying = echo_factory("ratings-leaving"), echo_factory("ratings-staying")
    ids = [mesh.api.register("127.0.0.1", e.port).json()["id"] for e in (leaving, staying)]
    mesh.envoy.wait_for(lambda: len(mesh.envoy.endpoints(CLUSTER)) == 2, message="both registered")
    with Load(mesh) as load:
        time.sleep(1.0)
        before = load.snapshot()
        assert before[leaving.name] > 0 and before[staying.name] > 0, before
        assert mesh.api.deregister(ids[0]).status == 200
        address = f"127.0.0.1:{leaving.port}"
        mesh.envoy.wait_for(lambda: address not in mesh.envoy.endpoints(CLUSTER), message="left EDS")
        time.sleep(0.2)  # requests Envoy sent before the update finish
        leaving.stop()
        at_stop = load.snapshot()[leaving.name]
        time.sleep(1.0)
    failures = {name: n for name, n in load.counts.items() if name.startswith("<")}
    total = sum(load.counts.values())
    print(f"\nclean deregistration under load: {total} requests, failures {failures or 0}")
    assert failures == {}, load.counts
    assert load.counts[leaving.name] == at_stop, "no request reached the target after it left"
    assert load.counts[staying.name] > before[staying.name]


def test_a_proxy_with_the_auto_register_label_joins_its_group_and_leaves_after_the_grace(
    mesh: Mesh, echo_factory, envoy_factory
) -> None:
    vm = echo_factory("ratings-vm")
    (mesh.config / "group.yaml").write_text(GROUP.replace("PORT", str(vm.port)))
    labels = {"app": "ratings", AUTO_REGISTER_LABEL: "ratings-vms", "version": "v9"}
    vm_sidecar = envoy_factory(sidecar_bootstrap(mesh.pilotfish.xds_port, name="ratings-vm-1", labels=labels))
    mesh.envoy.wait_for(lambda: has_endpoint(mesh.envoy, "127.0.0.1"), message="auto-registered")
    assert mesh.send(5) == Counter({vm.name: 5})
    (listed,) = mesh.api.call("GET", "/registrations").json()["items"]
    assert listed["service"] == "WorkloadGroup/prod/ratings-vms" and listed["labels"]["version"] == "v9"

    vm_sidecar.stop()
    disconnected = time.perf_counter()
    time.sleep(0.5)
    assert has_endpoint(mesh.envoy, "127.0.0.1"), "kept during the grace period"
    timed_until(lambda: not has_endpoint(mesh.envoy, "127.0.0.1"), timeout=5, message="removed")
    removed = time.perf_counter() - disconnected
    print(f"\nauto-registered proxy disconnected → removed after {removed:.2f}s (grace 1s)")
    assert 1.0 - 0.05 <= removed <= 2.0


def test_a_registration_envoy_would_nack_is_refused_and_a_later_valid_one_takes_traffic(
    mesh: Mesh, echo_factory
) -> None:
    """``address: "not-an-ip!"`` used to be accepted (201): Envoy NACKed the EDS update, and every
    later registration for the service never reached it. Now it is 400 naming the field, nothing
    reaches the store, and the next valid registration is served through Envoy."""
    echo = echo_factory("ratings-a")
    for fields, path in (({"address": "not-an-ip!"}, "address"), ({"ttlSeconds": 1e308}, "ttlSeconds")):
        refused = mesh.api.register(**{"address": "127.0.0.1", "port": echo.port, **fields})
        assert refused.status == 400, refused
        assert [p["path"] for p in refused.json()["problems"]] == [path]
    assert mesh.api.call("GET", "/registrations").json()["items"] == []

    assert mesh.api.register("127.0.0.1", echo.port, ttlSeconds=30).status == 201
    timed_until(lambda: mesh.ask() == echo.name, timeout=5, message="traffic reaches the valid target")
    proxies = mesh.pilotfish.syncz()
    assert proxies and all(
        info.get("state") != "NACKED" for row in proxies for info in row["types"].values()
    ), proxies


def test_a_bad_lease_stored_before_the_rules_cannot_block_the_registry(
    tmp_path: Path, envoy_factory, pilotfish_factory, echo_factory
) -> None:
    """An upgrade over a store that holds ``address: "not-an-ip!"`` (accepted by older servers):
    the lease is left out and logged, the other lease is served, and a later valid registration
    reaches Envoy; nothing is NACKed."""
    import sqlite3

    from pilotfish.store import open_store
    from pilotfish.store.base import Registration

    echo_a, echo_b = echo_factory("ratings-a"), echo_factory("ratings-b")
    database = tmp_path / "old.db"
    old = open_store(f"sqlite:///{database}")
    now = time.time()
    for id, port in (("old-bad", 1), ("old-good", echo_a.port)):
        old.register(Registration(id, HOST, "127.0.0.1", port, ttl_seconds=600), now)
    old.close()
    with sqlite3.connect(database) as conn:  # as an older server wrote it
        conn.execute("UPDATE pilotfish_registrations SET address = 'not-an-ip!' WHERE id = 'old-bad'")
    conn.close()
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    pf = pilotfish_factory(config, extra_args=["--store", f"sqlite:///{database}"])
    envoy = envoy_factory(sidecar_bootstrap(pf.xds_port))
    mesh = Mesh(pf, envoy, Api(pf.admin), config)
    timed_until(lambda: mesh.ask() == echo_a.name, timeout=10, message="the stored valid lease serves")
    assert "'old-bad' is invalid and left out" in pf.log_text()

    assert mesh.api.register("127.0.0.1", echo_b.port, ttlSeconds=30).status == 201
    timed_until(lambda: has_endpoint(envoy, f"127.0.0.1:{echo_b.port}"), timeout=5, message="the new lease")
    assert set(mesh.send(20)) == {echo_a.name, echo_b.name}
    assert all(info.get("state") != "NACKED" for row in pf.syncz() for info in row["types"].values()), (
        pf.syncz()
    )
