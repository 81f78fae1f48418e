"""The xDS server's NACK line goes through the rate limiter (``pilotfish.lograte``): a proxy can
NACK at will, and 2,000 NACKs of 10 KB once wrote 20 MB of log in 3 s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import xds_unit_builders as b
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds import server as xds_server
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.server import SotwStream
from pilotfish.xds.status import PushStatus, SyncState


def test_2000_nacks_of_10kb_from_one_proxy_are_a_few_bounded_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=xds_server.log.name)
    xds_server.nack_log.sweep(float("inf"))  # forget windows earlier tests opened

    async def body() -> None:
        cache, status = SnapshotCache(), PushStatus()
        cache.set_snapshot(b.NODE_ID, cache.build(b.mesh()))
        requests: asyncio.Queue[Any] = asyncio.Queue()
        responses: asyncio.Queue[bytes] = asyncio.Queue()

        async def incoming() -> AsyncIterator[Any]:
            while (request := await requests.get()) is not None:
                yield request

        stream = SotwStream(cache, status, lambda proxy: None, lambda proxy: None)
        task = asyncio.create_task(stream.run(incoming(), responses.put))
        await requests.put(b.sotw_request(rt.CLUSTER, (), with_node=True))
        response = discovery_pb2.DiscoveryResponse.FromString(await asyncio.wait_for(responses.get(), 2))
        error = "cluster a: " + "e" * 10_000
        for _ in range(2000):
            requests.put_nowait(b.sotw_request(rt.CLUSTER, nonce=response.nonce, version="", error=error))
        for _ in range(1000):  # until the stream has read every NACK (at most 10 s)
            await asyncio.sleep(0.01)
            if requests.empty():
                break
        await asyncio.sleep(0.05)
        connection = status.get(b.NODE_ID)
        assert connection is not None and connection.of(rt.CLUSTER).state is SyncState.NACKED
        assert responses.empty(), "a NACK is never answered by resending"
        requests.put_nowait(None)
        await asyncio.wait_for(task, 10)

    asyncio.run(body())
    nacks = [r.getMessage() for r in caplog.records if "NACKed" in r.getMessage()]
    assert len(nacks) == xds_server.nack_log.burst
    assert all(len(line) < 2100 for line in nacks), "each line is cut to ~2,000 characters"
