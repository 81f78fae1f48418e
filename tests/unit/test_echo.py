"""The echo server: response shape, fault injection (start-up, per request, runtime), stats, CLI.

Most tests run the aiohttp app in-process on 127.0.0.1:0; the last ones start the real
``python -m pilotfish.echo`` subprocess through the harness, as e2e tests do.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from harness.echo import EchoProcess
from harness.processes import is_running
from hypothesis import given
from hypothesis import strategies as st

from pilotfish.echo import EchoConfigError, EchoState, FaultConfig, build_app, parse_labels


@asynccontextmanager
async def echo_client(state: EchoState) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(state))) as client:
        yield client


async def fetch(client: TestClient, method: str, path: str, **kwargs) -> tuple[int, dict]:
    async with client.request(method, path, **kwargs) as response:
        return response.status, await response.json()


def run(coroutine):
    return asyncio.run(coroutine)


def test_response_describes_server_and_request():
    state = EchoState(name="reviews-v2", labels={"app": "reviews", "version": "v2"})

    async def scenario():
        async with echo_client(state) as client:
            headers = {"X-Trace": "one", "Content-Type": "text/plain"}
            return await fetch(client, "PUT", "/a/b?x=1&x=2", headers=headers, data="payload")

    status, body = run(scenario())
    assert status == 200
    assert body["name"] == "reviews-v2"
    assert body["labels"] == {"app": "reviews", "version": "v2"}
    request = body["request"]
    assert request["method"] == "PUT"
    assert request["path"] == "/a/b"
    assert request["query"] == "x=1&x=2"
    assert request["headers"]["x-trace"] == "one"
    assert request["headers"]["content-type"] == "text/plain"
    assert all(name == name.lower() for name in request["headers"])
    assert request["body"] == "payload"
    assert request["remote"] == "127.0.0.1"


def test_repeated_headers_are_joined():
    """aiohttp's client merges repeated headers itself, so this one speaks raw HTTP/1.1."""

    async def scenario():
        async with echo_client(EchoState(name="a")) as client:
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Trace: one\r\nx-trace: two\r\nConnection: close\r\n\r\n"
            )
            raw = await reader.read()
            writer.close()
            await writer.wait_closed()
            return json.loads(raw.split(b"\r\n\r\n", 1)[1])

    assert run(scenario())["request"]["headers"]["x-trace"] == "one, two"


def test_status_header_overrides_and_invalid_header_is_rejected():
    async def scenario():
        async with echo_client(EchoState(name="a")) as client:
            forced = await fetch(client, "GET", "/", headers={"x-echo-status": "418"})
            invalid = await fetch(client, "GET", "/", headers={"x-echo-status": "teapot"})
            return forced, invalid

    (forced_status, forced_body), (invalid_status, invalid_body) = run(scenario())
    assert forced_status == 418
    assert forced_body["name"] == "a"  # a failure still carries the echo body
    assert invalid_status == 400
    assert "status must be an integer" in invalid_body["error"]


def test_delay_header_and_runtime_delay_slow_the_answer():
    async def timed(client: TestClient, **kwargs) -> float:
        start = time.monotonic()
        await fetch(client, "GET", "/", **kwargs)
        return time.monotonic() - start

    async def scenario():
        async with echo_client(EchoState(name="a")) as client:
            fast = await timed(client)
            by_header = await timed(client, headers={"x-echo-delay": "0.3"})
            await fetch(client, "POST", "/__echo/config", json={"delay": 0.3})
            by_config = await timed(client)
            return fast, by_header, by_config

    fast, by_header, by_config = run(scenario())
    assert fast < 0.25
    assert by_header >= 0.3
    assert by_config >= 0.3


def test_delays_do_not_serialize_concurrent_requests():
    async def scenario():
        async with echo_client(EchoState(name="a", faults=FaultConfig(delay=0.3))) as client:
            start = time.monotonic()
            await asyncio.gather(*(fetch(client, "GET", f"/{i}") for i in range(10)))
            return time.monotonic() - start

    assert run(scenario()) < 1.5  # one after another would take 3 s


@pytest.mark.parametrize("status", [500, 503])
def test_fail_rate_one_fails_every_request_with_the_fail_status(status):
    state = EchoState(name="a", faults=FaultConfig(fail_rate=1.0, fail_status=status))

    async def scenario():
        async with echo_client(state) as client:
            return [(await fetch(client, "GET", "/"))[0] for _ in range(20)]

    assert run(scenario()) == [status] * 20


def test_fail_rate_between_zero_and_one_fails_some():
    state = EchoState(name="a", faults=FaultConfig(fail_rate=0.5), rng=random.Random(7))

    async def scenario():
        async with echo_client(state) as client:
            return [(await fetch(client, "GET", "/"))[0] for _ in range(40)]

    statuses = run(scenario())
    assert 5 <= statuses.count(503) <= 35
    assert statuses.count(503) + statuses.count(200) == 40


def test_runtime_config_updates_partially_and_rejects_bad_values_atomically():
    async def scenario():
        async with echo_client(EchoState(name="a")) as client:
            updated = await fetch(client, "POST", "/__echo/config", json={"fail_rate": 1, "fail_status": 500})
            failing = (await fetch(client, "GET", "/"))[0]
            rejected = await fetch(client, "POST", "/__echo/config", json={"delay": 0.1, "fail_rate": 2})
            current = await fetch(client, "GET", "/__echo/config")
            unknown = await fetch(client, "POST", "/__echo/config", json={"jitter": 1})
            return updated, failing, rejected, current, unknown

    updated, failing, rejected, current, unknown = run(scenario())
    assert updated == (200, {"delay": 0.0, "fail_rate": 1.0, "fail_status": 500})
    assert failing == 500
    assert rejected[0] == 400 and "fail_rate" in rejected[1]["error"]
    assert current == (200, {"delay": 0.0, "fail_rate": 1.0, "fail_status": 500})  # delay not half-applied
    assert unknown[0] == 400 and "jitter" in unknown[1]["error"]


def test_stats_count_answers_by_status_but_not_control_requests():
    async def scenario():
        async with echo_client(EchoState(name="a")) as client:
            for _ in range(3):
                await fetch(client, "GET", "/")
            await fetch(client, "GET", "/", headers={"x-echo-status": "502"})
            await fetch(client, "GET", "/__echo/config")
            return await fetch(client, "GET", "/__echo/stats")

    status, stats = run(scenario())
    assert status == 200
    assert stats == {"requests": 4, "by_status": {"200": 3, "502": 1}}


def test_parse_labels():
    assert parse_labels("app=reviews, version=v2") == {"app": "reviews", "version": "v2"}
    assert parse_labels("") == {}
    assert parse_labels("empty=") == {"empty": ""}
    for bad in ("novalue", "=v", "a=1,b"):
        with pytest.raises(EchoConfigError):
            parse_labels(bad)


json_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)


@given(st.dictionaries(st.sampled_from(["delay", "fail_rate", "fail_status", "other"]), json_values))
def test_config_update_either_applies_or_raises_and_stays_valid(changes):
    """Any JSON object either updates the faults or raises EchoConfigError, leaving them valid."""
    faults = FaultConfig()
    try:
        faults.update(changes)
    except EchoConfigError:
        assert faults == FaultConfig()
    assert 0.0 <= faults.delay <= 3600.0
    assert 0.0 <= faults.fail_rate <= 1.0
    assert 200 <= faults.fail_status <= 599


def test_subprocess_announces_port_serves_and_stops_cleanly_on_sigterm():
    echo = EchoProcess("details", labels={"app": "details"}, fail_status=500)
    with echo:
        assert echo.port > 0
        assert echo.configure(fail_rate=1.0) == {"delay": 0.0, "fail_rate": 1.0, "fail_status": 500}
        assert echo.stats() == {"requests": 0, "by_status": {}}
        pid = echo.pid
    assert echo.stop() == 0  # exit code of the SIGTERM shutdown: clean
    assert not is_running(pid)
    assert echo.stderr_text() == ""


def test_cli_rejects_bad_flags_with_usage_error():
    command = [sys.executable, "-m", "pilotfish.echo", "--name", "a", "--port", "0", "--fail-rate", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "fail_rate must be between 0 and 1" in result.stderr
