"""Scale out (issue 11, item 4) with real Envoys: one Envoy on each of two replicas sharing one
PostgreSQL and one CA. After a DestinationRule applied on replica A and a WorkloadEntry applied on
replica B, both Envoys hold the same clusters, endpoints, listeners and routes at the same
versions (their /config_dump), and both send traffic to the new workload through the new subset."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import http
from harness.mesh import TARGET_HEADER, sidecar_bootstrap
from registry_e2e_support import CLUSTER, HOST, SERVICE, Api, scratch_database

pytestmark = pytest.mark.e2e

SUBSET = f"outbound|9080|v2|{HOST}"
RULE = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: prod}}
spec:
  host: {HOST}
  subsets: [{{name: v2, labels: {{version: v2}}}}]
"""


def workload(port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-v2, namespace: prod}}
spec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: ratings, version: v2}}}}
"""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_database("pilotfish_e2e") as url:
        yield url


def dynamic_config(envoy: Any) -> dict[str, dict[str, Any]]:
    """What xDS gave this Envoy, by type and name: each resource with its version_info (the
    timestamps Envoy adds are dropped)."""
    dump = envoy.config_dump(include_eds=True)
    out: dict[str, dict[str, Any]] = {"clusters": {}, "endpoints": {}, "listeners": {}, "routes": {}}
    for config in dump["configs"]:
        for item in config.get("dynamic_active_clusters", []):
            out["clusters"][item["cluster"]["name"]] = (item["version_info"], item["cluster"])
        for item in config.get("dynamic_endpoint_configs", []):
            assignment = item["endpoint_config"]
            out["endpoints"][assignment["cluster_name"]] = (item.get("version_info"), assignment)
        for item in config.get("dynamic_listeners", []):
            state = item.get("active_state", {})
            out["listeners"][item["name"]] = (state.get("version_info"), state.get("listener"))
        for item in config.get("dynamic_route_configs", []):
            route = item["route_config"]
            out["routes"][route["name"]] = (item["version_info"], route)
    return out


def test_envoys_on_two_replicas_converge_after_changes_on_either(
    tmp_path: Path, postgres_url: str, pilotfish_factory: Any, envoy_factory: Any, echo_factory: Any
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    shared = ["--store", postgres_url, "--ca-dir", str(tmp_path / "ca")]
    a = pilotfish_factory(config, extra_args=shared)
    b = pilotfish_factory(config, extra_args=shared)  # after A: the CA exists, B loads the same one
    envoys = [
        envoy_factory(sidecar_bootstrap(pf.xds_port, name=name, labels={"app": "client"}))
        for pf, name in ((a, "client-a"), (b, "client-b"))
    ]
    for envoy in envoys:
        envoy.wait_for(lambda envoy=envoy: CLUSTER in envoy.clusters(), message="the ratings cluster")
    echo = echo_factory("ratings-v2")

    assert Api(a.admin).apply(RULE).status == 200
    assert Api(b.admin).apply(workload(echo.port)).status == 200

    address = f"127.0.0.1:{echo.port}"
    for envoy in envoys:
        envoy.wait_for(
            lambda envoy=envoy: envoy.endpoints(SUBSET) == [address],
            timeout=15,
            message="A's subset with B's workload",
        )
    first, second = (dynamic_config(envoy) for envoy in envoys)
    assert SUBSET in first["clusters"] and SUBSET in first["endpoints"], first.keys()
    for kind in first:
        assert first[kind] == second[kind], f"the Envoys differ in their {kind}"
    for envoy in envoys:
        served = http.count_by_name(envoy.url(), 10, {TARGET_HEADER: SUBSET})
        assert served == Counter({echo.name: 10}), served
