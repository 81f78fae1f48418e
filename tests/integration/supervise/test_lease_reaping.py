"""Lease expiry in a running server: a lease that lapsed while the server was down is spared for
``lease_recovery_grace`` after the start (its client could not renew: nothing answered), one
that lapses after the start is reaped at once, and each reaping is logged. A real
``ControlPlane`` on a SQLite store, its lease loop on a short interval."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from pilotfish.app import ControlPlane, ServeOptions, _listed
from pilotfish.mesh_ca import CaOptions
from pilotfish.store import open_store
from pilotfish.store.base import Registration

pytestmark = pytest.mark.integration

HOST = "ratings.prod.svc.cluster.local"
GRACE = 2.5


def lease(id: str, ttl: float) -> Registration:
    return Registration(id=id, service=HOST, address="10.1.0.1", port=8080, ttl_seconds=ttl)


def test_leases_lapsed_before_the_start_wait_out_the_grace_and_later_ones_are_reaped_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'pilotfish.db'}"
    seed = open_store(url)
    seed.register(lease("lapsed-while-down", ttl=1.0), now=time.time() - 60)  # the server was down
    seed.close()
    opts = ServeOptions(
        xds_port=0,
        admin_port=0,
        authz_port=0,
        authz_workers=0,
        store_url=url,
        ca=CaOptions(ca_dir=tmp_path / "ca", secure_xds_port=0),
        lease_interval=0.05,
        lease_recovery_grace=GRACE,
    )
    timeline: dict[str, float] = {}

    async def scenario() -> None:
        cp = ControlPlane(opts)
        await cp.start()
        started = time.monotonic()
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
        finally:
            await cp.stop()

    with caplog.at_level(logging.INFO, logger="pilotfish.app"):
        asyncio.run(scenario())
    assert timeline["lapses-now"] < GRACE <= timeline["lapsed-while-down"], timeline
    reaped = [r.getMessage() for r in caplog.records if "leases expired" in r.getMessage()]
    assert reaped == [
        "leases expired, endpoints removed: lapses-now",
        "leases expired, endpoints removed: lapsed-while-down",
    ], reaped


def test_a_mass_expiry_is_one_line_of_bounded_length() -> None:
    ids = [f"10.0.0.{i}:80@{HOST}" for i in range(25)]
    assert _listed(ids[:2]) == f"10.0.0.0:80@{HOST}, 10.0.0.1:80@{HOST}"
    line = _listed(ids)
    assert line.endswith(f"10.0.0.19:80@{HOST} and 5 more") and "10.0.0.20:" not in line
