"""Incremental diffs: a stream whose client holds the previous version of a type diffs only the
names the new snapshot says changed (``Snapshot.changes``). The responses must be exactly what a
full diff gives: the same sequence of requests is played against a stream fed composed snapshots
(with changes) and one fed plain ``Snapshot.of`` snapshots (without), and every response must
match, field for field but the nonce."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import xds_unit_builders as b
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds.cache import ResourceSet, Snapshot, SnapshotCache
from pilotfish.xds.server import DeltaStream, SotwStream
from pilotfish.xds.status import PushStatus

# A sequence of meshes: an endpoint change, a cluster change (its endpoints are resent), a new
# cluster, a removed one, and back.
MESHES: list[list[Any]] = [
    b.mesh(),
    b.mesh(port=9090),
    b.mesh(port=9090, timeout=3),
    [*b.mesh(port=9090, timeout=3), b.cluster("c"), b.cla("c")],
    [b.cluster("a"), b.cla("a", 7070), b.listener("http", "r"), b.route("r", "a")],
    b.mesh(),
]


class Feed:
    """Publishes each mesh to one proxy, composed with changes or plain."""

    def __init__(self, incremental: bool) -> None:
        self.cache = SnapshotCache()
        self.incremental = incremental

    def publish(self, messages: list[Any]) -> Snapshot:
        resources = [self.cache.interner.resource(m) for m in messages]
        if self.incremental:
            snapshot = Snapshot.compose([ResourceSet.of(resources)], self.cache.get(b.NODE_ID))
        else:
            snapshot = Snapshot.of(resources)
        self.cache.set_snapshot(b.NODE_ID, snapshot)
        return snapshot


def comparable(response: Any) -> tuple[Any, ...]:
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return (
            response.type_url,
            response.system_version_info,
            b.names(response),
            list(response.removed_resources),
        )
    return (
        response.type_url,
        response.version_info,
        b.names(response),
        [r.value for r in response.resources],
    )


async def play(feed: Feed, delta: bool) -> list[tuple[Any, ...]]:
    """Connect for every type, ACK everything, publish each mesh in turn; every response seen."""
    stream: Any = (DeltaStream if delta else SotwStream)(feed.cache, PushStatus())
    driver = b.Driver(
        stream, discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
    )
    driver.start()
    seen: list[tuple[Any, ...]] = []
    feed.publish(MESHES[0])
    for i, type_url in enumerate(rt.ADS_ORDER[:4]):
        names = ("a", "b") if type_url == rt.ENDPOINT else ("r",) if type_url == rt.ROUTE else ()
        if delta:
            await driver.send(b.delta_request(type_url, names, with_node=i == 0))
        else:
            await driver.send(b.sotw_request(type_url, names, with_node=i == 0))
    for messages in [None, *MESHES[1:]]:
        if messages is not None:
            feed.publish(messages)
        for response in await driver.responses():
            seen.append(comparable(response))
            if delta:
                await driver.send(b.delta_request(response.type_url, nonce=response.nonce))
            else:
                names = b.names(response) if response.type_url in (rt.ENDPOINT, rt.ROUTE) else ()
                if response.type_url == rt.ENDPOINT:
                    names = sorted({"a", "b", "c"} & set(_clusters(feed)))
                await driver.send(
                    b.sotw_request(
                        response.type_url, names, nonce=response.nonce, version=response.version_info
                    )
                )
        seen.extend(comparable(r) for r in await driver.responses())
    await driver.close()
    return seen


def _clusters(feed: Feed) -> list[str]:
    snapshot = feed.cache.get(b.NODE_ID)
    return list(snapshot.named(rt.CLUSTER)) if snapshot is not None else []


def run(body: Callable[[], Any]) -> Any:
    return asyncio.run(body())


def test_sotw_incremental_diffs_give_the_full_diffs_responses() -> None:
    incremental = run(lambda: play(Feed(incremental=True), delta=False))
    full = run(lambda: play(Feed(incremental=False), delta=False))
    assert incremental == full
    assert len(incremental) > len(MESHES)


def test_delta_incremental_diffs_give_the_full_diffs_responses() -> None:
    incremental = run(lambda: play(Feed(incremental=True), delta=True))
    full = run(lambda: play(Feed(incremental=False), delta=True))
    assert incremental == full
    assert len(incremental) > len(MESHES)


def test_an_endpoint_change_sends_only_its_assignment_in_sotw() -> None:
    async def body() -> None:
        feed = Feed(incremental=True)
        feed.publish(b.mesh())
        driver = b.Driver(SotwStream(feed.cache, PushStatus()), discovery_pb2.DiscoveryResponse).start()
        await driver.send(b.sotw_request(rt.ENDPOINT, ("a", "b"), with_node=True))
        first = await driver.response()
        assert b.names(first) == ["a", "b"]
        await driver.send(
            b.sotw_request(rt.ENDPOINT, ("a", "b"), nonce=first.nonce, version=first.version_info)
        )
        after = feed.publish([b.cluster("a"), b.cluster("b"), b.cla("a"), b.cla("b", 9999), *b.mesh()[4:]])
        assert after.changes[rt.ENDPOINT].names == {"b"}
        second = await driver.response()
        assert b.names(second) == ["b"]  # a subset: EDS need not be complete in SotW
        assert second.version_info == after.version(rt.ENDPOINT)  # the client holds all of EDS
        await driver.quiet()
        await driver.close()

    run(body)
