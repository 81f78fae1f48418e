"""The datastore contract: what every store keeps, and the value objects it hands back.

A store holds three things:

* **resources** — each kept as its validated original document (plain JSON: apiVersion, kind,
  metadata, spec) and re-parsed on read, so stored data never depends on the shape of the
  config dataclasses; every write records a history entry, so any version can be rolled back;
* **registrations** — leases that workloads take out and renew (``register``/``heartbeat``);
  the caller passes the clock (``now``, unix seconds), so expiry is tested without waiting;
* an **audit log** of who did what through the admin API.

Every change to resources or registrations bumps one global, monotonically increasing
revision. A consumer reads ``revision()`` *first*, then the state, and later asks
``changes_since(that_revision)``; a change that lands in between is reported twice, never
missed. ``watch`` calls back with new revisions as they are committed (PostgreSQL: from any
replica, through LISTEN/NOTIFY).

The API is synchronous: sqlite3 and psycopg's blocking connection are both synchronous, the CLI
and tests call it directly, and the asyncio server calls it through a thread executor. ``watch``
runs its callback on a store-owned thread (or the writer's thread), so the server hands events
to its loop with ``loop.call_soon_threadsafe`` and the store stays free of any event loop.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeAlias

from pilotfish.config.networking.workload_entry import UNIX_PREFIX, endpoint_address
from pilotfish.config.resource import Resource
from pilotfish.errors import ConfigError, Problem

Revision: TypeAlias = int
ResourceKey: TypeAlias = tuple[str, str, str]  # (kind, namespace, name)
Action = Literal["create", "update", "delete", "rollback"]

MAX_WEIGHT = 2**32 - 1  # Envoy's LbEndpoint.load_balancing_weight is a UInt32Value >= 1
MAX_ID_LENGTH = 253
# A lease is renewed every ttl/3 (``register --keepalive``): under a second is a heartbeat storm,
# and past a day it no longer lapses when its workload dies — a permanent endpoint is a
# WorkloadEntry. Istio's auto-registration grace (10 s) sits well inside.
MIN_TTL_SECONDS = 1.0
MAX_TTL_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class StoredResource:
    """A resource as stored: the parsed resource, its document and the revision that wrote it."""

    resource: Resource[Any]
    doc: dict[str, Any]
    revision: Revision


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One write to one resource. ``doc`` is the document written; ``None`` for a delete."""

    revision: Revision
    action: Action
    doc: dict[str, Any] | None
    actor: str
    at: float


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed after a revision, up to and including ``revision``.

    ``revision`` lower than the one asked about means the store was reset (a new database):
    the caller should reload everything."""

    revision: Revision
    resources: frozenset[ResourceKey] = frozenset()
    registrations: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    actor: str
    verb: str
    target: str
    result: str
    at: float


@dataclass(frozen=True, slots=True)
class Registration:
    """A workload's lease on a place in a service's endpoints (issue item 2's data side).

    ``expires_at`` is set by the store from the caller's clock (``now + ttl_seconds``); a lease
    whose ``expires_at`` is not after ``now`` is dead, whether or not ``expire`` reaped it yet.
    Validated at construction, so code downstream trusts every instance."""

    id: str
    service: str  # the service host the workload serves, e.g. "ratings.prod.svc.cluster.local"
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    service_account: str = ""
    ttl_seconds: float = 30.0
    draining: bool = False
    expires_at: float = 0.0

    def __post_init__(self) -> None:
        problems = [Problem(message, path, ref=f"Registration/{self.id}") for path, message in _check(self)]
        if problems:
            raise ConfigError(problems)

    def same_endpoint(self, other: Registration) -> bool:
        """Equal apart from the lease: re-registering it changes nothing anyone can see."""
        return replace(self, expires_at=0.0) == replace(other, expires_at=0.0)


def _check(reg: Registration) -> builtins.list[tuple[str, str]]:
    """(field, message) for every rule the registration breaks."""
    out = []
    if not reg.id or len(reg.id) > MAX_ID_LENGTH:
        out.append(("id", f"must be 1..{MAX_ID_LENGTH} characters"))
    if not reg.service:
        out.append(("service", "must name the service host"))
    if not reg.address:
        out.append(("address", "must not be empty"))
    elif reg.address.startswith(UNIX_PREFIX):
        out.append(("address", "must be an IP address or a hostname"))
    else:  # the WorkloadEntry rule (Istio validateWorkloadEntry): Envoy NACKs anything else
        problem = endpoint_address(reg.address, allow_hostname=True)
        if problem is not None:
            out.append(("address", problem))
    if not 1 <= reg.port <= 65535:
        out.append(("port", "must be in 1..65535"))
    if not 1 <= reg.weight <= MAX_WEIGHT:
        out.append(("weight", f"must be in 1..{MAX_WEIGHT} (use draining to take an endpoint out)"))
    if not (math.isfinite(reg.ttl_seconds) and MIN_TTL_SECONDS <= reg.ttl_seconds <= MAX_TTL_SECONDS):
        out.append(("ttlSeconds", f"must be {MIN_TTL_SECONDS:g}..{MAX_TTL_SECONDS:g} seconds"))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in reg.labels.items()):
        out.append(("labels", "keys and values must be strings"))
    return out


class Subscription(Protocol):
    """A running ``watch``; after ``close`` returns no new callback starts (PostgreSQL: the
    listener thread has stopped and its connection is closed)."""

    def close(self) -> None: ...


class Store(Protocol):
    """The datastore. Every method raises ``StoreUnavailable`` when the backing database cannot
    be reached, and ``ConfigError`` for invalid input, having written nothing."""

    def apply(self, doc: Mapping[str, Any], *, actor: str) -> Revision:
        """Validate, then create or update. An unchanged document writes nothing and returns the
        revision that wrote it (so re-applying a config directory is free)."""
        ...

    def delete(self, kind: str, namespace: str, name: str, *, actor: str) -> Revision | None:
        """``None`` when there was nothing to delete."""
        ...

    def get(self, kind: str, namespace: str, name: str) -> StoredResource | None: ...

    def list(self, kind: str | None = None, namespace: str | None = None) -> builtins.list[StoredResource]:
        """Sorted by key. A stored document that no longer validates is logged and left out."""
        ...

    def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]:
        """Oldest first."""
        ...

    def rollback(
        self, kind: str, namespace: str, name: str, to_revision: Revision, *, actor: str
    ) -> Revision:
        """Write the document that ``to_revision`` wrote again, as a new revision."""
        ...

    def revision(self) -> Revision: ...

    def changes_since(self, revision: Revision) -> Changes: ...

    def register(self, registration: Registration, now: float) -> Registration:
        """Create or replace the lease; returns it with ``expires_at`` set."""
        ...

    def heartbeat(self, id: str, now: float) -> Registration | None:
        """Renew a live lease; ``None`` if it is unknown or already expired (register again)."""
        ...

    def deregister(self, id: str) -> Revision | None: ...

    def expire(self, now: float, lapsed_after: float | None = None) -> builtins.list[str]:
        """Delete the leases past their TTL (with ``lapsed_after``: only those whose expiry is
        after it); returns their ids, sorted."""
        ...

    def registrations(self) -> builtins.list[Registration]: ...

    def audit(self, actor: str, verb: str, target: str, result: str, at: float) -> None: ...

    def audit_entries(self, limit: int = 100) -> builtins.list[AuditEntry]:
        """Newest first."""
        ...

    def watch(self, callback: Callable[[Revision], None]) -> Subscription:
        """Call ``callback(revision)`` after writes commit. Keep it quick: it runs on a store thread."""
        ...

    def close(self) -> None: ...
