"""Issue "self-contained and self-healing", item 3: a second ADS stream with a live Envoy's node
id must not hide the Envoy or move its listeners. pilotfish keeps one stream per node id: the
newer stream closes the older (Istio's behaviour), Envoy reconnects and takes its identity back,
and from then on the Envoy is listed, SYNCED, and its outbound listener is on its own address.

    curl ──► 127.0.12.21:P  the sidecar's outbound listener (OUTBOUND_BIND from its bootstrap)
         ──► 127.0.0.1:E    the echo app (WorkloadEntry at 127.0.0.1, port E)

The impostor claims OUTBOUND_BIND 127.0.12.99: if its metadata decided the config, the listener
would move there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port

from pilotfish.bootstrap import BootstrapOptions, bootstrap
from pilotfish.xds import resources as rt

pytestmark = pytest.mark.e2e

HOST = "ratings.prod.svc.cluster.local"
CLIENT_IP, IMPOSTOR_BIND = "127.0.12.21", "127.0.12.99"


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
metadata: {{name: ratings-1, namespace: prod}}
spec:
  address: 127.0.0.1
  ports: {{http: {echo_port}}}
  labels: {{app: ratings}}
"""


def impostor_node(node_id: str) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": "prod", "LABELS": {"app": "productpage"}, "OUTBOUND_BIND": IMPOSTOR_BIND})
    return base_pb2.Node(id=node_id, metadata=metadata)


async def impostor_stream(xds_port: int, node_id: str, hold: float) -> tuple[int, Any]:
    """Open an ADS stream as ``node_id``; take the CDS response; hold the stream up to ``hold``
    seconds (or until the server ends it). Returns how many responses came and how it ended."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{xds_port}") as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(discovery_pb2.DiscoveryRequest(node=impostor_node(node_id), type_url=rt.CLUSTER))
        received = 0
        try:
            async with asyncio.timeout(hold):
                async for _response in call:
                    received += 1
        except TimeoutError:
            call.cancel()
            return received, "held"
        except grpc.aio.AioRpcError as error:
            return received, error.code()
        return received, await call.code()


def outbound_listeners(envoy: EnvoyProcess, port: int) -> dict[str, str]:
    return {name: address for name, address in envoy.listeners().items() if address.endswith(f":{port}")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hold", [30.0, 0.2], ids=["replaced-by-envoy", "closes-first"])
def test_a_stream_with_a_live_envoys_node_id_cannot_hide_or_move_it(
    tmp_path: Path, echo_factory, envoy_factory, pilotfish_factory, hold: float
) -> None:
    echo: EchoProcess = echo_factory("ratings-1")
    port = free_port(CLIENT_IP)
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(mesh_config(port, echo.port))
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
    node_id = opts.full_node_id()
    own = {f"{CLIENT_IP}_{port}": f"{CLIENT_IP}:{port}"}
    envoy.wait_for(lambda: outbound_listeners(envoy, port) == own, message="the outbound listener")
    pf.wait_synced(node_id, ("CDS", "EDS", "LDS", "RDS"))

    received, ended = asyncio.run(impostor_stream(pf.xds_port, node_id, hold))

    assert received >= 1  # the impostor was served: it held the identity for a moment
    if hold > 1:
        # Envoy's stream was closed; Envoy reconnected and its newer stream closed the impostor's.
        assert ended is grpc.StatusCode.ABORTED, ended
    pf.wait_synced(node_id, ("CDS", "EDS", "LDS", "RDS"), timeout=20)
    [row] = [r for r in pf.syncz() if r["proxy"] == node_id]
    assert row["state"] == "SYNCED", row
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # and it stays so: the listener never moves
        assert outbound_listeners(envoy, port) == own, envoy.listeners()
        time.sleep(0.2)
    response = http.get(f"http://{CLIENT_IP}:{port}/", headers={"host": HOST})
    assert response.status == 200 and response.json()["name"] == "ratings-1", response
