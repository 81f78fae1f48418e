"""The store's logic, written once in the SQL that SQLite and PostgreSQL share.

Theory of operation. Each backend supplies a transaction (``_transaction``) and, for writes,
serializes writers before the first read: SQLite with ``BEGIN IMMEDIATE``, PostgreSQL by locking
the single ``pilotfish_meta`` row. Inside a write, ``_Write.bump`` increments the revision in
that same row, so revisions commit strictly in order: once revision R is visible, every
revision below R is visible too. That is why ``changes_since`` may bound its reads by the
revision it read first and never miss a change — a sequence could not promise this (its values
are handed out before commit, and commits can land out of order).

Every write appends to a log keyed by revision (``pilotfish_history`` for resources,
``pilotfish_registration_log`` for leases), which is what ``history``, ``rollback`` and
``changes_since`` read. Heartbeats change only a lease's expiry, which nobody downstream sees,
so they bump nothing.

SQL here uses ``?`` placeholders and no literal ``%``; the PostgreSQL backend rewrites them.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Protocol

from pilotfish.errors import ConfigError, Problem
from pilotfish.store import documents
from pilotfish.store.base import (
    Action,
    AuditEntry,
    Changes,
    HistoryEntry,
    Registration,
    ResourceKey,
    Revision,
    StoredResource,
    Subscription,
)
from pilotfish.store.documents import PreparedDocument

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
NOTIFY_CHANNEL = "pilotfish_changes"

# ``{serial}`` is the one type the dialects spell differently.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pilotfish_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision BIGINT NOT NULL,
        schema_version INTEGER NOT NULL)""",
    "INSERT INTO pilotfish_meta (id, revision, schema_version) VALUES (1, 0, 1) ON CONFLICT (id) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS pilotfish_resources (
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        doc TEXT NOT NULL, revision BIGINT NOT NULL,
        PRIMARY KEY (kind, namespace, name))""",
    """CREATE TABLE IF NOT EXISTS pilotfish_history (
        revision BIGINT PRIMARY KEY,
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        action TEXT NOT NULL, doc TEXT, actor TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS pilotfish_history_key ON pilotfish_history (kind, namespace, name, revision)",
    """CREATE TABLE IF NOT EXISTS pilotfish_registrations (
        id TEXT PRIMARY KEY, service TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL,
        labels TEXT NOT NULL, weight BIGINT NOT NULL, service_account TEXT NOT NULL,
        ttl_seconds DOUBLE PRECISION NOT NULL, draining BOOLEAN NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pilotfish_registration_log (
        revision BIGINT NOT NULL, id TEXT NOT NULL, action TEXT NOT NULL,
        PRIMARY KEY (revision, id))""",
    """CREATE TABLE IF NOT EXISTS pilotfish_audit (
        seq {serial}, actor TEXT NOT NULL, verb TEXT NOT NULL, target TEXT NOT NULL,
        result TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
)

_REG_COLUMNS = (
    "id, service, address, port, labels, weight, service_account, ttl_seconds, draining, expires_at"
)
_KEY = "kind = ? AND namespace = ? AND name = ?"
_SELECT_REGS = f"SELECT {_REG_COLUMNS} FROM pilotfish_registrations"
# A lease already past its expiry is not renewed, whether or not ``expire`` has reaped it yet.
_RENEW = (
    "UPDATE pilotfish_registrations SET expires_at = ? + ttl_seconds WHERE id = ? AND expires_at > ? "
    f"RETURNING {_REG_COLUMNS}"
)
_BUMP = "UPDATE pilotfish_meta SET revision = revision + 1 WHERE id = 1 RETURNING revision"


class Tx(Protocol):
    """One open transaction."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]: ...


class _Write:
    """A write transaction that bumps the revision at most once, however many rows it touches."""

    def __init__(self, tx: Tx, announce: Callable[[Tx, Revision], None]) -> None:
        self.tx = tx
        self.revision: Revision | None = None
        self._announce = announce

    def bump(self) -> Revision:
        if self.revision is None:
            (row,) = self.tx.rows(_BUMP)
            self.revision = int(row[0])
            self._announce(self.tx, self.revision)
        return self.revision


class SqlStore(ABC):
    """The ``Store`` protocol over a backend's transactions. Subclasses own connections."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # stamps history entries; registrations take ``now`` explicitly

    # -- what a backend provides ------------------------------------------------------------

    @abstractmethod
    def _transaction(self, *, exclusive: bool) -> AbstractContextManager[Tx]:
        """A transaction. ``exclusive`` ones (every write that may bump the revision) are
        serialized against each other before their first statement."""

    @abstractmethod
    def _announce(self, tx: Tx, revision: Revision) -> None:
        """Inside the writing transaction, once it has a new revision (PostgreSQL: NOTIFY)."""

    @abstractmethod
    def _committed(self, revision: Revision) -> None:
        """After a write committed (SQLite: tell in-process watchers)."""

    @abstractmethod
    def watch(self, callback: Callable[[Revision], None]) -> Subscription: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[_Write]:
        with self._transaction(exclusive=True) as tx:
            write = _Write(tx, self._announce)
            yield write
        if write.revision is not None:
            self._committed(write.revision)

    # -- resources --------------------------------------------------------------------------

    def apply(self, doc: Mapping[str, Any], *, actor: str) -> Revision:
        return self._put(documents.prepare(doc), actor, None)

    def _put(self, prepared: PreparedDocument, actor: str, action: Action | None) -> Revision:
        with self._writing() as write:
            current = write.tx.rows(
                f"SELECT doc, revision FROM pilotfish_resources WHERE {_KEY}",
                prepared.key,
            )
            if current and current[0][0] == prepared.text:
                return int(current[0][1])
            revision = write.bump()
            write.tx.rows(
                "INSERT INTO pilotfish_resources (kind, namespace, name, doc, revision) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, namespace, name) "
                "DO UPDATE SET doc = excluded.doc, revision = excluded.revision",
                (*prepared.key, prepared.text, revision),
            )
            action = action or ("update" if current else "create")
            self._record(write.tx, revision, prepared.key, action, prepared.text, actor)
            return revision

    def _record(
        self,
        tx: Tx,
        revision: Revision,
        key: ResourceKey,
        action: Action,
        text: str | None,
        actor: str,
    ) -> None:
        tx.rows(
            "INSERT INTO pilotfish_history (revision, kind, namespace, name, action, doc, actor, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (revision, *key, action, text, actor, self._clock()),
        )

    def delete(self, kind: str, namespace: str, name: str, *, actor: str) -> Revision | None:
        key = documents.normalize_key(kind, namespace, name)
        with self._writing() as write:
            gone = write.tx.rows(
                f"DELETE FROM pilotfish_resources WHERE {_KEY} RETURNING kind",
                key,
            )
            if not gone:
                return None
            revision = write.bump()
            self._record(write.tx, revision, key, "delete", None, actor)
            return revision

    def get(self, kind: str, namespace: str, name: str) -> StoredResource | None:
        key = documents.normalize_key(kind, namespace, name)
        with self._transaction(exclusive=False) as tx:
            rows = tx.rows(
                f"SELECT doc, revision FROM pilotfish_resources WHERE {_KEY}",
                key,
            )
        return documents.load(rows[0][0], int(rows[0][1])) if rows else None

    def list(self, kind: str | None = None, namespace: str | None = None) -> builtins.list[StoredResource]:
        with self._transaction(exclusive=False) as tx:
            rows = tx.rows(
                "SELECT doc, revision FROM pilotfish_resources WHERE (CAST(? AS TEXT) IS NULL OR kind = ?) "
                "AND (CAST(? AS TEXT) IS NULL OR namespace = ?) ORDER BY kind, namespace, name",
                (kind, kind, namespace, namespace),
            )
        return [stored for stored in (_load_or_skip(doc, rev) for doc, rev in rows) if stored is not None]

    def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]:
        key = documents.normalize_key(kind, namespace, name)
        with self._transaction(exclusive=False) as tx:
            rows = tx.rows(
                "SELECT revision, action, doc, actor, at FROM pilotfish_history "
                "WHERE kind = ? AND namespace = ? AND name = ? ORDER BY revision",
                key,
            )
        return [
            HistoryEntry(int(rev), action, documents.load_doc(doc), actor, float(at))
            for rev, action, doc, actor, at in rows
        ]

    def rollback(
        self, kind: str, namespace: str, name: str, to_revision: Revision, *, actor: str
    ) -> Revision:
        key = documents.normalize_key(kind, namespace, name)
        entry = next((e for e in self.history(*key) if e.revision == to_revision), None)
        ref = "/".join(key)
        if entry is None:
            raise ConfigError([Problem(f"revision {to_revision} did not write this resource", ref=ref)])
        if entry.doc is None:
            raise ConfigError(
                [Problem(f"revision {to_revision} deleted this resource; pick an earlier one", ref=ref)]
            )
        return self._put(documents.prepare(entry.doc), actor, "rollback")

    # -- revisions --------------------------------------------------------------------------

    def revision(self) -> Revision:
        with self._transaction(exclusive=False) as tx:
            return _current_revision(tx)

    def changes_since(self, revision: Revision) -> Changes:
        with self._transaction(exclusive=False) as tx:
            now = _current_revision(tx)
            bounds = (revision, now)
            keys = tx.rows(
                "SELECT DISTINCT kind, namespace, name FROM pilotfish_history "
                "WHERE revision > ? AND revision <= ?",
                bounds,
            )
            ids = tx.rows(
                "SELECT DISTINCT id FROM pilotfish_registration_log WHERE revision > ? AND revision <= ?",
                bounds,
            )
        return Changes(now, frozenset((k, ns, n) for k, ns, n in keys), frozenset(i for (i,) in ids))

    # -- registrations ----------------------------------------------------------------------

    def register(self, registration: Registration, now: float) -> Registration:
        lease = replace(registration, expires_at=now + registration.ttl_seconds)
        with self._writing() as write:
            before = _registrations(write.tx, f"{_SELECT_REGS} WHERE id = ?", (lease.id,))
            write.tx.rows(
                f"INSERT INTO pilotfish_registrations ({_REG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET service = excluded.service, address = excluded.address, "
                "port = excluded.port, labels = excluded.labels, weight = excluded.weight, "
                "service_account = excluded.service_account, ttl_seconds = excluded.ttl_seconds, "
                "draining = excluded.draining, expires_at = excluded.expires_at",
                _registration_row(lease),
            )
            if not (before and before[0].same_endpoint(lease)):
                _log_registration(write, lease.id, "register")
        return lease

    def heartbeat(self, id: str, now: float) -> Registration | None:
        with self._transaction(exclusive=False) as tx:
            renewed = _registrations(tx, _RENEW, (now, id, now))
        return renewed[0] if renewed else None

    def deregister(self, id: str) -> Revision | None:
        with self._writing() as write:
            if not write.tx.rows("DELETE FROM pilotfish_registrations WHERE id = ? RETURNING id", (id,)):
                return None
            return _log_registration(write, id, "deregister")

    def expire(self, now: float, lapsed_after: float | None = None) -> builtins.list[str]:
        where, params = "expires_at <= ?", [now]
        if lapsed_after is not None:
            where, params = "expires_at <= ? AND expires_at > ?", [now, lapsed_after]
        with self._writing() as write:
            gone = write.tx.rows(f"DELETE FROM pilotfish_registrations WHERE {where} RETURNING id", params)
            ids = sorted(id for (id,) in gone)
            for id in ids:
                _log_registration(write, id, "expire")
        return ids

    def registrations(self) -> builtins.list[Registration]:
        with self._transaction(exclusive=False) as tx:
            return _registrations(tx, f"{_SELECT_REGS} ORDER BY id", ())

    # -- audit ------------------------------------------------------------------------------

    def audit(self, actor: str, verb: str, target: str, result: str, at: float) -> None:
        with self._transaction(exclusive=False) as tx:
            tx.rows(
                "INSERT INTO pilotfish_audit (actor, verb, target, result, at) VALUES (?, ?, ?, ?, ?)",
                (actor, verb, target, result, at),
            )

    def audit_entries(self, limit: int = 100) -> builtins.list[AuditEntry]:
        with self._transaction(exclusive=False) as tx:
            rows = tx.rows(
                "SELECT seq, actor, verb, target, result, at FROM pilotfish_audit ORDER BY seq DESC LIMIT ?",
                (limit,),
            )
        return [
            AuditEntry(int(seq), actor, verb, target, result, float(at))
            for seq, actor, verb, target, result, at in rows
        ]


def _current_revision(tx: Tx) -> Revision:
    (row,) = tx.rows("SELECT revision FROM pilotfish_meta WHERE id = 1")
    return int(row[0])


def _load_or_skip(text: str, revision: int) -> StoredResource | None:
    """A bad stored document is left out whole, like a bad file in a config directory."""
    try:
        return documents.load(text, revision)
    except ConfigError as exc:
        log.warning("stored document (revision %d) no longer validates, skipping it: %s", revision, exc)
        return None


def _log_registration(write: _Write, id: str, action: str) -> Revision:
    revision = write.bump()
    write.tx.rows(
        "INSERT INTO pilotfish_registration_log (revision, id, action) VALUES (?, ?, ?)",
        (revision, id, action),
    )
    return revision


def _registration_row(reg: Registration) -> tuple[Any, ...]:
    return (
        reg.id,
        reg.service,
        reg.address,
        reg.port,
        json.dumps(dict(reg.labels), sort_keys=True),
        reg.weight,
        reg.service_account,
        reg.ttl_seconds,
        reg.draining,
        reg.expires_at,
    )


def _registrations(tx: Tx, sql: str, params: Sequence[Any]) -> builtins.list[Registration]:
    """Run ``sql``, which yields ``_REG_COLUMNS``, and build the leases. A row that breaks the
    rules (written before they existed, or by hand) is left out and logged: one bad lease must
    not make every lease unreadable, and so freeze the registry at its last state."""
    out = []
    for r in tx.rows(sql, params):
        try:
            out.append(
                Registration(
                    id=r[0],
                    service=r[1],
                    address=r[2],
                    port=int(r[3]),
                    labels=json.loads(r[4]),
                    weight=int(r[5]),
                    service_account=r[6],
                    ttl_seconds=float(r[7]),
                    draining=bool(r[8]),
                    expires_at=float(r[9]),
                )
            )
        except (ConfigError, ValueError, TypeError) as exc:
            _skipped_row(str(r[0]), str(exc))
    return out


_SKIPPED: set[tuple[str, str]] = set()


def _skipped_row(id: str, reason: str) -> None:
    """Log a stored lease left out, once per lease and reason (every read would repeat it)."""
    if (id, reason) not in _SKIPPED and len(_SKIPPED) < 10_000:
        _SKIPPED.add((id, reason))
        log.warning("stored registration %r is invalid and left out: %s", id, reason)
