from __future__ import annotations

import asyncio

import pytest

from pilotfish.debounce import Debouncer, wait_time


def test_wait_time_quiet_period_and_max_delay() -> None:
    assert wait_time(first=0.0, last=0.0, now=0.0, quiet=0.1, max_delay=10) == 0.1
    assert wait_time(first=0.0, last=0.05, now=0.1, quiet=0.1, max_delay=10) == pytest.approx(0.05)
    assert wait_time(first=0.0, last=0.2, now=0.35, quiet=0.1, max_delay=10) <= 0
    # continuous churn: the max delay wins
    assert wait_time(first=0.0, last=9.99, now=10.0, quiet=0.1, max_delay=10) <= 0


def test_debouncer_merges_a_burst_into_one_push() -> None:
    pushes: list[int] = []

    async def scenario() -> None:
        async def push() -> None:
            pushes.append(1)

        d = Debouncer(push, quiet=0.05, max_delay=5)
        task = asyncio.create_task(d.run())
        for _ in range(10):
            d.trigger()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        assert len(pushes) == 1
        d.trigger()
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(scenario())
    assert len(pushes) == 2


def test_a_failing_push_does_not_stop_the_debouncer() -> None:
    calls: list[int] = []
    reported: list[Exception] = []

    async def scenario() -> None:
        async def push() -> None:
            calls.append(1)
            raise RuntimeError("boom")

        d = Debouncer(push, quiet=0.01, on_failure=reported.append)
        task = asyncio.create_task(d.run())
        d.trigger()
        await asyncio.sleep(0.1)
        d.trigger()
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(scenario())
    assert len(calls) == 2
    assert [str(e) for e in reported] == ["boom", "boom"], "each failure is reported (counted, /healthz)"
