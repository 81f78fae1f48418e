"""The delta ADS state machine (``DeltaStream``), driven through its seam without grpc.

xds_protocol.rst "Incremental xDS": only changed resources, ``removed_resources`` for deletions,
subscription changes honoured even with a stale nonce, ``initial_resource_versions`` on reconnect,
subscribed-but-missing names reported as removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import xds_unit_builders as b
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.server import DeltaStream
from pilotfish.xds.status import PushStatus, StreamKind, SyncState

Response = discovery_pb2.DeltaDiscoveryResponse


class Env:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.status = PushStatus()

    def stream(self) -> b.Driver:
        return b.Driver(DeltaStream(self.cache, self.status), Response).start()

    def publish(self, messages: list[object]) -> None:
        self.cache.set_snapshot(b.NODE_ID, self.cache.build(messages))

    def version(self, type_url: str, name: str) -> str:
        return self.cache.get(b.NODE_ID).named(type_url)[name].version


def run(test: Callable[[Env], Awaitable[None]]) -> None:
    asyncio.run(test(Env()))


async def connect(
    env: Env, type_url: str, subscribe: tuple[str, ...] = (), **kw: object
) -> tuple[b.Driver, Response]:
    driver = env.stream()
    await driver.send(b.delta_request(type_url, subscribe, with_node=True, **kw))  # type: ignore[arg-type]
    return driver, await driver.response()


async def ack(driver: b.Driver, response: Response, **kw: object) -> None:
    await driver.send(b.delta_request(response.type_url, nonce=response.nonce, **kw))  # type: ignore[arg-type]


def test_initial_legacy_wildcard_gets_every_resource_with_versions() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.CLUSTER)
        assert b.names(response) == ["a", "b"]
        assert [r.version for r in response.resources] == [env.version(rt.CLUSTER, n) for n in ("a", "b")]
        assert response.system_version_info == env.cache.get(b.NODE_ID).version(rt.CLUSTER)
        assert not response.removed_resources
        connection = env.status.get(b.NODE_ID)
        assert connection is not None and connection.kind is StreamKind.DELTA
        await driver.close()

    run(body)


def test_an_empty_wildcard_type_is_still_answered() -> None:
    async def body(env: Env) -> None:
        env.publish([b.cluster("static", eds=False)])
        driver, response = await connect(env, rt.LISTENER, ("*",))
        assert b.names(response) == [] and not response.removed_resources and response.nonce
        await driver.close()

    run(body)


def test_missing_subscribed_names_are_reported_removed_once() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a", "ghost"))
        assert b.names(response) == ["a"]
        assert list(response.removed_resources) == ["ghost"]
        await ack(driver, response)
        env.publish(b.mesh(port=9999))
        update = await driver.response()
        assert b.names(update) == ["a"] and not update.removed_resources  # "ghost" not repeated
        await ack(driver, update)
        env.publish([*b.mesh(port=9999), b.cla("ghost")])
        assert b.names(await driver.response()) == ["ghost"]  # it sprang into existence
        await driver.close()

    run(body)


def test_ack_is_not_answered_and_only_changes_are_sent() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.CLUSTER)
        await ack(driver, response)
        await driver.quiet()
        assert env.status.get(b.NODE_ID).of(rt.CLUSTER).state is SyncState.SYNCED  # type: ignore[union-attr]
        env.publish(b.mesh())
        await driver.quiet()
        env.publish(b.mesh(timeout=3))
        update = await driver.response()
        assert b.names(update) == ["a"] and not update.removed_resources
        await driver.close()

    run(body)


def test_deleted_resources_go_in_removed_resources() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.CLUSTER)
        await ack(driver, response)
        env.publish([b.cluster("a"), b.cla("a"), b.listener("http", "r"), b.route("r", "a")])
        update = await driver.response()
        assert b.names(update) == [] and list(update.removed_resources) == ["b"]
        await driver.close()

    run(body)


def test_nack_is_recorded_and_not_resent() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.CLUSTER)
        await ack(driver, response, error="cluster b: rejected")
        await driver.quiet()
        status = env.status.get(b.NODE_ID).of(rt.CLUSTER)  # type: ignore[union-attr]
        assert status.state is SyncState.NACKED
        assert status.nack is not None and status.nack.message == "cluster b: rejected"
        assert status.nack.version == response.system_version_info
        env.publish(b.mesh())
        await driver.quiet()
        env.publish(b.mesh(timeout=4))
        assert b.names(await driver.response()) == ["a"]
        await driver.close()

    run(body)


def test_initial_resource_versions_are_honoured_on_reconnect() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        initial = {"a": env.version(rt.CLUSTER, "a"), "b": "old", "gone": "x"}
        driver, response = await connect(env, rt.CLUSTER, initial=initial)
        assert b.names(response) == ["b"]  # "a" is current: not resent
        assert list(response.removed_resources) == ["gone"]
        await driver.close()

    run(body)


def test_subscription_changes_count_even_with_a_stale_nonce() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, first = await connect(env, rt.ENDPOINT, ("a",))
        env.publish(b.mesh(port=9090))
        second = await driver.response()
        assert second.nonce != first.nonce
        await driver.send(b.delta_request(rt.ENDPOINT, ["b"], nonce=first.nonce))  # stale nonce
        assert b.names(await driver.response()) == ["b"]
        assert env.status.get(b.NODE_ID).of(rt.ENDPOINT).state is SyncState.STALE  # type: ignore[union-attr]
        await driver.close()

    run(body)


def test_a_resubscribed_name_is_resent_even_if_the_client_has_it() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a",))
        await ack(driver, response)
        await driver.send(b.delta_request(rt.ENDPOINT, ["a"]))
        assert b.names(await driver.response()) == ["a"]
        await driver.send(b.delta_request(rt.ENDPOINT, unsubscribe=["a"]))
        await driver.quiet()  # a plain unsubscribe needs no answer
        await driver.close()

    run(body)


def test_unsubscribing_a_name_also_covered_by_the_wildcard_is_answered() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.CLUSTER, ("*", "a", "ghost"))
        assert b.names(response) == ["a", "b"] and list(response.removed_resources) == ["ghost"]
        await ack(driver, response)
        await driver.send(b.delta_request(rt.CLUSTER, unsubscribe=["a"]))
        assert b.names(await driver.response()) == ["a"]  # still in the wildcard: sent again
        await driver.close()

    run(body)


def test_a_changed_cluster_is_followed_by_its_eds_only() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, cds = await connect(env, rt.CLUSTER)
        await ack(driver, cds)
        await driver.send(b.delta_request(rt.ENDPOINT, ["a", "b"]))
        eds = await driver.response()
        await ack(driver, eds)
        env.publish(b.mesh(timeout=8))
        cds_update, eds_update = await driver.responses()
        assert (cds_update.type_url, b.names(cds_update)) == (rt.CLUSTER, ["a"])
        assert (eds_update.type_url, b.names(eds_update)) == (rt.ENDPOINT, ["a"])
        await driver.close()

    run(body)


def test_responses_follow_ads_order() -> None:
    async def body(env: Env) -> None:
        driver = env.stream()
        await driver.send(b.delta_request(rt.ROUTE, ["r"], with_node=True))
        await driver.send(b.delta_request(rt.LISTENER))
        await driver.send(b.delta_request(rt.ENDPOINT, ["a"]))
        await driver.send(b.delta_request(rt.CLUSTER))
        await driver.quiet()
        env.publish(b.mesh())
        responses = await driver.responses()
        assert [r.type_url for r in responses] == [rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE]
        await driver.close()

    run(body)


def test_a_reconnect_holding_the_current_endpoints_is_synced_without_a_push() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        initial = {"a": env.version(rt.ENDPOINT, "a")}
        driver = env.stream()
        await driver.send(b.delta_request(rt.ENDPOINT, ["a"], with_node=True, initial=initial))
        await driver.quiet()  # nothing to send: the client holds "a" at the current version
        status = env.status.get(b.NODE_ID).of(rt.ENDPOINT)  # type: ignore[union-attr]
        assert status.state is SyncState.SYNCED and status.pushes == 0
        await driver.close()

    run(body)


def test_a_rejected_resource_that_is_removed_no_longer_counts() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ROUTE, ("r", "gone"))
        assert b.names(response) == ["r"] and list(response.removed_resources) == ["gone"]
        await driver.send(b.delta_request(rt.ROUTE, nonce=response.nonce, error="route r: bad"))
        connection = env.status.get(b.NODE_ID)
        assert connection is not None
        routes = connection.of(rt.ROUTE)
        assert list(routes.rejected) == ["r"] and routes.state is SyncState.NACKED
        env.publish([m for m in b.mesh() if getattr(m, "name", "") not in ("r", "http")])  # "r" goes
        removal = await driver.response()
        while removal.type_url != rt.ROUTE:
            await ack(driver, removal)
            removal = await driver.response()
        assert "r" in removal.removed_resources
        await ack(driver, removal)
        assert not routes.rejected and routes.state is SyncState.SYNCED
        await driver.close()

    run(body)


def _held(driver_stream: DeltaStream, type_url: str) -> Mapping[str, str]:
    return driver_stream.subscriptions[type_url].known


def _versions(env: Env, type_url: str) -> dict[str, str]:
    return {n: r.version for n, r in env.cache.get(b.NODE_ID).named(type_url).items()}


def test_a_client_holding_every_resource_is_viewed_through_the_snapshot_not_a_copy() -> None:
    """Named EDS covering every assignment there is: after a response the client's view is the
    snapshot's own mapping (no per-stream dict); an endpoint change moves it to the new
    snapshot's mapping and sends only the changed assignment; a subscribed name that does not
    exist needs a record of its own (told removed), so the view is a dict again, still exact."""

    async def body(env: Env) -> None:
        env.publish(b.mesh())
        stream = DeltaStream(env.cache, env.status)
        driver = b.Driver(stream, Response).start()
        await driver.send(b.delta_request(rt.ENDPOINT, ("a", "b"), with_node=True))
        response = await driver.response()
        await ack(driver, response)
        held = _held(stream, rt.ENDPOINT)
        assert not isinstance(held, dict) and dict(held) == _versions(env, rt.ENDPOINT)
        env.publish(b.mesh(port=9090))  # cla "a" moves
        update = await driver.response()
        assert b.names(update) == ["a"] and not update.removed_resources
        now = _held(stream, rt.ENDPOINT)
        assert not isinstance(now, dict) and dict(now) == _versions(env, rt.ENDPOINT)
        await ack(driver, update, subscribe=("ghost",))
        told = await driver.response()
        assert list(told.removed_resources) == ["ghost"] and not told.resources
        view = _held(stream, rt.ENDPOINT)
        assert isinstance(view, dict) and view["a"] == _versions(env, rt.ENDPOINT)["a"] and "ghost" in view
        env.publish(b.mesh(port=9191))
        assert b.names(await driver.response()) == ["a"]
        await driver.close()

    run(body)


def test_a_wildcard_client_follows_added_and_removed_resources_through_the_view() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        stream = DeltaStream(env.cache, env.status)
        driver = b.Driver(stream, Response).start()
        await driver.send(b.delta_request(rt.CLUSTER, (), with_node=True))
        await ack(driver, await driver.response())
        assert not isinstance(_held(stream, rt.CLUSTER), dict)
        env.publish([*b.mesh(), b.cluster("c", eds=False)])
        added = await driver.response()
        assert b.names(added) == ["c"]
        await ack(driver, added)
        env.publish([b.cluster("a"), b.cla("a"), b.cla("b"), b.listener("http", "r"), b.route("r", "a")])
        gone = await driver.response()
        assert list(gone.removed_resources) == ["b", "c"] and not gone.resources
        view = _held(stream, rt.CLUSTER)
        assert not isinstance(view, dict) and dict(view) == _versions(env, rt.CLUSTER)
        await driver.close()

    run(body)
