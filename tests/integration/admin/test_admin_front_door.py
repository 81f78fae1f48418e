"""The admin port's front door (``admin/frontdoor.py``): ``/healthz`` is answered on its thread
while the event loop is busy, every other request still reaches aiohttp, and a loop that stops
running fails the probe. Real sockets on loopback, port 0."""

from __future__ import annotations

import asyncio
import http.client
import socket
import sys
import threading
import time
from typing import Any

import pytest
from harness.admin import StubAdminBackend

from pilotfish.admin import frontdoor
from pilotfish.admin import http as admin_http

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_probe_is_answered_while_the_event_loop_is_blocked_and_other_routes_wait_for_it() -> None:
    async def body() -> None:
        backend = StubAdminBackend(b"answered_by_aiohttp 1\n")
        runner, port = await admin_http.start(backend, "127.0.0.1", 0)  # type: ignore[arg-type]
        try:
            assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")
            assert (await asyncio.to_thread(get, port, "/metrics"))[1] == "answered_by_aiohttp 1\n"
            backend.reasons = ["store unavailable"]
            assert await asyncio.to_thread(get, port, "/healthz") == (503, "store unavailable\n")
            backend.reasons = []

            results: dict[str, Any] = {}
            probed = threading.Event()

            def client(path: str) -> None:
                results[path] = get(port, path)
                if path == "/healthz":
                    probed.set()

            probe = threading.Thread(target=client, args=("/healthz",))
            other = threading.Thread(target=client, args=("/metrics",))
            # The loop is blocked (a stand-in for a long pass over a thousand streams) until the
            # probe has its answer: only the front door's thread can give it.
            other.start()
            probe.start()
            answered_while_blocked = probed.wait(10)
            assert "/metrics" not in results  # aiohttp runs on the blocked loop
            assert answered_while_blocked and results["/healthz"] == (200, "ok\n")
            await asyncio.to_thread(other.join, 10)
            assert results["/metrics"] == (200, "answered_by_aiohttp 1\n")
            probe.join(10)
            door = runner.front_door
            assert door is not None and door.answered == 3 and door.handed_over >= 2
        finally:
            await runner.cleanup()
        with pytest.raises(OSError):  # the port is closed with the runner
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    asyncio.run(body())


def test_a_loop_that_stops_beating_fails_the_probe() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        door = frontdoor.FrontDoor(
            frontdoor.listen("127.0.0.1", 0),
            lambda: (True, []),
            lambda conn: conn.close(),
            stall_after=0.3,
        )
        door.start(loop)
        try:
            assert await asyncio.to_thread(get, door.port, "/healthz") == (200, "ok\n")
            time.sleep(0.6)  # noqa: ASYNC251 - the point: the loop is stuck, no heartbeat
            status, text = get(door.port, "/healthz")
            assert status == 503 and text.startswith("event loop unresponsive for ")
            await asyncio.sleep(0.1)  # it runs again
            assert await asyncio.to_thread(get, door.port, "/healthz") == (200, "ok\n")
        finally:
            await asyncio.to_thread(door.stop)

    asyncio.run(body())


@pytest.mark.parametrize(
    ("head", "probe"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"GET /healthz?verbose=1 HTTP/1.1\r\n\r\n", True),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", False),  # the head is not complete yet
        (b"GET /healthzz HTTP/1.1\r\n\r\n", False),
        (b"HEAD /healthz HTTP/1.1\r\n\r\n", False),
        (b"POST /healthz HTTP/1.1\r\n\r\n", False),
        (b"GET /metrics HTTP/1.1\r\n\r\n", False),
        (b"\x16\x03\x01", False),  # not HTTP at all: aiohttp says so
    ],
)
def test_only_a_complete_healthz_get_is_answered_on_the_thread(head: bytes, probe: bool) -> None:
    assert frontdoor.is_health_probe(head) is probe


def test_a_probe_response_is_a_whole_closing_http_response() -> None:
    response = frontdoor.health_response(False, ["a", "b"])
    head, _, text = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in head
    assert b"Content-Length: 4" in head and text == b"a\nb\n"


def test_an_unexpected_error_is_reported_and_the_door_keeps_answering() -> None:
    async def body() -> None:
        failures: list[str] = []
        door = frontdoor.FrontDoor(
            frontdoor.listen("127.0.0.1", 0),
            lambda: (True, []),
            lambda conn: conn.close(),
            on_failure=failures.append,
        )
        real = door._first_bytes
        calls: list[int] = []

        def first_bytes(conn: socket.socket, early: bool = False) -> bool:
            calls.append(1)
            if len(calls) == 1:
                conn.close()
                raise RuntimeError("a bug")
            return real(conn, early)

        door._first_bytes = first_bytes  # type: ignore[method-assign]
        door.start(asyncio.get_running_loop())
        try:
            with pytest.raises((ConnectionError, http.client.HTTPException)):
                await asyncio.to_thread(get, door.port, "/healthz")
            assert await asyncio.to_thread(get, door.port, "/healthz") == (200, "ok\n")
            assert failures == ["RuntimeError: a bug"]
        finally:
            await asyncio.to_thread(door.stop)

    asyncio.run(body())


def raw_exchange(port: int, request: bytes, pause: float) -> bytes:
    """Connect, wait ``pause`` seconds, send ``request`` and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        time.sleep(pause)
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("pause", [0.0, 0.3], ids=["request-there-at-accept", "request-after-a-pause"])
def test_a_probe_is_answered_whether_its_request_came_with_the_connection_or_later(pause: float) -> None:
    """Read at once after accept (most probes) or once the selector sees it: the same answer,
    and the connection closes cleanly (the request was consumed, so no reset)."""
    handed: list[socket.socket] = []

    async def body() -> None:
        door = frontdoor.FrontDoor(frontdoor.listen("127.0.0.1", 0), lambda: (True, []), handed.append)
        door.start(asyncio.get_running_loop())
        try:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            response = await asyncio.to_thread(raw_exchange, door.port, request, pause)
            assert response == frontdoor.health_response(True, [])
            assert door.answered == 1 and door.handed_over == 0
        finally:
            await asyncio.to_thread(door.stop)

    asyncio.run(body())
    assert handed == []


def test_serve_hands_the_gil_over_every_millisecond() -> None:
    """The probe's thread gets the GIL back within a switch interval (``SWITCH_INTERVAL``)."""
    before = sys.getswitchinterval()
    try:
        frontdoor.tune_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(frontdoor.SWITCH_INTERVAL)
        assert frontdoor.SWITCH_INTERVAL < 0.005  # below CPython's default
    finally:
        sys.setswitchinterval(before)
