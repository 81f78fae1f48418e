"""The ADS server over a real grpc.aio channel on 127.0.0.1:0: SotW and delta, errors, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import xds_envoy_config as cfg
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.server import GRPC_OPTIONS, AggregatedDiscoveryService, start_server
from pilotfish.xds.status import PushStatus, StatusHooks, SyncState

pytestmark = pytest.mark.integration

QUIET = 0.3


def node(node_id: str = cfg.NODE_ID) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": "default", "LABELS": {"app": "grpc-test"}})
    return base_pb2.Node(id=node_id, metadata=metadata)


class Client:
    """One bidi ADS call; a reader task queues every response so the test can await or check quiet."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            await self.responses.put(response)

    async def send(self, request: Any) -> Any:
        await self.call.write(request)

    async def next(self) -> Any:
        return await asyncio.wait_for(self.responses.get(), 5)

    async def quiet(self) -> None:
        await asyncio.sleep(QUIET)
        assert self.responses.empty()

    async def close(self) -> None:
        await self.call.done_writing()
        await asyncio.wait_for(self.reader, 5)


Scenario = Callable[[SnapshotCache, PushStatus, ads_pb2_grpc.AggregatedDiscoveryServiceStub], Awaitable[None]]


async def with_server(scenario: Scenario, hooks: StatusHooks | None = None) -> list[Proxy]:
    cache, status, seen = SnapshotCache(), PushStatus(hooks), []

    def on_connect(proxy: Proxy) -> None:
        seen.append(proxy)
        cache.set_snapshot(proxy.id, cache.build([cfg.eds_cluster("a"), cfg.endpoints("a", 8080)]))

    server, port = await start_server(AggregatedDiscoveryService(cache, status, on_connect=on_connect))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
            await scenario(cache, status, ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel))
    finally:
        await server.stop(None)
    return seen


def test_sotw_over_a_real_channel() -> None:
    pushed: list[str] = []

    async def scenario(cache: SnapshotCache, status: PushStatus, stub: Any) -> None:
        client = Client(stub.StreamAggregatedResources())
        await client.send(discovery_pb2.DiscoveryRequest(node=node(), type_url=rt.CLUSTER))
        cds = await client.next()
        assert [r.type_url for r in cds.resources] == [rt.CLUSTER]
        await client.send(discovery_pb2.DiscoveryRequest(type_url=rt.ENDPOINT, resource_names=["a"]))
        eds = await client.next()
        assert eds.type_url == rt.ENDPOINT and len(eds.resources) == 1
        for response in (cds, eds):
            await client.send(
                discovery_pb2.DiscoveryRequest(
                    type_url=response.type_url,
                    version_info=response.version_info,
                    response_nonce=response.nonce,
                    resource_names=["a"] if response is eds else [],
                )
            )
        await client.quiet()  # ACKs are not answered
        assert status.get(cfg.NODE_ID).of(rt.ENDPOINT).state is SyncState.SYNCED  # type: ignore[union-attr]
        cache.set_snapshot(cfg.NODE_ID, cache.build([cfg.eds_cluster("a", 3), cfg.endpoints("a", 8080)]))
        update, resend = await client.next(), await client.next()
        assert (update.type_url, resend.type_url) == (rt.CLUSTER, rt.ENDPOINT)
        await client.close()

    seen = asyncio.run(with_server(scenario, StatusHooks(pushed=pushed.append)))
    assert [p.labels for p in seen] == [{"app": "grpc-test"}]
    assert pushed == [rt.CLUSTER, rt.ENDPOINT, rt.CLUSTER, rt.ENDPOINT]


def test_delta_over_a_real_channel() -> None:
    async def scenario(cache: SnapshotCache, status: PushStatus, stub: Any) -> None:
        client = Client(stub.DeltaAggregatedResources())
        await client.send(discovery_pb2.DeltaDiscoveryRequest(node=node(), type_url=rt.CLUSTER))
        cds = await client.next()
        assert [r.name for r in cds.resources] == ["a"]
        subscribe = discovery_pb2.DeltaDiscoveryRequest(
            type_url=rt.ENDPOINT, resource_names_subscribe=["a", "ghost"]
        )
        await client.send(subscribe)
        eds = await client.next()
        assert [r.name for r in eds.resources] == ["a"] and list(eds.removed_resources) == ["ghost"]
        for response in (cds, eds):
            await client.send(
                discovery_pb2.DeltaDiscoveryRequest(type_url=response.type_url, response_nonce=response.nonce)
            )
        await client.quiet()
        cache.set_snapshot(cfg.NODE_ID, cache.build([cfg.eds_cluster("a"), cfg.endpoints("a", 9090)]))
        update = await client.next()
        assert (update.type_url, [r.name for r in update.resources]) == (rt.ENDPOINT, ["a"])
        await client.close()

    asyncio.run(with_server(scenario))


@pytest.mark.parametrize("method", ["StreamAggregatedResources", "DeltaAggregatedResources"])
def test_a_malformed_node_is_invalid_argument(method: str) -> None:
    request_type = (
        discovery_pb2.DiscoveryRequest if method.startswith("Stream") else discovery_pb2.DeltaDiscoveryRequest
    )

    async def scenario(cache: SnapshotCache, status: PushStatus, stub: Any) -> None:
        async def requests() -> AsyncIterator[Any]:
            yield request_type(node=node("bogus~1.2.3.4"), type_url=rt.CLUSTER)

        call = getattr(stub, method)(requests())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "must have the form" in (caught.value.details() or "")
        assert status.connections() == ()

    assert asyncio.run(with_server(scenario)) == []


def test_messages_beyond_grpcs_4_mib_default_pass_both_ways() -> None:
    big = "x" * (5 * 1024 * 1024)

    async def scenario(cache: SnapshotCache, status: PushStatus, stub: Any) -> None:
        client = Client(stub.DeltaAggregatedResources())
        initial = {f"c{i}": big[:1024] for i in range(5 * 1024)}  # a >5 MiB reconnect request
        await client.send(
            discovery_pb2.DeltaDiscoveryRequest(
                node=node(), type_url=rt.CLUSTER, initial_resource_versions=initial
            )
        )
        first = await client.next()
        assert len(first.removed_resources) == len(initial)
        await client.send(
            discovery_pb2.DeltaDiscoveryRequest(type_url=rt.CLUSTER, response_nonce=first.nonce)
        )
        huge = cfg.eds_cluster("a")
        huge.alt_stat_name = big
        cache.set_snapshot(cfg.NODE_ID, cache.build([huge, cfg.endpoints("a", 8080)]))
        update = await client.next()
        assert update.ByteSize() > 5 * 1024 * 1024
        await client.close()

    asyncio.run(with_server(scenario))


def test_a_second_stream_of_the_same_node_replaces_the_first() -> None:
    """One stream per node id, over real channels: the older stream is closed with ABORTED, its
    end does not report the proxy gone, and the status and metadata follow the live stream."""
    cache, status = SnapshotCache(), PushStatus()
    connected: list[Proxy] = []
    disconnected: list[Proxy] = []

    def on_connect(proxy: Proxy) -> None:
        connected.append(proxy)
        cache.set_snapshot(proxy.id, cache.build([cfg.eds_cluster("a"), cfg.endpoints("a", 8080)]))

    async def scenario() -> None:
        service = AggregatedDiscoveryService(
            cache, status, on_connect=on_connect, on_disconnect=disconnected.append
        )
        server, port = await start_server(service)
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as one,
                grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as two,
            ):
                first = Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(one).StreamAggregatedResources())
                await first.send(discovery_pb2.DiscoveryRequest(node=node(), type_url=rt.CLUSTER))
                await first.next()
                live = status.get(cfg.NODE_ID)
                second_node = node()
                second_node.metadata.update({"LABELS": {"app": "impostor"}})
                second = Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(two).StreamAggregatedResources())
                await second.send(discovery_pb2.DiscoveryRequest(node=second_node, type_url=rt.CLUSTER))
                response = await second.next()
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await asyncio.wait_for(first.reader, 5)
                assert ended.value.code() is grpc.StatusCode.ABORTED
                assert "replaced" in (ended.value.details() or "")
                replaced = status.get(cfg.NODE_ID)
                assert replaced is not None and replaced is not live
                assert replaced.proxy.labels == {"app": "impostor"}
                assert disconnected == []  # the old stream's end did not remove the proxy
                await second.send(
                    discovery_pb2.DiscoveryRequest(
                        type_url=rt.CLUSTER, version_info=response.version_info, response_nonce=response.nonce
                    )
                )
                await asyncio.sleep(QUIET)
                assert replaced.state is SyncState.SYNCED
                await second.close()
                await asyncio.sleep(QUIET)
        finally:
            await server.stop(None)

    asyncio.run(scenario())
    assert [p.labels for p in connected] == [{"app": "grpc-test"}, {"app": "impostor"}]
    assert [p.id for p in disconnected] == [cfg.NODE_ID]
    assert status.get(cfg.NODE_ID) is None
