"""Issue "Self-contained and self-healing", done-when: a background task of ``pilotfish serve``
whose coroutine raises is logged with its traceback, counted in
``pilotfish_task_failures_total{task}``, restarted, and ``/healthz`` says degraded (503, naming
the task) until it has run healthily again — over real HTTP on port 0."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pilotfish.app import ControlPlane, ServeOptions
from pilotfish.mesh_ca import CaOptions
from pilotfish.supervise import Backoff

pytestmark = pytest.mark.integration

FAILURES = 2


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def until(predicate, within: float, message: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)


def test_a_failing_background_task_is_logged_counted_restarted_and_degrades_healthz(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opts = ServeOptions(
        xds_port=0,
        admin_port=0,
        authz_port=0,
        authz_workers=0,
        store_url=f"sqlite:///{tmp_path / 'pilotfish.db'}",
        ca=CaOptions(ca_dir=tmp_path / "ca", secure_xds_port=0),
        lease_interval=0.05,
        supervision=Backoff(initial=0.2, maximum=1.0, stable_after=2.0),
    )
    seen: list[str] = []

    async def scenario() -> None:
        cp = ControlPlane(opts)
        await cp.start()
        try:
            base = f"http://127.0.0.1:{cp.admin_port}"
            health = lambda: asyncio.to_thread(get, f"{base}/healthz")  # noqa: E731
            assert await health() == (200, "ok\n")
            real_tick = cp._lease_tick
            ticks = 0

            async def failing_tick(store, now):  # type: ignore[no-untyped-def]
                nonlocal ticks
                ticks += 1
                if ticks <= FAILURES:
                    raise RuntimeError(f"lease tick exploded ({ticks})")
                await real_tick(store, now)

            cp._lease_tick = failing_tick  # type: ignore[method-assign]

            async def degraded() -> bool:
                status, body = await health()
                if status == 503:
                    seen.append(body)
                return status == 503

            await until(degraded, 10, "/healthz never said degraded")
            assert "background task lease-expiry failed" in seen[0], seen

            async def recovered() -> bool:
                return await health() == (200, "ok\n")

            await until(recovered, 20, "/healthz never recovered")
            assert ticks > FAILURES, "the task was restarted and ran again"
            _status, metrics = await asyncio.to_thread(get, f"{base}/metrics")
            counted = re.search(r'pilotfish_task_failures_total\{task="lease-expiry"\} (\S+)', metrics)
            assert counted and float(counted.group(1)) == FAILURES, metrics
        finally:
            await cp.stop()

    with caplog.at_level(logging.INFO, logger="pilotfish.supervise"):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if "background task lease-expiry failed" in r.getMessage()]
    assert len(failed) == FAILURES
    assert all(r.exc_info and "lease tick exploded" in str(r.exc_info[1]) for r in failed)
    assert "lease tick exploded (1)" in caplog.text and "Traceback" in caplog.text
    assert any("background task lease-expiry restarted" in r.getMessage() for r in caplog.records)


def test_a_hung_check_worker_is_replaced_and_reported_by_healthz_and_metrics(tmp_path: Path) -> None:
    """The worker monitor runs in a thread; its report reaches the supervisor on the event loop."""
    opts = ServeOptions(
        xds_port=0,
        admin_port=0,
        authz_port=0,
        authz_workers=1,
        ca=CaOptions(ca_dir=tmp_path / "ca", secure_xds_port=0),
        supervision=Backoff(stable_after=2.0),
    )

    async def scenario() -> None:
        cp = ControlPlane(opts)
        await cp.start()
        try:
            assert cp.authz is not None
            base = f"http://127.0.0.1:{cp.admin_port}"
            (victim,) = cp.authz.pids
            os.kill(victim, signal.SIGSTOP)
            bodies: list[str] = []

            async def degraded() -> bool:
                status, body = await asyncio.to_thread(get, f"{base}/healthz")
                bodies.append(body)
                return status == 503

            await until(degraded, 15, "/healthz never said degraded")
            assert "background task authz-workers failed" in bodies[-1], bodies[-1]
            assert f"pid {victim}) hung" in bodies[-1]
            authz = cp.authz

            async def replaced() -> bool:
                return len(authz.pids) == 1 and victim not in authz.pids

            await until(replaced, 30, "no replacement worker")

            async def recovered() -> bool:
                return await asyncio.to_thread(get, f"{base}/healthz") == (200, "ok\n")

            await until(recovered, 20, "/healthz never recovered")
            _status, metrics = await asyncio.to_thread(get, f"{base}/metrics")
            assert 'pilotfish_task_failures_total{task="authz-workers"} 1.0' in metrics
        finally:
            await cp.stop()

    asyncio.run(scenario())
