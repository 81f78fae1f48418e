"""Supervisor: restart delays (pure) and the restart/health/stop behaviour on a real event loop
(no timed assertions: tiny delays, and the clock is the only thing the health answer reads)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pilotfish.supervise import Backoff, Supervisor


@pytest.mark.parametrize(
    ("failures", "draw", "expected"),
    [
        (1, 0.0, 0.25),  # the floor: half of initial with jitter 0.5
        (1, 0.999999, 0.5),
        (2, 0.0, 0.5),
        (3, 0.0, 1.0),
        (7, 0.0, 15.0),  # 0.5 * 2**6 = 32 capped at 30
        (1000, 0.5, 22.5),  # no overflow however long the crash loop
    ],
)
def test_backoff_doubles_up_to_the_cap_with_jitter(failures: int, draw: float, expected: float) -> None:
    assert Backoff().delay(failures, draw) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "fields",
    [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"jitter": 2}, {"stable_after": -1}],
)
def test_an_invalid_backoff_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**fields)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_task_is_logged_counted_restarted_and_degraded_until_stable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    failures: list[str] = []
    runs: list[int] = []
    healthy_run = asyncio.Event()

    async def task() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise RuntimeError(f"boom {len(runs)}")
        healthy_run.set()
        await asyncio.Event().wait()

    async def scenario() -> None:
        supervisor = Supervisor(Backoff(initial=0.001, stable_after=5.0), failures.append, clock=clock)
        supervisor.start("lease-expiry", task)
        await asyncio.wait_for(healthy_run.wait(), 10)
        assert failures == ["lease-expiry", "lease-expiry"]
        problems = supervisor.problems()
        assert len(problems) == 1 and "lease-expiry" in problems[0] and "boom 2" in problems[0]
        clock.now += 5.0  # it has run stable_after seconds since the restart
        assert supervisor.problems() == []
        await supervisor.stop()

    with caplog.at_level(logging.ERROR, logger="pilotfish.supervise"):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if "background task lease-expiry failed" in r.getMessage()]
    assert len(failed) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in failed)


def test_a_task_that_returns_early_is_restarted() -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def task() -> None:
        runs.append(1)
        if len(runs) == 3:
            third.set()
            await asyncio.Event().wait()

    async def scenario() -> list[str]:
        failures: list[str] = []
        supervisor = Supervisor(Backoff(initial=0.001), failures.append)
        supervisor.start("config-watch", task)
        await asyncio.wait_for(third.wait(), 10)
        await supervisor.stop()
        return failures

    assert asyncio.run(scenario()) == ["config-watch", "config-watch"]


def test_stop_logs_an_exception_a_task_ends_with(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def task() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            raise OSError("socket already closed")

    async def scenario() -> None:
        supervisor = Supervisor()
        supervisor.start("certificate-rotation", task)
        await started.wait()
        await supervisor.stop()

    with caplog.at_level(logging.ERROR, logger="pilotfish.supervise"):
        asyncio.run(scenario())
    [record] = [r for r in caplog.records if "while stopping" in r.getMessage()]
    assert "certificate-rotation" in record.getMessage() and record.exc_info is not None


def test_a_reported_failure_counts_and_shows_until_stable() -> None:
    clock = Clock()
    failures: list[str] = []
    supervisor = Supervisor(Backoff(stable_after=2.0), failures.append, clock=clock)
    assert supervisor.problems() == []
    supervisor.report("authz-workers", "authz worker 0 (pid 7) hung")
    assert failures == ["authz-workers"]
    assert "authz worker 0 (pid 7) hung" in supervisor.problems()[0]
    clock.now += 2.0
    assert supervisor.problems() == []


def test_two_tasks_may_not_share_a_name() -> None:
    async def scenario() -> None:
        supervisor = Supervisor()
        supervisor.start("push-debounce", asyncio.Event().wait)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="push-debounce"):
            supervisor.start("push-debounce", asyncio.Event().wait)  # type: ignore[arg-type]
        await supervisor.stop()

    asyncio.run(scenario())
