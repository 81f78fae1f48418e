"""Issue "xDS server", done-when: clusters and endpoints from ServiceEntry / WorkloadEntry /
DestinationRule, pushed by a real ``pilotfish serve`` over ADS to a real Envoy, with real traffic.

Every test runs twice: with a state-of-the-world and with a delta (incremental) ADS bootstrap.
Traffic goes through a static "probe" listener that routes to the cluster named in a header, so
these tests see exactly the clusters and endpoints pilotfish pushed.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.mesh import TARGET_HEADER, node_id, sidecar_bootstrap
from harness.pilotfish import PilotfishProcess

from pilotfish.cli import main as cli_main

pytestmark = pytest.mark.e2e

HOST = "ratings.prod.svc.cluster.local"
DEFAULT = f"outbound|9080||{HOST}"
SUBSET = f"outbound|9080|testversion|{HOST}"
PROXY = node_id()

SERVICE = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ratings}}}}
"""


def destination_rule(top: str = "LEAST_CONN") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bookinfo-ratings, namespace: prod}}
spec:
  host: {HOST}
  trafficPolicy: {{loadBalancer: {{simple: {top}}}}}
  subsets:
  - name: testversion
    labels: {{version: v3}}
    trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
"""


def workload_entry(echo: EchoProcess, version: str, address: str = "127.0.0.1") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {echo.name}, namespace: prod}}
spec:
  address: {address}
  ports: {{http: {echo.port}}}
  labels: {{app: ratings, version: {version}}}
"""


@dataclass
class Mesh:
    pilotfish: PilotfishProcess
    envoy: EnvoyProcess
    config: Path
    echos: list[EchoProcess]

    def send(self, cluster: str, n: int, concurrency: int = 1) -> Counter[str]:
        return http.count_by_name(
            self.envoy.url(), n, headers={TARGET_HEADER: cluster}, concurrency=concurrency
        )

    def write(self, name: str, text: str) -> None:
        tmp = self.config / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(self.config / name)  # atomic: the watcher never sees half a file

    def endpoints(self, cluster: str) -> list[str]:
        return sorted(self.envoy.endpoints(cluster))


VERSIONS = ["v3", "v3", "v3", "v1", "v1"]


@pytest.fixture(params=["sotw", "delta"])
def mesh(request, tmp_path, echo_factory, envoy_factory, pilotfish_factory) -> Mesh:
    echos = [echo_factory(f"ratings-{v}-{i}", labels={"version": v}) for i, v in enumerate(VERSIONS)]
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    (config / "dr.yaml").write_text(destination_rule())
    for echo, version in zip(echos, VERSIONS, strict=True):
        (config / f"{echo.name}.yaml").write_text(workload_entry(echo, version))
    pf = pilotfish_factory(config)
    envoy = envoy_factory(sidecar_bootstrap(pf.xds_port, delta=request.param == "delta"))
    m = Mesh(pf, envoy, config, echos)
    envoy.wait_for(lambda: len(m.endpoints(DEFAULT)) == 5 and len(m.endpoints(SUBSET)) == 3, message="EDS")
    return m


def test_subset_cluster_reaches_only_v3_round_robin(mesh: Mesh) -> None:
    counts = mesh.send(SUBSET, 300)
    v3 = {e.name for e, v in zip(mesh.echos, VERSIONS, strict=True) if v == "v3"}
    assert set(counts) == v3, counts
    assert all(90 <= c <= 110 for c in counts.values()), counts


def share_of_slow_endpoint(mesh: Mesh) -> float:
    slow = mesh.echos[0]
    slow.configure(delay=0.25)
    try:
        counts = mesh.send(DEFAULT, 200, concurrency=10)
    finally:
        slow.configure(delay=0)
    assert sum(counts.values()) == 200 and set(counts) <= {e.name for e in mesh.echos}, counts
    return counts[slow.name] / 200


def test_least_request_avoids_a_slow_endpoint_and_round_robin_does_not(mesh: Mesh) -> None:
    fair = 1 / len(mesh.echos)
    least_request = share_of_slow_endpoint(mesh)
    assert least_request < 0.5 * fair, f"LEAST_CONN gave the slow endpoint {least_request:.0%}"

    mesh.write("dr.yaml", destination_rule("ROUND_ROBIN"))
    mesh.envoy.wait_for(
        lambda: (
            mesh.envoy.config_dump("dynamic_active_clusters")
            and cluster_lb_policy(mesh, DEFAULT) == "ROUND_ROBIN"
        ),
        message="ROUND_ROBIN pushed",
    )
    round_robin = share_of_slow_endpoint(mesh)
    assert round_robin >= 0.8 * fair, f"ROUND_ROBIN gave the slow endpoint only {round_robin:.0%}"
    shares = f"LEAST_REQUEST {least_request:.1%}, ROUND_ROBIN {round_robin:.1%}"
    print(f"slow endpoint share: {shares} (fair {fair:.0%})")


def cluster_lb_policy(mesh: Mesh, name: str) -> str:
    dump = mesh.envoy.config_dump("dynamic_active_clusters")
    for config in dump.get("configs", []):
        cluster = config.get("cluster", {})
        if cluster.get("name") == name:
            return str(cluster.get("lb_policy", "ROUND_ROBIN"))
    return ""


def acked_eds(mesh: Mesh) -> str:
    return str(mesh.pilotfish.type_status(PROXY, "EDS").get("acked_version", ""))


def test_adding_and_removing_a_workload_entry_moves_traffic_without_restarting_envoy(
    mesh: Mesh, echo_factory
) -> None:
    extra = echo_factory("ratings-v3-new", labels={"version": "v3"})
    envoy_pid = mesh.envoy.pid
    before = acked_eds(mesh)
    t0 = time.monotonic()
    mesh.write("extra.yaml", workload_entry(extra, "v3"))
    mesh.envoy.wait_for(lambda: acked_eds(mesh) not in ("", before), timeout=10, message="EDS ACK after add")
    added = time.monotonic() - t0
    mesh.envoy.wait_for(lambda: len(mesh.endpoints(SUBSET)) == 4, message="4 v3 endpoints")
    assert extra.name in mesh.send(SUBSET, 40)

    before = acked_eds(mesh)
    t0 = time.monotonic()
    (mesh.config / "extra.yaml").unlink()
    mesh.envoy.wait_for(
        lambda: acked_eds(mesh) not in ("", before), timeout=10, message="EDS ACK after remove"
    )
    removed = time.monotonic() - t0
    mesh.envoy.wait_for(lambda: len(mesh.endpoints(SUBSET)) == 3, message="3 v3 endpoints")
    assert extra.name not in mesh.send(SUBSET, 40)
    assert mesh.envoy.pid == envoy_pid
    print(f"file change → Envoy ACK: add {added * 1000:.0f} ms, remove {removed * 1000:.0f} ms")


def churn_counters(envoy: EnvoyProcess) -> dict[str, int | None]:
    names = (
        "cluster_manager.cluster_added",
        "cluster_manager.cluster_modified",
        "cluster_manager.cluster_removed",
    )
    return {n: envoy.stat(n) for n in names}


def test_envoy_keeps_serving_without_pilotfish_and_resyncs_without_churn(mesh: Mesh) -> None:
    churn = churn_counters(mesh.envoy)
    mesh.pilotfish.kill()
    mesh.envoy.wait_for(
        lambda: mesh.envoy.stat("control_plane.connected_state") == 0, message="disconnect seen"
    )
    counts = mesh.send(SUBSET, 30)
    assert sum(counts.values()) == 30 and not any(k.startswith("<") for k in counts), counts

    mesh.pilotfish.start()
    mesh.envoy.wait_for(
        lambda: mesh.envoy.stat("control_plane.connected_state") == 1, timeout=15, message="reconnect"
    )
    # Delta: the client's initial_resource_versions match, so EDS is not resent, yet SYNCED.
    mesh.pilotfish.wait_synced(PROXY)
    assert churn_counters(mesh.envoy) == churn, "reconnecting to an unchanged config changed clusters"
    assert sum(mesh.send(SUBSET, 30).values()) == 30


def test_an_endpoint_envoy_would_reject_is_left_out_and_later_changes_still_arrive(mesh: Mesh) -> None:
    """Valid Istio (a WorkloadEntry may name a host), but an EDS endpoint must be an IP: sent as
    is, Envoy would NACK the whole ClusterLoadAssignment and every later change to it. pilotfish
    leaves that one endpoint out, says so (log, /debug/problemz, metric), and the service keeps
    updating. NACK handling itself, with a real Envoy: tests/integration/xds/test_xds_envoy.py."""
    mesh.pilotfish.wait_synced(PROXY)
    mesh.write(
        "bad.yaml",
        workload_entry(mesh.echos[0], "v3", address="not-an-ip.example").replace(
            f"name: {mesh.echos[0].name}", "name: ratings-by-hostname"
        ),
    )

    def dropped() -> list[dict[str, object]]:
        return list(mesh.pilotfish.get_json("/debug/problemz")["dropped_endpoints"])

    mesh.envoy.wait_for(dropped, timeout=10, message="the endpoint reported as left out")
    [entry] = dropped()
    assert entry["address"] == "not-an-ip.example" and "not an IP address" in str(entry["reason"])
    assert "not-an-ip.example" in mesh.pilotfish.log_text()
    metrics = str(http.get(f"http://{mesh.pilotfish.admin}/metrics").body)
    assert "pilotfish_xds_endpoints_dropped 1.0" in metrics
    assert 'pilotfish_xds_rejects_total{type="EDS"}' not in metrics
    # A later valid change to the same service reaches Envoy, and nothing was NACKed.
    other = next(e for e, v in zip(mesh.echos, VERSIONS, strict=True) if v != "v3")
    mesh.write("later.yaml", workload_entry(other, "v3").replace(f"name: {other.name}", "name: later"))
    mesh.envoy.wait_for(lambda: len(mesh.endpoints(SUBSET)) == 4, timeout=10, message="the later endpoint")
    mesh.pilotfish.wait_synced(PROXY)
    assert sum(mesh.send(SUBSET, 8).values()) == 8
    for name in ("bad.yaml", "later.yaml"):
        (mesh.config / name).unlink()
    mesh.envoy.wait_for(lambda: len(mesh.endpoints(SUBSET)) == 3, timeout=10, message="back to three")
    mesh.envoy.wait_for(lambda: not dropped(), timeout=10, message="nothing left out")


def test_proxy_config_shows_what_was_sent(mesh: Mesh, capsys) -> None:
    assert cli_main(["proxy-config", "--admin", mesh.pilotfish.admin, PROXY, "cluster"]) == 0
    out = capsys.readouterr().out
    assert DEFAULT in out and SUBSET in out and "LEAST_REQUEST" in out


def test_concurrent_traffic_during_config_churn_never_fails(mesh: Mesh) -> None:
    """Make-before-break: updating the DestinationRule while requests flow drops none."""

    def load() -> Counter[str]:
        return mesh.send(SUBSET, 150, concurrency=3)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(load)
        for top in ("ROUND_ROBIN", "RANDOM", "LEAST_CONN"):
            mesh.write("dr.yaml", destination_rule(top))
            time.sleep(0.3)
        counts = future.result()
    assert sum(counts.values()) == 150 and not any(k.startswith("<") for k in counts), counts


def test_an_invalid_change_is_reported_and_the_last_good_config_stays(mesh: Mesh) -> None:
    mesh.pilotfish.wait_synced(PROXY)
    cds_before = mesh.pilotfish.type_status(PROXY, "CDS")["acked_version"]
    mesh.write("dr.yaml", destination_rule("LEAST_CONN").replace("simple: ROUND_ROBIN", "simple: FASTEST"))
    log_says = lambda: "FASTEST" in mesh.pilotfish.log_text()  # noqa: E731
    mesh.envoy.wait_for(log_says, timeout=10, message="validation error logged")
    assert "dr.yaml:" in mesh.pilotfish.log_text() and "must be one of" in mesh.pilotfish.log_text()
    metrics = http.get(f"http://{mesh.pilotfish.admin}/metrics").body
    assert "pilotfish_config_validation_errors 1.0" in str(metrics)
    assert mesh.pilotfish.type_status(PROXY, "CDS")["acked_version"] == cds_before
    assert cluster_lb_policy(mesh, SUBSET) == "ROUND_ROBIN"
    assert len(mesh.send(SUBSET, 30)) == 3


def test_metrics_count_pushes_and_nacks(mesh: Mesh) -> None:
    mesh.pilotfish.wait_synced(PROXY)
    text = str(http.get(f"http://{mesh.pilotfish.admin}/metrics").body)
    assert 'pilotfish_xds_connected_proxies{kind="sidecar"} 1.0' in text
    assert (
        'pilotfish_xds_pushes_total{type="CDS"}' in text and 'pilotfish_xds_pushes_total{type="EDS"}' in text
    )
    assert 'pilotfish_proxy_convergence_time_seconds_count{type="CDS"}' in text
