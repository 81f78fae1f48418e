"""Issue "Registry and datastore", done-when, for the datastore: two replicas on one PostgreSQL,
a SIGKILL in the middle of a stream of writes (SQLite and PostgreSQL), and a PostgreSQL outage
behind a TCP gate — always with a real Envoy and real traffic."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import http
from harness.gate import Gate
from harness.mesh import TARGET_HEADER, sidecar_bootstrap
from harness.waiting import wait_for
from registry_e2e_support import (
    CLUSTER,
    SERVICE,
    Api,
    has_endpoint,
    scratch_database,
    timed_until,
    workload_entry,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    return config


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_database("pilotfish_e2e") as url:
        yield url


def test_an_envoy_on_replica_b_sees_a_registration_made_on_replica_a(
    config, postgres_url, pilotfish_factory, envoy_factory
) -> None:
    a = pilotfish_factory(config, extra_args=["--store", postgres_url])
    b = pilotfish_factory(config, extra_args=["--store", postgres_url])
    envoy = envoy_factory(sidecar_bootstrap(b.xds_port))
    envoy.wait_for(lambda: CLUSTER in envoy.clusters(), message="the ratings cluster from B")
    api = Api(a.admin)
    delays = []
    for trial in range(10):
        address = f"10.2.0.{trial + 1}"
        started = time.perf_counter()
        assert api.register(address, 9080).status == 201
        timed_until(lambda address=address: has_endpoint(envoy, address), timeout=5, message=address)
        delays.append(time.perf_counter() - started)
    p50, worst = statistics.median(delays), max(delays)
    print(
        f"\nregister on A → endpoint in B's Envoy, 10 trials: "
        f"p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )
    assert p50 <= 0.2, delays
    assert len(envoy.endpoints(CLUSTER)) == 10


class Writer(threading.Thread):
    """Applies WorkloadEntries through the API one after another until the server goes away;
    ``acked`` holds every name the server answered 200 for."""

    def __init__(self, api: Api) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.acked: list[str] = []

    @staticmethod
    def address(n: int) -> str:
        return f"10.3.{n // 250}.{n % 250 + 1}"

    def run(self) -> None:
        for n in itertools.count():
            try:
                response = self.api.apply(workload_entry(f"w{n}", self.address(n)))
            except OSError:
                return  # killed mid-request: this write was never acknowledged
            assert response.status == 200, response
            self.acked.append(f"w{n}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_writes_loses_no_acknowledged_write_and_the_proxy_resyncs(
    backend, config, tmp_path, pilotfish_factory, envoy_factory
) -> None:
    with scratch_database("pilotfish_e2e") if backend == "postgresql" else _no_database() as url:
        store = ["--store", url] if url else ["--store", f"sqlite:///{tmp_path / 'store' / 'pilotfish.db'}"]
        pf = pilotfish_factory(config, extra_args=store)
        envoy = envoy_factory(sidecar_bootstrap(pf.xds_port))
        envoy.wait_for(lambda: CLUSTER in envoy.clusters(), message="the ratings cluster")
        writer = Writer(Api(pf.admin))
        writer.start()
        wait_for(lambda: len(writer.acked) >= 30, timeout=20, message="30 acknowledged writes")
        pf.kill()
        writer.join(10)
        acked = list(writer.acked)

        pf.start()
        listed = Api(pf.admin).call("GET", "/apis/WorkloadEntry?namespace=prod").json()
        stored = {item["metadata"]["name"] for item in listed["items"]}
        missing = [name for name in acked if name not in stored]
        print(
            f"\n{backend}: {len(acked)} writes acknowledged before SIGKILL, "
            f"{len(stored)} stored after restart"
        )
        assert missing == [], missing
        addresses = {f"{Writer.address(int(name[1:]))}:9080" for name in stored}
        envoy.wait_for(
            lambda: (
                envoy.stat("control_plane.connected_state") == 1
                and set(envoy.endpoints(CLUSTER)) == addresses
            ),
            timeout=15,
            message="Envoy resynced to every stored WorkloadEntry",
        )


class _no_database:
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *exc: object) -> None:
        return None


def metric(pf, name: str) -> str:
    text = str(http.get(f"http://{pf.admin}/metrics").body)
    return next((line for line in text.splitlines() if line.startswith(name + " ")), "")


def test_a_postgres_outage_keeps_traffic_flowing_refuses_writes_and_recovers_by_itself(
    config, postgres_url, pilotfish_factory, envoy_factory, echo_factory
) -> None:
    gate = Gate(postgres_url)
    gate.open()
    try:
        pf = pilotfish_factory(config, extra_args=["--store", gate.url])
        envoy = envoy_factory(sidecar_bootstrap(pf.xds_port))
        echo = echo_factory("ratings-a")
        api = Api(pf.admin)
        lease = api.register("127.0.0.1", echo.port, ttlSeconds=2).json()
        registered = time.monotonic()
        url, headers = envoy.url(), {TARGET_HEADER: CLUSTER}
        envoy.wait_for(
            lambda: http.count_by_name(url, 1, headers) == Counter({echo.name: 1}), message="traffic"
        )
        assert metric(pf, "pilotfish_store_up") == "pilotfish_store_up 1.0"

        gate.shut()
        refused = api.apply(workload_entry("during-outage", "10.4.0.1"))
        assert refused.status == 503 and refused.headers["retry-after"] == "1", refused
        assert api.register("127.0.0.2", 9080).status == 503
        health = http.get(f"http://{pf.admin}/healthz")
        assert health.status == 503 and "store unavailable" in health.body, health
        assert metric(pf, "pilotfish_store_up") == "pilotfish_store_up 0.0"
        # A push during the outage (a config file changed) rebuilds from the last state read.
        (config / "reviews.yaml").write_text(SERVICE.replace("ratings", "reviews"))
        envoy.wait_for(
            lambda: CLUSTER.replace("ratings", "reviews") in envoy.clusters(), message="file pushed"
        )
        assert has_endpoint(envoy, "127.0.0.1"), "the registration read before the outage still serves"
        assert http.count_by_name(url, 20, headers) == Counter({echo.name: 20})
        assert api.heartbeat(lease["id"]).status == 503
        time.sleep(max(0.0, registered + 2.5 - time.monotonic()))  # the lease lapses in the outage

        gate.open()
        recovered = timed_until(
            lambda: http.get(f"http://{pf.admin}/healthz").status == 200, timeout=15, message="healthy again"
        )
        print(f"\ngate reopened → /healthz 200 after {recovered * 1000:.0f} ms")
        assert metric(pf, "pilotfish_store_up") == "pilotfish_store_up 1.0"
        # No heartbeat could land during the outage: the lapsed lease is not reaped at once, and
        # the workload's next heartbeat renews it — it never left the mesh.
        assert has_endpoint(envoy, "127.0.0.1")
        assert api.heartbeat(lease["id"]).status == 200
        time.sleep(1.0)
        assert has_endpoint(envoy, "127.0.0.1") and api.heartbeat(lease["id"]).status == 200
        assert api.apply(SERVICE.replace("ratings", "details")).status == 200
        details = CLUSTER.replace("ratings", "details")
        envoy.wait_for(lambda: details in envoy.clusters(), message="a write after the outage pushed")
        assert http.count_by_name(url, 10, headers) == Counter({echo.name: 10})
    finally:
        if gate.is_open:
            gate.shut()
