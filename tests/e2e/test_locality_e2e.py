"""Issue "TCP and TLS traffic", done-when: locality failover with real Envoy and real traffic.

A client sidecar in locality ``r1/z1`` (``pilotfish bootstrap``'s locality) calls a service with
three endpoints: ``near`` in r1/z1, ``next`` in r1/z2 and ``remote`` in r2/z1. The
DestinationRule has outlier detection, so pilotfish gives the localities Envoy priorities 0, 1
and 2. Traffic stays on ``near``; when ``near`` fails, outlier detection ejects it and traffic
moves to ``next`` (never ``remote``); when ``near`` recovers, traffic comes back. With
``distribute`` instead (r1/z1 20%, r1/z2 80%), Envoy's locality-weighted balancing splits the
traffic so, and r2 (in no ``to``) gets none.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port
from harness.waiting import wait_for

from pilotfish.bootstrap import BootstrapOptions, bootstrap

pytestmark = pytest.mark.e2e

CLIENT = "127.0.15.51"
HOST = "backend.loc.svc.cluster.local"


def port_free_on_client() -> int:
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as sock:
                sock.bind((CLIENT, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def config(port: int, echoes: dict[str, tuple[int, str]]) -> str:
    entries = "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: loc}}
spec:
  address: 127.0.0.1
  ports: {{http: {echo_port}}}
  labels: {{app: backend}}
  locality: {locality}
"""
        for name, (echo_port, locality) in echoes.items()
    )
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend, namespace: loc}}
spec:
  hosts: [{HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: backend}}}}
{entries}"""


FAILOVER = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend, namespace: loc}}
spec:
  host: {HOST}
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 8s  # long enough that the checks below finish inside it on a busy machine
      maxEjectionPercent: 100
"""


class Localities:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stack = ExitStack()
        self.port = port_free_on_client()
        self.echoes: dict[str, EchoProcess] = {}

    def start(self) -> Localities:
        localities = {"near": "r1/z1", "next": "r1/z2", "remote": "r2/z1"}
        for name in localities:
            echo = EchoProcess(name)
            self.stack.callback(echo.stop)
            self.echoes[name] = echo.start()
        directory = self.root / "config"
        directory.mkdir()
        echoes = {name: (self.echoes[name].port, locality) for name, locality in localities.items()}
        (directory / "mesh.yaml").write_text(config(self.port, echoes))
        (directory / "rule.yaml").write_text(FAILOVER)
        self.pilotfish = PilotfishProcess(directory, self.root / "pf")
        self.stack.callback(self.pilotfish.stop)
        self.pilotfish.start()
        opts = BootstrapOptions(
            "client",
            "loc",
            {"app": "client"},
            ip=CLIENT,
            xds_port=self.pilotfish.xds_port,
            admin_port=0,
            outbound_bind=CLIENT,
            locality="r1/z1",
        )
        self.envoy = EnvoyProcess(bootstrap(opts), workdir=self.root / "client", name="client")
        self.stack.callback(self.envoy.stop)
        self.envoy.start(wait=False)
        self.envoy.wait_ready(30)
        return self

    def call(self) -> tuple[int, str]:
        response = http.get(f"http://{CLIENT}:{self.port}/", headers={"host": HOST}, timeout=5)
        name = response.json().get("name", "") if response.status == 200 else ""
        return response.status, name

    def diagnostics(self) -> str:
        return f"--- pilotfish\n{self.pilotfish.log_text()[-3000:]}\n--- envoy\n{self.envoy.log_tail(40)}"


@pytest.fixture
def localities(tmp_path: Path) -> Iterator[Localities]:
    mesh = Localities(tmp_path)
    with mesh.stack:
        try:
            yield mesh.start()
        except BaseException:
            print(mesh.diagnostics())
            raise


def served_by(mesh: Localities, count: int) -> Counter[str]:
    return Counter(name for status, name in (mesh.call() for _ in range(count)) if status == 200)


def settled_on(mesh: Localities, name: str, run: int = 10) -> bool:
    """The last ``run`` calls were all answered by ``name``."""
    return served_by(mesh, run) == Counter({name: run})


def test_locality_failover_moves_to_the_next_locality_and_back(localities: Localities) -> None:
    mesh = localities
    wait_for(lambda: mesh.call() == (200, "near"), timeout=20, message="near serves")
    assert served_by(mesh, 20) == Counter({"near": 20})  # priority 0 only

    # the EDS assignment Envoy holds: the three localities at priorities 0, 1, 2
    dump = mesh.envoy.config_dump(include_eds=True)
    priorities = {
        group["locality"].get("zone", "") + "@" + group["locality"]["region"]: group.get("priority", 0)
        for config in dump["configs"]
        if config["@type"].endswith("EndpointsConfigDump")
        for item in config.get("dynamic_endpoint_configs", [])
        if item["endpoint_config"]["cluster_name"].endswith(HOST)
        for group in item["endpoint_config"]["endpoints"]
    }
    assert priorities == {"z1@r1": 0, "z2@r1": 1, "z1@r2": 2}, priorities

    mesh.echoes["near"].configure(fail_rate=1.0)
    wait_for(lambda: settled_on(mesh, "next"), timeout=20, message="failover to r1/z2")
    assert served_by(mesh, 20) == Counter({"next": 20})  # the next locality, never r2
    assert mesh.echoes["remote"].stats()["requests"] == 0

    mesh.echoes["near"].configure(fail_rate=0.0)
    wait_for(lambda: settled_on(mesh, "near"), timeout=40, message="back to r1/z1")
    assert served_by(mesh, 20) == Counter({"near": 20})
    assert mesh.echoes["remote"].stats()["requests"] == 0


DISTRIBUTE = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend, namespace: loc}}
spec:
  host: {HOST}
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: r1/z1/*
          to: {{"r1/z1/*": 20, "r1/z2/*": 80}}
"""


def test_distribute_weights_traffic_across_localities(localities: Localities) -> None:
    mesh = localities
    wait_for(lambda: mesh.call() == (200, "near"), timeout=20, message="near serves")
    (mesh.root / "config" / "rule.yaml").write_text(DISTRIBUTE)  # replaces the failover rule
    wait_for(lambda: served_by(mesh, 20)["next"] >= 8, timeout=20, message="distribute in force")
    counts = served_by(mesh, 200)
    assert counts["remote"] == 0  # r2 is in no "to": its endpoints are left out
    assert counts["near"] + counts["next"] == 200
    assert 15 <= counts["near"] <= 70, counts  # 20% of 200 is 40; generous bounds, never 0 or all
