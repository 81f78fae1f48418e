"""A real Envoy (SotW and delta ADS) configured by pilotfish's ADS server, serving real traffic.

Each test starts two tiny HTTP backends that answer with their own name, the grpc.aio ADS server
on port 0, and Envoy from a minimal ADS bootstrap (admin and listener on port 0). Snapshots are
pushed the way the producer will push them: the ``on_connect`` hook publishes the first one.
Then: an EDS change moves traffic; a CDS-only change must be followed by an EDS resend or the
cluster stays warming; a route change moves traffic; an invalid cluster is NACKed, recorded with
Envoy's text and not resent; a fixed snapshot is ACKed again. Envoy and the backends are always
stopped, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import xds_envoy_config as cfg

from pilotfish.xds import resources as rt
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.server import AggregatedDiscoveryService, start_server
from pilotfish.xds.status import PushStatus, SyncState

pytestmark = pytest.mark.e2e

ENVOY = Path(sys.executable).parent / "envoy"
TIMEOUT = 20.0


class _NameHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.backend_name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@contextlib.contextmanager
def backend(name: str) -> Iterator[int]:
    """An HTTP server on 127.0.0.1:0 answering every GET with ``name``; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NameHandler)
    server.backend_name = name  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def envoy(bootstrap: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run Envoy on ``bootstrap``; yields the process and the admin-address file. Always stopped."""
    config, admin_file, log = workdir / "envoy.yaml", workdir / "admin.txt", workdir / "envoy.log"
    config.write_text(bootstrap)
    command = [str(ENVOY), "-c", str(config), "--use-dynamic-base-id", "--concurrency", "1"]
    command += ["--admin-address-path", str(admin_file), "-l", "info", "--drain-time-s", "1"]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield process, admin_file
        except BaseException:
            tail = log.read_text(errors="replace").splitlines()[-80:]
            print("--- envoy.log (tail) ---", *tail, sep="\n")  # shown by pytest on failure
            raise
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return str(reply.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


async def fetch(url: str) -> str | None:
    return await asyncio.to_thread(_fetch, url)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


class Scenario:
    """One Envoy, one ADS server, two backends; helpers to push and observe."""

    def __init__(self, cache: SnapshotCache, status: PushStatus, admin_file: Path, process: Any) -> None:
        self.cache, self.status, self.admin_file, self.process = cache, status, admin_file, process

    def push(self, *messages: Any) -> bool:
        return self.cache.set_snapshot(cfg.NODE_ID, self.cache.build(messages))

    async def admin(self, path: str) -> Any:
        assert self.process.poll() is None, "Envoy exited"
        if not self.admin_file.exists() or not self.admin_file.read_text().strip():
            return None
        text = await fetch(f"http://{self.admin_file.read_text().strip()}{path}")
        return json.loads(text) if text else None

    async def listener_port(self) -> int:
        async def bound() -> int:
            listeners = await self.admin("/listeners?format=json") or {"listener_statuses": []}
            for entry in listeners["listener_statuses"]:
                port = int(entry["local_address"]["socket_address"].get("port_value", 0))
                if entry["name"] == cfg.LISTENER_NAME and port:
                    return port
            return 0

        return int(await eventually(bound, "the ADS listener to be bound"))

    async def serves(self, port: int, body: str) -> None:
        async def answered() -> bool:
            return await fetch(f"http://127.0.0.1:{port}/") == body

        await eventually(answered, f"traffic to reach backend {body!r}")

    async def clusters(self) -> dict[str, list[dict[str, Any]]]:
        dump = await self.admin("/config_dump?resource=dynamic_active_clusters") or {"configs": []}
        active = [c["cluster"] for c in dump["configs"]]
        warming = await self.admin("/config_dump?resource=dynamic_warming_clusters") or {"configs": []}
        return {"active": active, "warming": [c["cluster"] for c in warming["configs"]]}

    def state(self, type_url: str) -> SyncState | None:
        connection = self.status.get(cfg.NODE_ID)
        return None if connection is None else connection.of(type_url).state

    async def synced(self, *type_urls: str) -> None:
        async def check() -> bool:
            return all(self.state(t) is SyncState.SYNCED for t in type_urls)

        await eventually(check, f"{[rt.short_name(t) for t in type_urls]} to be ACKed")


Exercise = Callable[["Scenario", int, int], Awaitable[None]]


async def run_scenario(api_type: str, workdir: Path, exercise_fn: Exercise | None = None) -> None:
    cache, status = SnapshotCache(), PushStatus()
    connected: list[Proxy] = []
    disconnected: list[Proxy] = []
    with backend("A") as port_a, backend("B") as port_b:
        first = [cfg.eds_cluster("backend"), cfg.endpoints("backend", port_a), cfg.http_listener()]
        first.append(cfg.route_to("backend"))

        def on_connect(proxy: Proxy) -> None:
            connected.append(proxy)
            cache.set_snapshot(proxy.id, cache.build(first))

        service = AggregatedDiscoveryService(
            cache, status, on_connect=on_connect, on_disconnect=disconnected.append
        )
        server, xds_port = await start_server(service)
        try:
            with envoy(cfg.bootstrap(api_type, xds_port), workdir) as (process, admin_file):
                scenario = Scenario(cache, status, admin_file, process)
                await (exercise_fn or exercise)(scenario, port_a, port_b)
            await eventually(_async(lambda: status.get(cfg.NODE_ID) is None), "the stream to close")
        finally:
            await server.stop(None)
    assert [p.namespace for p in connected] == ["default"]
    assert connected[0].labels == {"app": "envoy-test"}
    assert disconnected == connected


def _async(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def wrapped() -> Any:
        return check()

    return wrapped


async def exercise(s: Scenario, port_a: int, port_b: int) -> None:
    port = await s.listener_port()
    await s.serves(port, "A")
    await s.synced(rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE)

    # An EDS-only change moves traffic.
    listener, route = cfg.http_listener(), cfg.route_to("backend")
    assert s.push(cfg.eds_cluster("backend"), cfg.endpoints("backend", port_b), listener, route)
    await s.serves(port, "B")

    # A CDS-only change: Envoy replaces the cluster and warms it only on a new EDS response.
    changed = cfg.eds_cluster("backend", connect_timeout=2.5)
    assert s.push(changed, cfg.endpoints("backend", port_b), listener, route)

    async def cluster_replaced() -> bool:
        clusters = await s.clusters()
        timeouts = [c["connect_timeout"] for c in clusters["active"] if c["name"] == "backend"]
        return timeouts == ["2.500s"] and not clusters["warming"]

    await eventually(cluster_replaced, "the updated cluster to finish warming", within=10)
    await s.serves(port, "B")

    # A route change moves traffic to a new cluster.
    good = [
        changed,
        cfg.endpoints("backend", port_b),
        cfg.eds_cluster("backend-a"),
        cfg.endpoints("backend-a", port_a),
        listener,
        cfg.route_to("backend-a"),
    ]
    assert s.push(*good)
    await s.serves(port, "A")
    await s.synced(rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE)
    await expect_nack_not_resent(s, good)
    await s.serves(port, "A")


async def expect_nack_not_resent(s: Scenario, good: list[Any]) -> None:
    assert s.push(*good, cfg.broken_cluster("broken"))

    async def nacked() -> bool:
        return s.state(rt.CLUSTER) is SyncState.NACKED

    await eventually(nacked, "Envoy to NACK the broken cluster")
    connection = s.status.get(cfg.NODE_ID)
    assert connection is not None
    cds = connection.of(rt.CLUSTER)
    assert cds.nack is not None and "Expected positive duration" in cds.nack.message  # Envoy's text
    assert cds.nack.version == cds.sent_version
    pushes = cds.pushes
    # An identical rebuild changes no version: nothing is published, nothing is resent.
    assert not s.push(*good, cfg.broken_cluster("broken"))
    await asyncio.sleep(1.5)
    assert cds.pushes == pushes
    assert s.state(rt.CLUSTER) is SyncState.NACKED
    [row] = s.status.status_rows()
    assert row.states["CDS"] is SyncState.NACKED and row.nacks["CDS"] == f"broken: {cds.nack.message}"
    assert list(cds.rejected) == ["broken"]  # the new cluster, not the ones accepted before

    # The fixed snapshot is new: it is sent, ACKed, and the row is all SYNCED but SDS.
    assert s.push(*good)
    await s.synced(rt.CLUSTER)
    assert cds.pushes == pushes + 1
    [row] = s.status.status_rows()
    assert dict(row.states) == {
        "CDS": SyncState.SYNCED,
        "EDS": SyncState.SYNCED,
        "LDS": SyncState.SYNCED,
        "RDS": SyncState.SYNCED,
        "SDS": SyncState.NOT_SENT,
    }


@pytest.mark.timeout(120)
def test_envoy_sotw_ads(tmp_path: Path) -> None:
    asyncio.run(run_scenario("GRPC", tmp_path))


@pytest.mark.timeout(120)
def test_envoy_delta_ads(tmp_path: Path) -> None:
    asyncio.run(run_scenario("DELTA_GRPC", tmp_path))


def bad_endpoints(cluster: str) -> Any:
    """A ClusterLoadAssignment Envoy rejects: its address is no IP (EDS resolves nothing)."""
    assignment = cfg.endpoints(cluster, 9)
    assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = "not-an-ip!"
    return assignment


async def rejected_endpoints_stay_nacked(s: Scenario, port_a: int, port_b: int) -> None:
    """Envoy NACKs one ClusterLoadAssignment; a later, unrelated EDS response is ACKed. The ACK
    vouches only for what it carried: EDS must stay NACKED, naming the rejected resource, until
    that resource is sent again and accepted. Later changes keep flowing meanwhile."""
    port = await s.listener_port()
    await s.serves(port, "A")
    listener, route = cfg.http_listener(), cfg.route_to("backend")
    clusters = [cfg.eds_cluster("backend"), cfg.eds_cluster("other")]
    assert s.push(
        *clusters, cfg.endpoints("backend", port_a), cfg.endpoints("other", port_b), listener, route
    )
    await s.synced(rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE)

    assert s.push(*clusters, cfg.endpoints("backend", port_a), bad_endpoints("other"), listener, route)
    await eventually(_async(lambda: s.state(rt.ENDPOINT) is SyncState.NACKED), "Envoy to NACK the EDS")
    connection = s.status.get(cfg.NODE_ID)
    assert connection is not None
    eds = connection.of(rt.ENDPOINT)
    assert list(eds.rejected) == ["other"], eds.rejected
    assert eds.nack is not None and "not-an-ip!" in eds.nack.message  # Envoy's own text

    # An unrelated change: sent, ACKed, traffic moves. EDS is still not SYNCED: "other" is rejected.
    assert s.push(*clusters, cfg.endpoints("backend", port_b), bad_endpoints("other"), listener, route)
    await s.serves(port, "B")
    await eventually(_async(lambda: eds.acked_nonce == eds.sent_nonce), "the unrelated EDS to be ACKed")
    assert eds.state is SyncState.NACKED and connection.state is SyncState.NACKED
    [row] = s.status.status_rows()
    assert row.nacks["EDS"].startswith("other: ") and "not-an-ip!" in row.nacks["EDS"]
    assert s.status.rejected_counts() == {"EDS": 1}

    # The resource is fixed: sent again, ACKed; everything is SYNCED.
    assert s.push(
        *clusters, cfg.endpoints("backend", port_b), cfg.endpoints("other", port_a), listener, route
    )
    await s.synced(rt.ENDPOINT)
    assert not eds.rejected and connection.state is SyncState.SYNCED
    assert s.status.rejected_counts() == {}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
def test_a_rejected_resource_is_named_and_never_reported_synced(api_type: str, tmp_path: Path) -> None:
    asyncio.run(run_scenario(api_type, tmp_path, rejected_endpoints_stay_nacked))
