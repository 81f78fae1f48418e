"""Scale out (issue 11, item 4): two ``pilotfish serve`` replicas on one PostgreSQL, each serving
a share of the proxies, converge on the same config after a change made on either replica.

Four ADS (SotW) clients over real gRPC channels, two on each replica, follow CDS → EDS and
LDS → RDS and ACK every response as Envoy does. After a DestinationRule applied on replica A and a
WorkloadEntry applied on replica B, every proxy must hold byte-identical clusters, endpoints,
listeners and routes with equal versions, and the same mesh root over SDS (the replicas share the
CA directory, as the README's "Running several replicas" asks). Real PostgreSQL at 127.0.0.1:5432
with a throwaway database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from harness import http
from harness.waiting import wait_for
from test_store_support import database_url, scratch_database

from pilotfish.bootstrap import BootstrapOptions, node
from pilotfish.xds import resources as rt

pytestmark = pytest.mark.integration

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
HOST = "ratings.prod.svc.cluster.local"
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
RULE = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: prod}}
spec:
  host: {HOST}
  subsets: [{{name: v2, labels: {{version: v2}}}}]
"""
WORKLOAD = """apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v2, namespace: prod}
spec: {address: 10.9.0.7, ports: {http: 9080}, labels: {app: ratings, version: v2}}
"""
SUBSET_CLUSTER = f"outbound|9080|v2|{HOST}"
COMPARED = (rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE)


class AdsProxy:
    """One simulated Envoy: SotW ADS, Envoy's subscription order, every response ACKed; keeps the
    latest bytes of every resource and the version of the last response per type."""

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port
        opts = BootstrapOptions(name, "prod", {"app": "productpage"})
        self.node = json_format.ParseDict(node(opts), base_pb2.Node())
        self.held: dict[str, dict[str, bytes]] = {t: {} for t in (*COMPARED, rt.SECRET)}
        self.versions: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        self.error: BaseException | None = None

    def view(self) -> tuple[dict[str, dict[str, bytes]], dict[str, str]]:
        """A copy of what this proxy holds (read from the test's thread)."""
        versions = {t: v for t, v in self.versions.items() if t in COMPARED}  # SDS: a key per proxy
        return {t: dict(v) for t, v in self.held.items() if t in COMPARED}, versions

    async def run(self) -> None:
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                call = channel.stream_stream(
                    METHOD,
                    request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                    response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
                )()
                await call.write(discovery_pb2.DiscoveryRequest(node=self.node, type_url=rt.CLUSTER))
                await call.write(discovery_pb2.DiscoveryRequest(type_url=rt.LISTENER))
                while (response := await call.read()) is not grpc.aio.EOF:
                    await self._on_response(call, response)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # reported by the test, never swallowed
            self.error = error

    async def _on_response(self, call: Any, response: Any) -> None:
        type_url = response.type_url
        held = self.held[type_url]
        if type_url in rt.FULL_STATE_TYPES:
            held.clear()
        for resource in response.resources:
            held[_name(type_url, resource.value)] = resource.value
        self.versions[type_url] = response.version_info
        child = {rt.CLUSTER: rt.ENDPOINT, rt.LISTENER: rt.ROUTE}.get(type_url)
        wanted = _children(type_url, held.values())
        secrets = sorted({"default", "ROOTCA"} if type_url == rt.CLUSTER and held else [])
        ack = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=response.version_info,
            response_nonce=response.nonce,
            resource_names=self.names.get(type_url, []),
        )
        await call.write(ack)
        for kind, names in ((child, wanted), (rt.SECRET, secrets)):
            if kind is not None and names and names != self.names.get(kind):
                self.names[kind] = names
                await call.write(discovery_pb2.DiscoveryRequest(type_url=kind, resource_names=names))


def _name(type_url: str, value: bytes) -> str:
    message = {
        rt.CLUSTER: cluster_pb2.Cluster,
        rt.LISTENER: listener_pb2.Listener,
    }.get(type_url)
    if message is not None:
        return str(message.FromString(value).name)
    return _first_string(value)


def _first_string(value: bytes) -> str:
    """Field 1 (``cluster_name`` / ``name``), written first by protobuf; short names only."""
    assert value[0] == 0x0A and value[1] < 0x80, value[:8]
    return value[2 : 2 + value[1]].decode()


def _children(type_url: str, values: Any) -> list[str]:
    """EDS names of EDS clusters, or RDS names of the listeners' HTTP connection managers."""
    names: set[str] = set()
    for value in values:
        if type_url == rt.CLUSTER:
            cluster = cluster_pb2.Cluster.FromString(value)
            if cluster.type == cluster_pb2.Cluster.EDS:
                names.add(cluster.eds_cluster_config.service_name or cluster.name)
        elif type_url == rt.LISTENER:
            listener = listener_pb2.Listener.FromString(value)
            for chain in listener.filter_chains:
                for f in chain.filters:
                    if f.typed_config.type_url.endswith("HttpConnectionManager"):
                        hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(
                            f.typed_config.value
                        )
                        if hcm.HasField("rds"):
                            names.add(hcm.rds.route_config_name)
    return sorted(names)


class Proxies:
    """Runs the simulated proxies on an event loop in a background thread; ``stop`` always ends it."""

    def __init__(self, proxies: list[AdsProxy]) -> None:
        self.proxies = proxies
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.tasks = [self.loop.create_task(p.run()) for p in self.proxies]
        self.loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        self.loop.close()

    def stop(self) -> None:
        def cancel() -> None:
            for task in self.tasks:
                task.cancel()

        self.loop.call_soon_threadsafe(cancel)
        self.thread.join(10)
        assert not self.thread.is_alive(), "the ADS clients did not stop"

    def converged(self, must_contain: bytes) -> dict[str, dict[str, bytes]] | None:
        """The config every proxy holds when all hold the same, with ``must_contain`` in it."""
        errors = [f"{p.name}: {p.error!r}" for p in self.proxies if p.error]
        assert not errors, errors
        views = [p.view() for p in self.proxies]
        first = views[0]
        if not all(first[0][t] for t in COMPARED) or any(v != first for v in views[1:]):
            return None
        everything = b"".join(b for held in first[0].values() for b in held.values())
        return first[0] if must_contain in everything else None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_database("pilotfish_replicas") as name:
        yield database_url(name)


def apply(admin: str, text: str) -> None:
    headers = {"content-type": "application/yaml"}
    response = http.request("POST", f"http://{admin}/apis", headers, body=text, timeout=10)
    assert response.status == 200, response


def test_proxies_spread_over_two_replicas_converge_after_a_change_on_either(
    tmp_path: Path, postgres_url: str, pilotfish_factory: Any
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    shared = ["--store", postgres_url, "--ca-dir", str(tmp_path / "ca")]
    a = pilotfish_factory(config, extra_args=shared)
    b = pilotfish_factory(config, extra_args=shared)  # after A: the CA exists, B loads the same one
    proxies = [AdsProxy(f"p{i}", (a if i % 2 == 0 else b).xds_port) for i in range(4)]
    running = Proxies(proxies)
    try:
        wait_for(
            lambda: running.converged(HOST.encode()), timeout=20, message="the initial config everywhere"
        )

        apply(a.admin, RULE)  # on replica A
        held = wait_for(
            lambda: running.converged(SUBSET_CLUSTER.encode()),
            timeout=20,
            message="A's DestinationRule on all",
        )
        assert SUBSET_CLUSTER in held[rt.CLUSTER] and SUBSET_CLUSTER in held[rt.ENDPOINT]

        apply(b.admin, WORKLOAD)  # on replica B
        held = wait_for(
            lambda: running.converged(b"10.9.0.7"), timeout=20, message="B's WorkloadEntry on all"
        )
        subset_endpoints = held[rt.ENDPOINT][SUBSET_CLUSTER]
        assert b"10.9.0.7" in subset_endpoints and b"10.9.0.7" in held[rt.ENDPOINT][f"outbound|9080||{HOST}"]
        versions = [p.view()[1] for p in proxies]
        assert all(v == versions[0] for v in versions), versions
        roots = {p.held[rt.SECRET].get("ROOTCA") for p in proxies}
        assert len(roots) == 1 and None not in roots, "one mesh root on both replicas"
    finally:
        running.stop()
