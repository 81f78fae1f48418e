"""The embedded store: one SQLite file, the default for a single pilotfish process.

Durability: WAL journal with ``synchronous=FULL``, so a write is on disk before ``apply``
returns and survives the process being SIGKILLed (or the machine losing power). One connection,
used under a lock from any thread: a control plane writes rarely, and one connection keeps the
transaction rules simple (``BEGIN IMMEDIATE`` for writers, as ``SqlStore`` requires).

``watch`` reports writes made through this object only. The embedded store belongs to the one
server process; everyone else writes through that server's admin API, so there is no other
writer to hear about.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pilotfish.errors import StoreUnavailable
from pilotfish.store.base import Revision, Subscription
from pilotfish.store.sql import SCHEMA, SCHEMA_VERSION, SqlStore, Tx

log = logging.getLogger(__name__)

_SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()


class _LocalSubscription:
    def __init__(
        self, watchers: list[Callable[[Revision], None]], callback: Callable[[Revision], None]
    ) -> None:
        self._watchers = watchers
        self._callback = callback

    def close(self) -> None:
        if self._callback in self._watchers:
            self._watchers.remove(self._callback)


class SqliteStore(SqlStore):
    """``Store`` on a SQLite file, created (with its directory) on first use."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 5.0,
    ) -> None:
        super().__init__(clock=clock)
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._watchers: list[Callable[[Revision], None]] = []

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    @contextmanager
    def _transaction(self, *, exclusive: bool) -> Iterator[Tx]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
                try:
                    yield _SqliteTx(conn)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self._path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable(f"SQLite store {self._path} is closed")
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
        try:
            _prepare(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _announce(self, tx: Tx, revision: Revision) -> None:
        """Nothing to announce inside the transaction: watchers hear after the commit."""

    def _committed(self, revision: Revision) -> None:
        for callback in list(self._watchers):
            try:
                callback(revision)
            except Exception:
                log.exception("store watcher failed on revision %d", revision)

    def watch(self, callback: Callable[[Revision], None]) -> Subscription:
        self._watchers.append(callback)
        return _LocalSubscription(self._watchers, callback)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._watchers.clear()
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _prepare(conn: sqlite3.Connection) -> None:
    """WAL + synchronous=FULL (per connection), then the schema in one transaction."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA:
            conn.execute(statement.format(serial=_SERIAL))
        (version,) = conn.execute("SELECT schema_version FROM pilotfish_meta WHERE id = 1").fetchone()
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    if version != SCHEMA_VERSION:
        raise StoreUnavailable(f"store schema version {version}; this pilotfish understands {SCHEMA_VERSION}")
