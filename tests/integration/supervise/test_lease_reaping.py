"""Lease expiry in a running server: a lease that lapsed while the server was down is spared for
``lease_recovery_grace`` after the start (its client could not renew: nothing answered), one
that lapses after the start is reaped at once, and each reaping is logged. A real
``ControlPlane`` on a SQLite store, its lease loop on a short interval."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from pilotfish.app import ControlPlane, ServeOptions, _listed
from pilotfish.kong.admin_api import TARGET_PREFIX, TARGET_TTL
from pilotfish.mesh_ca import CaOptions
from pilotfish.store import open_store
from pilotfish.store.base import Registration

pytestmark = pytest.mark.integration

HOST = "ratings.prod.svc.cluster.local"
GRACE = 4.0


def lease(id: str, ttl: float) -> Registration:
    return Registration(id=id, service=HOST, address="10.1.0.1", port=8080, ttl_seconds=ttl)


def seeded_server(tmp_path: Path, leases: list[tuple[Registration, float]], **options: Any) -> ServeOptions:
    """Options for a server on a SQLite store already holding ``leases`` (each registered at
    its time), reaping on a short interval."""
    url = f"sqlite:///{tmp_path / 'pilotfish.db'}"
    seed = open_store(url)
    for registration, at in leases:
        seed.register(registration, now=at)
    seed.close()
    return ServeOptions(
        xds_port=0,
        admin_port=0,
        authz_port=0,
        authz_workers=0,
        store_url=url,
        ca=CaOptions(ca_dir=tmp_path / "ca", secure_xds_port=0),
        lease_interval=0.05,
        **options,
    )


def test_leases_lapsed_before_the_start_wait_out_the_grace_and_later_ones_are_reaped_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = [(lease("lapsed-while-down", ttl=1.0), time.time() - 60)]  # the server was down
    opts = seeded_server(tmp_path, down, lease_recovery_grace=GRACE)
    timeline: dict[str, float] = {}

    def reaped_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "leases expired" in r.getMessage()]

    async def scenario() -> None:
        cp = ControlPlane(opts)
        started = time.monotonic()  # at or before the server's own start time (its grace's origin)
        await cp.start()
        try:
            assert cp.store is not None
            store = cp.store
            await asyncio.to_thread(store.register, lease("lapses-now", ttl=1.0), time.time() - 0.5)

            def ids() -> set[str]:
                return {r.id for r in store.registrations()}

            while "lapses-now" in await asyncio.to_thread(ids):
                assert time.monotonic() - started < GRACE, "a lease that lapsed after the start waited"
                await asyncio.sleep(0.02)
            timeline["lapses-now"] = time.monotonic() - started
            assert "lapsed-while-down" in await asyncio.to_thread(ids), "reaped within the grace"
            while "lapsed-while-down" in await asyncio.to_thread(ids):
                assert time.monotonic() - started < GRACE + 5, "never reaped"
                await asyncio.sleep(0.02)
            timeline["lapsed-while-down"] = time.monotonic() - started
            while len(reaped_lines()) < 2:  # logged once the store call has returned
                assert time.monotonic() - started < GRACE + 10, reaped_lines()
                await asyncio.sleep(0.02)
        finally:
            await cp.stop()

    with caplog.at_level(logging.INFO, logger="pilotfish.app"):
        asyncio.run(scenario())
    assert timeline["lapses-now"] < GRACE <= timeline["lapsed-while-down"], timeline
    assert reaped_lines() == [
        "leases expired, endpoints removed: lapses-now",
        "leases expired, endpoints removed: lapsed-while-down",
    ], reaped_lines()


def test_a_mass_expiry_is_one_line_of_bounded_length() -> None:
    ids = [f"10.0.0.{i}:80@{HOST}" for i in range(25)]
    assert _listed(ids[:2]) == f"10.0.0.0:80@{HOST}, 10.0.0.1:80@{HOST}"
    line = _listed(ids)
    assert line.endswith(f"10.0.0.19:80@{HOST} and 5 more") and "10.0.0.20:" not in line


def test_a_kong_target_whose_lease_lapsed_while_the_server_was_down_outlives_the_grace(
    tmp_path: Path,
) -> None:
    """Kong targets live until deleted: their renewal runs at start, inside the recovery grace,
    not an hour later, so a day-long outage (a target's lease is a day) does not drop them."""
    long_ago = time.time() - 2 * 86_400
    target = Registration(
        id=f"{TARGET_PREFIX}{HOST}/10.1.0.7:8000",
        service=HOST,
        address="10.1.0.7",
        port=8000,
        ttl_seconds=TARGET_TTL,
    )
    down = [(target, long_ago), (lease("plain", ttl=1.0), long_ago)]
    opts = seeded_server(tmp_path, down, kong_admin_port=0, lease_recovery_grace=1.0)

    async def scenario() -> dict[str, float]:
        cp = ControlPlane(opts)
        await cp.start()
        try:
            assert cp.store is not None
            store = cp.store
            deadline = time.monotonic() + 10
            while "plain" in {r.id for r in await asyncio.to_thread(store.registrations)}:
                assert time.monotonic() < deadline, "the plain lease was never reaped"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # a few more reaper ticks past the grace
            return {r.id: r.expires_at for r in await asyncio.to_thread(store.registrations)}
        finally:
            await cp.stop()

    left = asyncio.run(scenario())
    assert list(left) == [target.id], left
    assert left[target.id] > time.time() + TARGET_TTL - 60, "renewed for another day"
