"""``policy: cluster`` counters on the real databases: SQLite (two connections, as two replicas
on one file would have) and PostgreSQL; an unreachable database is ``CounterStoreDown``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_store_support import database_url, scratch_database

from pilotfish.kong.cluster_counters import ClusterCounters
from pilotfish.kong.ratelimit import CounterStoreDown

pytestmark = pytest.mark.integration


async def count(a: ClusterCounters, b: ClusterCounters) -> list[int]:
    seen = []
    for i in range(6):
        seen += await (a if i % 2 else b).incr([("k:minute:0", 60), ("k:hour:0", 3600)])
    await a.close()
    await b.close()
    return seen


def test_sqlite_counters_are_shared_and_atomic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seen = asyncio.run(count(ClusterCounters(url), ClusterCounters(url)))
    assert seen[0::2] == [1, 2, 3, 4, 5, 6] and seen[1::2] == [1, 2, 3, 4, 5, 6]


def test_postgres_counters_are_shared() -> None:
    with scratch_database("pilotfish_kong_counters") as name:
        url = database_url(name)
        assert url.startswith("postgresql://")
        seen = asyncio.run(count(ClusterCounters(url), ClusterCounters(url)))
    assert seen[0::2] == [1, 2, 3, 4, 5, 6]


def test_an_unreachable_database_is_counter_store_down() -> None:
    counters = ClusterCounters("postgresql://nobody@127.0.0.1:1/none", timeout=1)
    with pytest.raises(CounterStoreDown):
        asyncio.run(counters.incr([("k", 60)]))
    with pytest.raises(CounterStoreDown, match="not a store URL"):
        asyncio.run(ClusterCounters("just-a-name").incr([("k", 60)]))
