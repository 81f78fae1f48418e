"""The shared store: PostgreSQL, for several pilotfish replicas on one database.

Theory of operation.

* **Writes** lock the single ``pilotfish_meta`` row first (``SELECT ... FOR UPDATE``), bump the
  revision in it and ``pg_notify('pilotfish_changes', '<revision>')`` in the same transaction.
  PostgreSQL delivers a notification only when its transaction commits, so a listener never
  hears of a revision it cannot yet read.
* **Watching** runs a dedicated connection in a thread that LISTENs and calls back with each
  revision. Notifications sent while it was disconnected are lost, so after every reconnect it
  calls back once with the current revision; consumers then ask ``changes_since``.
* **Failure**: connecting has a short timeout and TCP keepalives, and every psycopg error is
  translated to ``StoreUnavailable`` at once — no retry loop hides an outage from the caller.
  A broken connection is dropped, and the next call connects again, so the store recovers on its
  own when the server returns. The listener retries with exponential backoff.
* **Schema** is created on every new connection, idempotently, under a transaction-scoped
  advisory lock: two replicas starting together cannot both run ``CREATE TABLE IF NOT EXISTS``
  at once (which can fail on the catalog's unique index).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from pilotfish.errors import StoreUnavailable
from pilotfish.store.base import Revision, Subscription
from pilotfish.store.sql import NOTIFY_CHANNEL, SCHEMA, SCHEMA_VERSION, SqlStore, Tx

log = logging.getLogger(__name__)

_SERIAL = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
SCHEMA_LOCK = 0x70696C6F74666973  # "pilotfis": the advisory lock that serializes schema creation
LISTENER_BACKOFF = (0.1, 5.0)  # first and longest wait between listener reconnects, seconds
LISTENER_POLL = 0.25  # how often the listener thread looks up to see if it should stop


class _PgTx:
    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return cursor.fetchall() if cursor.description is not None else []


class PostgresStore(SqlStore):
    """``Store`` on a PostgreSQL database named by a libpq URL (``postgresql://...``).

    Nothing connects until the first call, so a replica starts (and serves what it has) while
    the database is down."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, connect_timeout: int = 2) -> None:
        super().__init__(clock=clock)
        self._url = url
        self._connect_timeout = max(2, connect_timeout)  # libpq treats anything below 2 as 2
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False
        self._listeners: list[_Listener] = []

    def __repr__(self) -> str:
        return "PostgresStore(<url>)"  # the URL may carry a password

    @contextmanager
    def _transaction(self, *, exclusive: bool) -> Iterator[Tx]:
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    tx = _PgTx(conn)
                    if exclusive:
                        tx.rows("SELECT revision FROM pilotfish_meta WHERE id = 1 FOR UPDATE")
                    yield tx
            except psycopg.Error as exc:
                self._drop_broken()
                raise StoreUnavailable(f"PostgreSQL store: {exc}") from exc

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._closed:
            raise StoreUnavailable("PostgreSQL store is closed")
        if self._conn is None:
            self._conn = self._connect("pilotfish-store")
        return self._conn

    def _drop_broken(self) -> None:
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._conn.close()
            self._conn = None

    def _connect(self, application_name: str) -> psycopg.Connection[tuple[Any, ...]]:
        """A new autocommit connection with the schema in place. Raises ``psycopg.Error``."""
        conn = psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            application_name=application_name,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,  # ms: give up on a peer that stopped acknowledging
        )
        try:
            _ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _announce(self, tx: Tx, revision: Revision) -> None:
        tx.rows("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, str(revision)))

    def _committed(self, revision: Revision) -> None:
        """Nothing to do: our own listeners hear our NOTIFY like everyone else's."""

    def watch(self, callback: Callable[[Revision], None]) -> Subscription:
        """Start a listener; returns once it listens (or its first attempt failed — it then
        keeps retrying, and calls back with the current revision when it gets through)."""
        if self._closed:
            raise StoreUnavailable("PostgreSQL store is closed")
        listener = _Listener(lambda: self._connect("pilotfish-listener"), callback, self._listeners.remove)
        self._listeners.append(listener)
        listener.start(wait=self._connect_timeout + 1.0)
        return listener

    def close(self) -> None:
        for listener in list(self._listeners):
            listener.close()
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _ensure_schema(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in SCHEMA:
            conn.execute(statement.format(serial=_SERIAL))
        row = conn.execute("SELECT schema_version FROM pilotfish_meta WHERE id = 1").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        found = None if row is None else row[0]
        raise StoreUnavailable(f"store schema version {found}; this pilotfish understands {SCHEMA_VERSION}")


class _Listener:
    """One LISTEN connection in a thread, reconnecting with backoff until closed."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[tuple[Any, ...]]],
        callback: Callable[[Revision], None],
        forget: Callable[[_Listener], None],
    ) -> None:
        self._connect = connect
        self._callback = callback
        self._forget = forget
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._delay = LISTENER_BACKOFF[0]
        self._next_wait = self._delay
        self._thread = threading.Thread(target=self._run, name="pilotfish-store-listener", daemon=True)

    def start(self, wait: float) -> None:
        self._thread.start()
        self._ready.wait(wait)

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._forget(self)

    def _run(self) -> None:
        missed = False  # True once a connection failed: notifications may have been lost
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    self._listen(conn, catch_up=missed)
            except (psycopg.Error, StoreUnavailable) as exc:
                log.warning("store listener lost PostgreSQL, retrying in %.2fs: %s", self._wait(), exc)
            except Exception:  # a bug must not end the thread silently: log it, keep listening
                log.exception("store listener failed, retrying in %.2fs", self._wait())
            missed = True
            self._ready.set()
            if self._stop.wait(self._next_wait):
                return
            self._delay = min(self._delay * 2, LISTENER_BACKOFF[1])

    def _wait(self) -> float:
        """The pause before the next attempt, with equal jitter: replicas that lost the same
        server do not reconnect in lock-step."""
        self._next_wait = self._delay * (0.5 + random.random() / 2)
        return self._next_wait

    def _listen(self, conn: psycopg.Connection[tuple[Any, ...]], catch_up: bool) -> None:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._delay = LISTENER_BACKOFF[0]
        if catch_up:
            row = conn.execute("SELECT revision FROM pilotfish_meta WHERE id = 1").fetchone()
            if row is not None:
                self._deliver(int(row[0]))
        self._ready.set()
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=LISTENER_POLL):
                self._deliver(int(notify.payload))

    def _deliver(self, revision: Revision) -> None:
        try:
            self._callback(revision)
        except Exception:
            log.exception("store watcher failed on revision %d", revision)
