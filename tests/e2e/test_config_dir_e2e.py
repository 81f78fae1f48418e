"""Issue "self-contained and self-healing", item 4: the ``--config`` directory removed,
recreated, or a file truncated, is an editing accident. Envoy keeps its listeners (pilotfish
keeps the last good content and says so), and once the directory is back an edit applies again.

    curl ──► 127.0.13.21:P  the sidecar's outbound listener
         ──► 127.0.0.1:E    the echo app the WorkloadEntry names (A, then B after the edit)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port

from pilotfish.bootstrap import BootstrapOptions, bootstrap

pytestmark = pytest.mark.e2e

HOST = "ratings.prod.svc.cluster.local"
CLIENT_IP = "127.0.13.21"


def mesh_config(port: int, echo_port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  address: 127.0.0.1
  ports: {{http: {echo_port}}}
  labels: {{app: ratings}}
"""


def answered_by(port: int) -> str | None:
    try:
        response = http.get(f"http://{CLIENT_IP}:{port}/", headers={"host": HOST})
    except OSError:
        return None
    return str(response.json()["name"]) if response.status == 200 else None


@pytest.mark.timeout(120)
def test_removing_and_recreating_the_config_directory_keeps_listeners_then_applies_an_edit(
    tmp_path: Path, echo_factory, envoy_factory, pilotfish_factory
) -> None:
    echo_a: EchoProcess = echo_factory("ratings-a")
    echo_b: EchoProcess = echo_factory("ratings-b")
    port = free_port(CLIENT_IP)
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(mesh_config(port, echo_a.port))
    pf: PilotfishProcess = pilotfish_factory(config)
    opts = BootstrapOptions(
        "productpage",
        "prod",
        {"app": "productpage"},
        xds_port=pf.xds_port,
        admin_port=0,
        outbound_bind=CLIENT_IP,
    )
    envoy: EnvoyProcess = envoy_factory(bootstrap(opts), name="productpage")
    listener = f"{CLIENT_IP}_{port}"
    envoy.wait_for(lambda: answered_by(port) == "ratings-a", timeout=20, message="traffic to ratings-a")
    before = envoy.listeners()
    assert listener in before

    # A non-atomic save caught half way: the file is empty for a moment.
    (config / "mesh.yaml").write_text("")
    envoy.wait_for(lambda: "0 bytes" in pf.log_text(), message="the truncation logged")
    (config / "mesh.yaml").write_text(mesh_config(port, echo_a.port))

    shutil.rmtree(config)
    envoy.wait_for(lambda: "is gone" in pf.log_text(), message="the removal logged")
    problems = pf.get_json("/debug/problemz")["config_dir"]
    assert problems["present"] is False and str(config / "mesh.yaml") in problems["kept"], problems
    time.sleep(2.0)  # several debounce periods and directory checks: nothing is withdrawn
    assert envoy.listeners() == before
    assert answered_by(port) == "ratings-a"

    config.mkdir()
    (config / "mesh.yaml").write_text(mesh_config(port, echo_a.port))
    envoy.wait_for(lambda: pf.get_json("/debug/problemz")["config_dir"]["present"], message="dir back")
    time.sleep(0.5)
    (config / "mesh.yaml").write_text(mesh_config(port, echo_b.port))  # the edit
    envoy.wait_for(lambda: answered_by(port) == "ratings-b", timeout=20, message="the edit applied")
    assert listener in envoy.listeners()
    assert pf.get_json("/debug/problemz")["config_dir"]["kept"] == {}
