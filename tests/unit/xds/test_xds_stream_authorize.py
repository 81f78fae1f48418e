"""The authorization seam of an ADS stream: a node the authorizer refuses is served nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import xds_unit_builders as b

from pilotfish.errors import PeerUnauthorized
from pilotfish.xds import resources as rt
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.server import AggregatedDiscoveryService, StreamPeer
from pilotfish.xds.status import PushStatus


def run_one_request(authorize: Any, peer: StreamPeer) -> tuple[list[bytes], PushStatus, BaseException | None]:
    cache, status = SnapshotCache(), PushStatus()
    cache.set_snapshot(b.NODE_ID, cache.build(b.mesh()))
    service = AggregatedDiscoveryService(cache, status, authorize=authorize)
    sent: list[bytes] = []

    async def requests() -> Any:
        yield b.sotw_request(rt.CLUSTER, with_node=True)

    async def send(payload: bytes) -> None:
        sent.append(payload)

    async def scenario() -> BaseException | None:
        try:
            await asyncio.wait_for(service.sotw_stream(peer).run(requests(), send), timeout=2)
        except (PeerUnauthorized, TimeoutError) as exc:
            return exc
        return None

    return sent, status, asyncio.run(scenario())


def test_a_refused_node_gets_nothing_and_no_status() -> None:
    seen: list[tuple[str, StreamPeer]] = []

    def refuse(proxy: Proxy, peer: StreamPeer) -> None:
        seen.append((proxy.id, peer))
        raise PeerUnauthorized("no")

    sent, status, error = run_one_request(refuse, StreamPeer("ipv4:10.0.0.9:1"))
    assert isinstance(error, PeerUnauthorized)
    assert sent == [] and status.get(b.NODE_ID) is None
    assert seen == [(b.NODE_ID, StreamPeer("ipv4:10.0.0.9:1"))]


@pytest.mark.parametrize("authorize", [None, lambda proxy, peer: None])
def test_an_authorized_node_is_served(authorize: Any) -> None:
    sent, _, _ = run_one_request(authorize, StreamPeer("ipv4:127.0.0.1:1"))
    assert sent, "the first CDS request is answered"
