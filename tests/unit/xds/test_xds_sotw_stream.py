"""The SotW ADS state machine (``SotwStream``), driven through its seam without grpc.

Every rule of the server's theory of operation has a test here; the spec sections are in
xds_protocol.rst.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import pytest
import xds_unit_builders as b
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.errors import PeerError
from pilotfish.xds import resources as rt
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.server import PushGate, SotwStream, StreamSuperseded
from pilotfish.xds.status import PushStatus, SyncState

Response = discovery_pb2.DiscoveryResponse


class Env:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.status = PushStatus()
        self.connected: list[Proxy] = []
        self.disconnected: list[Proxy] = []

    def stream(self) -> b.Driver:
        stream = SotwStream(self.cache, self.status, self.connected.append, self.disconnected.append)
        return b.Driver(stream, Response).start()

    def publish(self, messages: list[object]) -> bool:
        return self.cache.set_snapshot(b.NODE_ID, self.cache.build(messages))

    def state(self, type_url: str) -> SyncState:
        connection = self.status.get(b.NODE_ID)
        assert connection is not None
        return connection.of(type_url).state


def run(test: Callable[[Env], Awaitable[None]]) -> None:
    asyncio.run(test(Env()))


async def connect(
    env: Env, type_url: str = rt.CLUSTER, names: tuple[str, ...] = ()
) -> tuple[b.Driver, Response]:
    driver = env.stream()
    await driver.send(b.sotw_request(type_url, names, with_node=True))
    return driver, await driver.response()


async def ack(driver: b.Driver, response: Response, names: tuple[str, ...] = ()) -> None:
    request = b.sotw_request(response.type_url, names, nonce=response.nonce, version=response.version_info)
    await driver.send(request)


def test_initial_legacy_wildcard_cds_gets_the_full_state() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env)
        assert response.type_url == rt.CLUSTER
        assert b.names(response) == ["a", "b"]
        assert response.version_info == env.cache.get(b.NODE_ID).version(rt.CLUSTER)
        assert response.nonce
        assert [p.id for p in env.connected] == [b.NODE_ID]
        await driver.close()
        assert env.disconnected == env.connected
        assert env.status.get(b.NODE_ID) is None

    run(body)


def test_explicit_star_is_a_wildcard_and_explicit_names_narrow_it() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.LISTENER, ("*",))
        assert b.names(response) == ["http"]
        await driver.close()  # one stream per node id at a time
        star, response = await connect(env, rt.CLUSTER, ("b",))
        assert b.names(response) == ["b"]
        await star.close()

    run(body)


def test_ack_is_never_answered() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env)
        await ack(driver, response)
        await driver.quiet()
        assert env.state(rt.CLUSTER) is SyncState.SYNCED
        await driver.close()

    run(body)


def test_eds_sends_only_requested_names_then_newly_requested_ones() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a",))
        assert b.names(response) == ["a"]
        await ack(driver, response, ("a", "b"))  # a new name on the ACK
        added = await driver.response()
        assert b.names(added) == ["b"]
        await ack(driver, added, ("b",))  # only a removal: nothing to send
        await driver.quiet()
        await ack(driver, added, ("a", "b"))  # "a" requested again must be resent
        assert b.names(await driver.response()) == ["a"]
        await driver.close()

    run(body)


def test_an_ack_repeating_its_names_changes_nothing_and_one_list_of_the_same_length_does() -> None:
    # An ACK equal to the last list is settled by a list comparison; any other list, even of the
    # same length or the same names in another order, still goes through the set of names.
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a", "b"))
        assert b.names(response) == ["a", "b"]
        await ack(driver, response, ("b", "a"))  # the same names in another order
        await ack(driver, response, ("b", "a"))  # a repeat of the last list
        await driver.quiet()
        assert env.state(rt.ENDPOINT) is SyncState.SYNCED
        await ack(driver, response, ("b", "later"))  # same length: "a" dropped, "later" absent
        await driver.quiet()
        await ack(driver, response, ("a", "b"))  # "a" requested again must be resent
        assert b.names(await driver.response()) == ["a"]
        await driver.close()

    run(body)


def test_a_requested_name_that_appears_later_is_pushed() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a", "later"))
        assert b.names(response) == ["a"]
        await ack(driver, response, ("a", "later"))
        await driver.quiet()
        env.publish([*b.mesh(), b.cla("later")])
        assert b.names(await driver.response()) == ["later"]
        await driver.close()

    run(body)


def test_nack_is_recorded_not_resent_and_the_next_snapshot_is_sent() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env)
        nack = b.sotw_request(rt.CLUSTER, nonce=response.nonce, version="", error="cluster a: bad timeout")
        await driver.send(nack)
        await driver.quiet()
        connection = env.status.get(b.NODE_ID)
        assert connection is not None
        status = connection.of(rt.CLUSTER)
        assert status.state is SyncState.NACKED
        assert status.nack is not None
        assert (status.nack.version, status.nack.message) == (response.version_info, "cluster a: bad timeout")
        env.publish(b.mesh())  # an identical rebuild: nothing to send
        await driver.quiet()
        env.publish(b.mesh(timeout=5))
        fixed = await driver.response()
        assert b.names(fixed) == ["a", "b"] and fixed.version_info != response.version_info
        await ack(driver, fixed)
        assert env.state(rt.CLUSTER) is SyncState.SYNCED
        await driver.close()

    run(body)


def test_a_stale_nonce_is_ignored() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, first = await connect(env, rt.ENDPOINT, ("a",))
        env.publish(b.mesh(port=9090))
        second = await driver.response()
        assert b.names(second) == ["a"] and second.nonce != first.nonce
        await ack(driver, first, ("a", "b"))  # stale: superseded by the second response
        await driver.quiet()
        assert env.state(rt.ENDPOINT) is SyncState.STALE
        await ack(driver, second, ("a", "b"))
        assert b.names(await driver.response()) == ["b"]
        await driver.close()

    run(body)


def test_unchanged_snapshot_pushes_nothing() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env)
        await ack(driver, response)
        assert not env.publish(b.mesh())  # equal content, new message objects
        await driver.quiet()
        await driver.close()

    run(body)


def test_a_changed_cluster_is_followed_by_its_eds_even_if_unchanged() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, cds = await connect(env)
        await ack(driver, cds)
        eds_request = b.sotw_request(rt.ENDPOINT, ["a", "b"])
        await driver.send(eds_request)
        eds = await driver.response()
        await ack(driver, eds, ("a", "b"))
        env.publish(b.mesh(timeout=7))  # only cluster "a" changes; no endpoint changes
        cds_update, eds_update = await driver.responses()
        assert cds_update.type_url == rt.CLUSTER and b.names(cds_update) == ["a", "b"]  # full state
        assert eds_update.type_url == rt.ENDPOINT and b.names(eds_update) == ["a"]
        await driver.close()

    run(body)


def test_responses_follow_ads_order_cds_eds_lds_rds() -> None:
    async def body(env: Env) -> None:
        driver = env.stream()
        await driver.send(b.sotw_request(rt.ROUTE, ["r"], with_node=True))
        await driver.send(b.sotw_request(rt.LISTENER))
        await driver.send(b.sotw_request(rt.ENDPOINT, ["a", "b"]))
        await driver.send(b.sotw_request(rt.CLUSTER))
        await driver.quiet()  # no snapshot yet: requests wait
        env.publish(b.mesh())
        responses = await driver.responses()
        assert [r.type_url for r in responses] == [rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE]
        await driver.close()

    run(body)


def test_only_the_latest_snapshot_is_pushed() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env)
        await ack(driver, response)
        env.publish(b.mesh(timeout=2))
        env.publish(b.mesh(timeout=3))  # replaces the pending one before the stream runs
        [latest] = await driver.responses()
        assert latest.version_info == env.cache.get(b.NODE_ID).version(rt.CLUSTER)
        await driver.close()

    run(body)


def test_a_removed_listener_disappears_from_the_full_state() -> None:
    async def body(env: Env) -> None:
        env.publish([*b.mesh(), b.listener("extra", "r", port=15002)])
        driver, response = await connect(env, rt.LISTENER)
        assert b.names(response) == ["extra", "http"]
        await ack(driver, response)
        env.publish(b.mesh())
        assert b.names(await driver.response()) == ["http"]
        await driver.close()

    run(body)


def test_after_explicit_names_an_empty_list_unsubscribes() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.CLUSTER, ("a",))
        await ack(driver, response, ())
        await driver.quiet()
        env.publish(b.mesh(timeout=9))
        await driver.quiet()
        await driver.close()

    run(body)


def test_a_reconnect_with_an_old_nonce_and_version_is_answered() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        first, response = await connect(env)
        await first.close()
        driver = env.stream()
        request = b.sotw_request(
            rt.CLUSTER, nonce=response.nonce, version=response.version_info, with_node=True
        )
        await driver.send(request)
        assert b.names(await driver.response()) == ["a", "b"]
        await driver.close()

    run(body)


def test_a_malformed_node_or_missing_type_is_a_peer_error() -> None:
    async def body(env: Env) -> None:
        bad = b.sotw_request(rt.CLUSTER)
        bad.node.id = "not-an-istio-id"
        driver = b.Driver(SotwStream(env.cache, env.status), Response).start()
        await driver.send(bad)
        with pytest.raises(PeerError, match="must have the form"):
            await driver.close()
        driver = b.Driver(SotwStream(env.cache, env.status), Response).start()
        await driver.send(b.sotw_request("", with_node=True))
        with pytest.raises(PeerError, match="type_url"):
            await driver.close()
        assert env.status.connections() == ()

    run(body)


def test_a_rejected_endpoint_keeps_eds_nacked_after_an_unrelated_ack() -> None:
    """An ACK vouches only for the resources of its response: EDS "a" rejected, then a response
    carrying only "b" ACKed, must not read SYNCED (Envoy lacks "a")."""

    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a", "b"))
        assert b.names(response) == ["a", "b"]
        await ack(driver, response, ("a", "b"))
        env.publish([*b.mesh()[:2], b.cla("a", 9), b.cla("b"), *b.mesh()[4:]])
        bad = await driver.response()
        assert b.names(bad) == ["a"]
        error = "malformed IP address: not-an-ip!"
        await driver.send(b.sotw_request(rt.ENDPOINT, ("a", "b"), nonce=bad.nonce, error=error))
        assert env.state(rt.ENDPOINT) is SyncState.NACKED
        env.publish([*b.mesh()[:2], b.cla("a", 9), b.cla("b", 7), *b.mesh()[4:]])  # unrelated: "b"
        unrelated = await driver.response()
        assert b.names(unrelated) == ["b"]
        await ack(driver, unrelated, ("a", "b"))
        connection = env.status.get(b.NODE_ID)
        assert connection is not None
        eds = connection.of(rt.ENDPOINT)
        assert eds.acked_nonce == unrelated.nonce
        assert eds.state is SyncState.NACKED and connection.state is SyncState.NACKED
        assert list(eds.rejected) == ["a"] and eds.rejected["a"].message == error
        [row] = env.status.status_rows()
        assert row.nacks == {"EDS": f"a: {error}"}
        # The rejected resource changes: it is sent again, and once ACKed the type is SYNCED.
        env.publish([*b.mesh()[:2], b.cla("a", 10), b.cla("b", 7), *b.mesh()[4:]])
        fixed = await driver.response()
        assert b.names(fixed) == ["a"]
        await ack(driver, fixed, ("a", "b"))
        assert eds.state is SyncState.SYNCED and not eds.rejected
        await driver.close()

    run(body)


def test_a_rejected_resource_that_leaves_the_view_no_longer_counts() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env, rt.ENDPOINT, ("a", "b"))
        await driver.send(b.sotw_request(rt.ENDPOINT, ("a", "b"), nonce=response.nonce, error="bad b"))
        assert env.state(rt.ENDPOINT) is SyncState.NACKED
        await ack(driver, response, ("a",))  # "b" unsubscribed (its cluster went away)
        env.publish(b.mesh(port=9))
        update = await driver.response()
        await ack(driver, update, ("a",))
        assert env.state(rt.ENDPOINT) is SyncState.SYNCED
        await driver.close()

    run(body)


def test_an_ack_of_another_version_is_not_an_ack() -> None:
    async def body(env: Env) -> None:
        env.publish(b.mesh())
        driver, response = await connect(env)
        await driver.send(b.sotw_request(rt.CLUSTER, nonce=response.nonce, version="not-sent"))
        assert env.state(rt.CLUSTER) is SyncState.STALE
        await ack(driver, response)
        assert env.state(rt.CLUSTER) is SyncState.SYNCED
        await driver.close()

    run(body)


def test_a_newer_stream_of_the_same_node_closes_the_older_one() -> None:
    """One stream per node id (Istio closes the replaced connection): the old stream ends, its
    end does not report the proxy gone, and the status is the live stream's."""

    async def body(env: Env) -> None:
        env.publish(b.mesh())
        old, response = await connect(env)
        await ack(old, response)
        new, _ = await connect(env, rt.LISTENER)
        with pytest.raises(StreamSuperseded):
            assert old.task is not None
            await asyncio.wait_for(old.task, 2)
        assert env.disconnected == []
        connection = env.status.get(b.NODE_ID)
        assert connection is not None and rt.LISTENER in connection.types
        assert rt.CLUSTER not in connection.types
        await new.close()
        assert [p.id for p in env.disconnected] == [b.NODE_ID]
        assert env.status.get(b.NODE_ID) is None

    run(body)


def test_acks_against_the_same_snapshot_make_no_pass() -> None:
    """An ACK changes nothing the client wants: the stream books it and makes no pass (takes no
    push slot), however many arrive; a new snapshot or a new watch does make one."""

    async def body(env: Env) -> None:
        slots: list[int] = []
        gate = PushGate(on_length=slots.append)
        env.publish(b.mesh())
        stream = SotwStream(env.cache, env.status, gate=gate)
        driver = b.Driver(stream, Response).start()
        await driver.send(b.sotw_request(rt.CLUSTER, (), with_node=True))
        response = await driver.response()
        taken = len(slots)
        for _ in range(5):
            await ack(driver, response)
        await driver.quiet()
        assert len(slots) == taken  # five ACKs, no pass
        assert env.state(rt.CLUSTER) is SyncState.SYNCED
        env.publish(b.mesh(timeout=2))
        await driver.response()
        assert len(slots) > taken
        await driver.close()

    run(body)


def test_a_client_holding_a_whole_type_is_viewed_through_the_snapshot_not_a_copy() -> None:
    """After a response that leaves the client with every resource of a type, its view is the
    snapshot's own mapping; an update of some of them moves it to the new snapshot's mapping
    (no per-stream copy of the versions), and the response carries only what changed."""

    async def body(env: Env) -> None:
        env.publish(b.mesh())
        stream = SotwStream(env.cache, env.status)
        driver = b.Driver(stream, Response).start()
        await driver.send(b.sotw_request(rt.ENDPOINT, ("a", "b"), with_node=True))
        response = await driver.response()
        await ack(driver, response, ("a", "b"))
        held = stream.subscriptions[rt.ENDPOINT].known
        assert isinstance(held, Mapping) and not isinstance(held, dict)
        assert dict(held) == {n: r.version for n, r in env.cache.get(b.NODE_ID).named(rt.ENDPOINT).items()}
        env.publish(b.mesh(port=9090))  # cla "a" moves
        update = await driver.response()
        assert b.names(update) == ["a"]
        now = stream.subscriptions[rt.ENDPOINT].known
        assert not isinstance(now, dict)
        assert dict(now) == {n: r.version for n, r in env.cache.get(b.NODE_ID).named(rt.ENDPOINT).items()}
        await ack(driver, update, ("a",))  # the client narrows its names: a dict of its own again
        await driver.quiet()
        assert dict(stream.subscriptions[rt.ENDPOINT].known).keys() == {"a"}
        await driver.close()

    run(body)
