"""Issue "xDS at scale", done-when: an endpoint change reaches a real Envoy as exactly the changed
ClusterLoadAssignment. A real ``pilotfish serve`` watches a directory with three services whose
endpoints live in their own WorkloadEntry files; rewriting one file must update that one cluster
in Envoy (its EDS ``update_success`` counter moves, its ``version`` changes) while the other
clusters keep their counters and versions, and no new CDS arrives. SotW and delta alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.envoy import EnvoyProcess
from harness.mesh import sidecar_bootstrap
from harness.pilotfish import PilotfishProcess

pytestmark = pytest.mark.e2e

SERVICES = ("alpha", "beta", "gamma")


def host(service: str) -> str:
    return f"{service}.prod.svc.cluster.local"


def cluster(service: str) -> str:
    return f"outbound|9080||{host(service)}"


def service_entry(service: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {service}, namespace: prod}}
spec:
  hosts: [{host(service)}]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: {service}}}}}
"""


def workload_entry(service: str, port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {service}-1, namespace: prod}}
spec:
  address: 127.0.0.1
  ports: {{http: {port}}}
  labels: {{app: {service}}}
"""


@dataclass
class Mesh:
    pilotfish: PilotfishProcess
    envoy: EnvoyProcess
    config: Path

    def write(self, name: str, text: str) -> None:
        tmp = self.config / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(self.config / name)  # atomic: the watcher never sees half a file

    def eds_stats(self) -> dict[str, dict[str, int]]:
        """Per service: its cluster's EDS subscription counters and version hash."""
        stats = self.envoy.stats()
        out: dict[str, dict[str, int]] = {}
        for service in SERVICES:
            prefix = f"cluster.{cluster(service)};."  # Istio's alt_stat_name ends in ";"
            out[service] = {
                key: stats.get(prefix + key, -1) for key in ("update_attempt", "update_success", "version")
            }
        return out


@pytest.fixture(params=["sotw", "delta"])
def mesh(request, tmp_path, envoy_factory, pilotfish_factory) -> Mesh:
    config = tmp_path / "config"
    config.mkdir()
    for i, service in enumerate(SERVICES):
        (config / f"{service}.yaml").write_text(service_entry(service))
        (config / f"{service}-workloads.yaml").write_text(workload_entry(service, 20000 + i))
    pf = pilotfish_factory(config)
    envoy = envoy_factory(sidecar_bootstrap(pf.xds_port, delta=request.param == "delta"))
    m = Mesh(pf, envoy, config)
    envoy.wait_for(lambda: all(envoy.endpoints(cluster(s)) for s in SERVICES), message="EDS of every service")
    return m


def test_an_endpoint_change_updates_only_its_cluster(mesh: Mesh) -> None:
    envoy = mesh.envoy
    cds_before = envoy.stat("cluster_manager.cds.update_success")
    before = mesh.eds_stats()
    assert all(s["update_success"] >= 1 and s["version"] != -1 for s in before.values()), before

    mesh.write("beta-workloads.yaml", workload_entry("beta", 20999))
    envoy.wait_for(
        lambda: envoy.endpoints(cluster("beta")) == ["127.0.0.1:20999"], message="beta's new endpoint"
    )

    after = mesh.eds_stats()
    assert after["beta"]["update_success"] == before["beta"]["update_success"] + 1, (before, after)
    assert after["beta"]["version"] != before["beta"]["version"]
    assert after["alpha"] == before["alpha"] and after["gamma"] == before["gamma"], (before, after)
    assert envoy.stat("cluster_manager.cds.update_success") == cds_before  # no CDS was pushed
    assert envoy.endpoints(cluster("alpha")) == ["127.0.0.1:20000"]
    assert envoy.endpoints(cluster("gamma")) == ["127.0.0.1:20002"]
