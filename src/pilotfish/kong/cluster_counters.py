"""``policy: cluster``: rate-limit counters in the store's database, shared by every replica.

Kong's cluster policy keeps counters in its datastore; here they live in a table of their own,
``pilotfish_kong_ratelimit`` (key, count, expires), in the database ``serve --store`` names
(SQLite file or PostgreSQL). Each request increments its windows' rows in one transaction with
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (atomic in both databases, so two replicas
never both see the same count), and rows past their window are swept now and then.

The Check server is an asyncio process: each increment runs in a worker thread over one
connection of this process (a lock serializes them). Any database error is ``CounterStoreDown``
and the connection is dropped, so the next request connects again (``fault_tolerant`` decides
what an outage means); connecting has a short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from pilotfish.kong.ratelimit import CounterStoreDown

TABLE = "pilotfish_kong_ratelimit"
SWEEP_EVERY = 1000  # increments between two sweeps of expired rows
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(key TEXT PRIMARY KEY, count BIGINT NOT NULL, expires DOUBLE PRECISION NOT NULL)"
)
_UPSERT = (
    f"INSERT INTO {TABLE} (key, count, expires) VALUES (?, 1, ?) "
    f"ON CONFLICT (key) DO UPDATE SET count = {TABLE}.count + 1 RETURNING count"
)


class ClusterCounters:
    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: Any = None
        self._lock = threading.Lock()
        self._since_sweep = 0
        self._postgres = url.split(":", 1)[0].lower() in ("postgresql", "postgres")

    def _connect(self) -> Any:
        if self._postgres:
            import psycopg

            conn = psycopg.connect(self.url, connect_timeout=max(1, int(self.timeout)), autocommit=False)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7070)")  # replicas creating the table at once
                conn.execute(_CREATE)
            return conn
        if not self.url.lower().startswith("sqlite:"):
            raise ValueError(f"{self.url!r} is not a store URL (sqlite:/// or postgresql://)")
        from pilotfish.store import sqlite_path

        lite = sqlite3.connect(
            sqlite_path(self.url), timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        lite.execute(_CREATE)
        return lite

    def _incr(self, keys: Sequence[tuple[str, int]], now: float) -> list[int]:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                return self._postgres_incr(keys, now) if self._postgres else self._sqlite_incr(keys, now)
            except Exception as exc:  # sqlite3, psycopg, OS errors: all mean the counters are out of reach
                if self._conn is not None:
                    with contextlib.suppress(Exception):  # a broken connection may fail to close
                        self._conn.close()
                self._conn = None
                raise CounterStoreDown(str(exc)) from exc

    def _postgres_incr(self, keys: Sequence[tuple[str, int]], now: float) -> list[int]:
        out = []
        with self._conn.transaction():
            for key, ttl in keys:
                row = self._conn.execute(_UPSERT.replace("?", "%s"), (key, now + ttl)).fetchone()
                out.append(int(row[0]))
            self._sweep(now, "%s")
        return out

    def _sqlite_incr(self, keys: Sequence[tuple[str, int]], now: float) -> list[int]:
        out = []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for key, ttl in keys:
                out.append(int(self._conn.execute(_UPSERT, (key, now + ttl)).fetchone()[0]))
            self._sweep(now, "?")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return out

    def _sweep(self, now: float, mark: str) -> None:
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._since_sweep = 0
            self._conn.execute(f"DELETE FROM {TABLE} WHERE expires < {mark}", (now,))

    async def incr(self, keys: Sequence[tuple[str, int]]) -> list[int]:
        return await asyncio.to_thread(self._incr, keys, time.time())

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
