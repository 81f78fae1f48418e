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


class FullDiffDeltaStream(DeltaStream):
    """The reference: a subscription change makes the next pass diff every name of the type."""

    def _handle(self, request: Any) -> None:
        super()._handle(request)
        for subscription in self.subscriptions.values():
            if subscription.added:
                subscription.added, subscription.synced = frozenset(), None


async def play_subscriptions(feed: Feed, stream: DeltaStream) -> list[tuple[Any, ...]]:
    """Delta, as Envoy does it: EDS follows the clusters (subscribe the new names, unsubscribe
    the gone ones) after every CDS response; plus a re-subscription (a resend), a name that does
    not exist (reported removed), and a wildcard type's name dropped under "*" (resent)."""
    driver = b.Driver(stream, discovery_pb2.DeltaDiscoveryResponse).start()
    seen: list[tuple[Any, ...]] = []
    feed.publish(MESHES[0])
    await driver.send(b.delta_request(rt.CLUSTER, with_node=True))
    await driver.send(b.delta_request(rt.ENDPOINT, ("a", "b")))
    await driver.send(b.delta_request(rt.LISTENER))
    await driver.send(b.delta_request(rt.ROUTE, ("r",)))
    eds = {"a", "b"}

    async def drain() -> None:
        for response in await driver.responses():
            seen.append(comparable(response))
            await driver.send(b.delta_request(response.type_url, nonce=response.nonce))

    extras = [
        [b.delta_request(rt.ENDPOINT, ("a",))],  # the same name again: resent
        [b.delta_request(rt.ENDPOINT, ("nope",))],  # no such name: reported removed
        [b.delta_request(rt.ENDPOINT, (), ("nope",)), b.delta_request(rt.CLUSTER, (), ("a",))],
    ]
    for i, messages in enumerate([None, *MESHES[1:]]):
        if messages is not None:
            feed.publish(messages)
        await drain()
        clusters = set(_clusters(feed))
        if clusters != eds:
            await driver.send(b.delta_request(rt.ENDPOINT, sorted(clusters - eds), sorted(eds - clusters)))
            eds = clusters
        for request in extras[i] if i < len(extras) else []:
            await driver.send(request)
        await drain()
    await driver.close()
    return seen


def test_delta_subscription_changes_diffed_by_name_give_the_full_diffs_responses() -> None:
    cache = Feed(incremental=True)
    by_name = run(lambda: play_subscriptions(cache, DeltaStream(cache.cache, PushStatus())))
    plain = Feed(incremental=False)
    full = run(lambda: play_subscriptions(plain, FullDiffDeltaStream(plain.cache, PushStatus())))
    assert by_name == full
    removed = [r for r in by_name if r[0] == rt.ENDPOINT and "nope" in r[3]]
    assert removed, by_name  # the case the sequence is there for did happen


def test_a_delta_subscription_change_is_diffed_by_its_names_alone(monkeypatch: Any) -> None:
    """A reconciled client subscribing to a new EDS name and dropping another: the pass looks up
    only that name, not every name of the type."""
    from pilotfish.xds import server

    looked_up: list[Any] = []
    real = server._desired

    def desired(subscription: Any, snapshot: Any, type_url: str, names: Any = None) -> Any:
        if type_url == rt.ENDPOINT:
            looked_up.append(None if names is None else set(names))
        return real(subscription, snapshot, type_url, names)

    async def body() -> None:
        feed = Feed(incremental=True)
        feed.publish([*b.mesh(), b.cluster("c"), b.cla("c")])
        driver = b.Driver(DeltaStream(feed.cache, PushStatus()), discovery_pb2.DeltaDiscoveryResponse).start()
        await driver.send(b.delta_request(rt.ENDPOINT, ("a", "b"), with_node=True))
        first = await driver.response()
        await driver.send(b.delta_request(rt.ENDPOINT, nonce=first.nonce))
        looked_up.clear()
        await driver.send(b.delta_request(rt.ENDPOINT, ("c",), ("b",)))
        response = await driver.response()
        assert b.names(response) == ["c"] and list(response.removed_resources) == []
        assert looked_up == [{"c"}]
        await driver.close()

    monkeypatch.setattr(server, "_desired", desired)
    run(body)
