"""The ``Store`` contract, run against both implementations: SQLite in ``tmp_path`` and
PostgreSQL in a throwaway database (one schema per test, the database dropped at the end)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness.waiting import wait_for
from test_store_support import create_schema, database_url, scratch_database, workload_entry

from pilotfish.errors import ConfigError, StoreUnavailable
from pilotfish.store import Registration
from pilotfish.store.postgres import PostgresStore
from pilotfish.store.sql import SqlStore
from pilotfish.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

KEY = ("WorkloadEntry", "prod", "a")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with scratch_database("pilotfish_store_contract") as name:
        yield name


@dataclass
class Backend:
    """Opens stores on one fresh backing database; ``raw`` runs SQL on it behind the store's back."""

    open: Callable[..., SqlStore]
    raw: Callable[[str, tuple[Any, ...]], None]


def _sqlite_backend(path: Path, opened: list[SqlStore]) -> Backend:
    import sqlite3

    def raw(sql: str, params: tuple[Any, ...]) -> None:
        conn = sqlite3.connect(path)
        try:
            with conn:
                conn.execute(sql, params)
        finally:
            conn.close()

    return Backend(lambda **kw: _keep(opened, SqliteStore(path, **kw)), raw)


def _postgres_backend(url: str, opened: list[SqlStore]) -> Backend:
    def raw(sql: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s").encode(), params)

    return Backend(lambda **kw: _keep(opened, PostgresStore(url, **kw)), raw)


def _keep(opened: list[SqlStore], store: SqlStore) -> SqlStore:
    opened.append(store)
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[SqlStore] = []
    if request.param == "sqlite":
        yield _sqlite_backend(tmp_path / "state" / "store.db", opened)
    else:
        dbname = request.getfixturevalue("pg_database")
        yield _postgres_backend(database_url(dbname, create_schema(dbname)), opened)
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> SqlStore:
    return backend.open()


def reg(id: str = "r1", **overrides: Any) -> Registration:
    fields: dict[str, Any] = {"service": "ratings.prod.svc", "address": "10.1.0.1", "port": 8080}
    return Registration(id=id, **(fields | overrides))


# -- resources --------------------------------------------------------------------------------


def test_apply_then_get_returns_the_validated_document(store: SqlStore) -> None:
    revision = store.apply(workload_entry(), actor="alice")

    stored = store.get(*KEY)
    assert stored is not None
    assert stored.revision == revision == store.revision() == 1
    assert stored.doc == workload_entry()
    assert stored.resource.key == KEY
    assert stored.resource.spec.address == "10.0.0.1"


def test_missing_namespace_means_default_and_is_written_out(store: SqlStore) -> None:
    store.apply(workload_entry(namespace=None), actor="alice")

    stored = store.get("WorkloadEntry", "", "a")
    assert stored is not None and stored.resource.namespace == "default"
    assert stored.doc["metadata"] == {"name": "a", "namespace": "default"}
    assert store.get("WorkloadEntry", "default", "a") == stored


def test_update_writes_a_new_revision_and_history(store: SqlStore) -> None:
    first = store.apply(workload_entry(address="10.0.0.1"), actor="alice")
    second = store.apply(workload_entry(address="10.0.0.2"), actor="bob")

    assert second > first
    stored = store.get(*KEY)
    assert stored is not None and stored.doc["spec"] == {"address": "10.0.0.2"}
    history = store.history(*KEY)
    assert [(h.revision, h.action, h.actor) for h in history] == [
        (first, "create", "alice"),
        (second, "update", "bob"),
    ]
    assert history[0].doc == workload_entry(address="10.0.0.1")


def test_reapplying_an_unchanged_document_writes_nothing(store: SqlStore) -> None:
    doc = workload_entry()
    first = store.apply(doc, actor="alice")
    store.apply(workload_entry("b"), actor="alice")
    reordered = {
        "spec": doc["spec"],
        "metadata": doc["metadata"],
        "kind": doc["kind"],
        "apiVersion": doc["apiVersion"],
    }

    assert store.apply(reordered, actor="bob") == first
    assert store.revision() == 2
    assert len(store.history(*KEY)) == 1


INVALID = {
    "unknown kind": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {}},
    "bad field": workload_entry() | {"spec": {"address": "10.0.0.1", "weight": "heavy"}},
    "bad name": workload_entry(name="Not_A_Name"),
    "not an object": ["WorkloadEntry"],
    "unknown top-level field": workload_entry() | {"extra": 1},
}


@pytest.mark.parametrize("doc", INVALID.values(), ids=INVALID.keys())
def test_invalid_document_raises_config_error_and_writes_nothing(store: SqlStore, doc: Any) -> None:
    store.apply(workload_entry("keep"), actor="alice")

    with pytest.raises(ConfigError):
        store.apply(doc, actor="alice")

    assert store.revision() == 1
    assert [s.resource.name for s in store.list()] == ["keep"]
    assert store.changes_since(1).resources == frozenset()


def test_invalid_update_keeps_the_previous_version(store: SqlStore) -> None:
    store.apply(workload_entry(), actor="alice")
    with pytest.raises(ConfigError):
        store.apply(workload_entry(address="unix://relative/path"), actor="alice")

    stored = store.get(*KEY)
    assert stored is not None and stored.doc == workload_entry()
    assert len(store.history(*KEY)) == 1


SERVICE_ENTRY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "ext", "namespace": "prod"},
    "spec": {
        "hosts": ["example.com"],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    },
}


def test_list_filters_by_kind_and_namespace_sorted_by_key(store: SqlStore) -> None:
    for name, ns in [("b", "prod"), ("a", "prod"), ("a", "dev")]:
        store.apply(workload_entry(name, ns), actor="alice")
    store.apply(SERVICE_ENTRY, actor="alice")

    assert [s.resource.key for s in store.list()] == [
        ("ServiceEntry", "prod", "ext"),
        ("WorkloadEntry", "dev", "a"),
        ("WorkloadEntry", "prod", "a"),
        ("WorkloadEntry", "prod", "b"),
    ]
    assert [s.resource.name for s in store.list(kind="WorkloadEntry", namespace="prod")] == ["a", "b"]
    assert [s.resource.key[1] for s in store.list(namespace="dev")] == ["dev"]
    assert store.list(kind="Gateway") == []


def test_delete_removes_and_records_history(store: SqlStore) -> None:
    created = store.apply(workload_entry(), actor="alice")

    deleted = store.delete(*KEY, actor="bob")

    assert deleted is not None and deleted > created
    assert store.get(*KEY) is None
    assert store.delete(*KEY, actor="bob") is None
    assert store.revision() == deleted
    last = store.history(*KEY)[-1]
    assert (last.revision, last.action, last.doc, last.actor) == (deleted, "delete", None, "bob")


def test_history_and_rollback_reapply_an_old_document_as_a_new_revision(store: SqlStore) -> None:
    v1 = store.apply(workload_entry(address="10.0.0.1"), actor="alice")
    store.apply(workload_entry(address="10.0.0.2"), actor="alice")
    gone = store.delete(*KEY, actor="alice")
    assert gone is not None

    back = store.rollback(*KEY, v1, actor="carol")

    assert back > gone
    stored = store.get(*KEY)
    assert stored is not None and stored.doc == workload_entry(address="10.0.0.1") and stored.revision == back
    assert [h.action for h in store.history(*KEY)] == ["create", "update", "delete", "rollback"]
    assert store.history(*KEY)[-1].actor == "carol"


def test_rollback_to_a_revision_that_did_not_write_a_document_is_refused(store: SqlStore) -> None:
    store.apply(workload_entry(), actor="alice")
    other = store.apply(workload_entry("b"), actor="alice")
    deleted = store.delete(*KEY, actor="alice")
    assert deleted is not None

    for revision in (other, deleted, 999):
        with pytest.raises(ConfigError):
            store.rollback(*KEY, revision, actor="carol")
    assert store.revision() == deleted


def test_stored_document_that_no_longer_validates_is_skipped_by_list(
    backend: Backend, store: SqlStore
) -> None:
    store.apply(workload_entry("good"), actor="alice")
    store.apply(workload_entry("bad"), actor="alice")
    # As if an upgrade tightened a rule: the stored text no longer validates.
    broken = json.dumps(workload_entry("bad") | {"spec": {"x": 1}})
    backend.raw("UPDATE pilotfish_resources SET doc = ? WHERE name = ?", (broken, "bad"))

    assert [s.resource.name for s in store.list()] == ["good"]
    with pytest.raises(ConfigError):
        store.get("WorkloadEntry", "prod", "bad")


def test_stored_registration_that_no_longer_validates_is_skipped(backend: Backend, store: SqlStore) -> None:
    """A lease written before the address rules existed (``not-an-ip!`` used to be accepted) must
    not make every lease unreadable: it is left out, the others are served."""
    store.register(reg("good"), now=0.0)
    store.register(reg("bad", address="10.1.0.2"), now=0.0)
    backend.raw("UPDATE pilotfish_registrations SET address = ? WHERE id = ?", ("not-an-ip!", "bad"))

    assert [r.id for r in store.registrations()] == ["good"]
    assert store.heartbeat("bad", 1.0) is None  # unknown as far as the caller goes: register again
    assert store.heartbeat("good", 1.0) is not None


# -- revisions --------------------------------------------------------------------------------


def test_revisions_increase_by_one_per_write(store: SqlStore) -> None:
    seen = [
        store.apply(workload_entry("a"), actor="x"),
        store.apply(workload_entry("b"), actor="x"),
        store.delete("WorkloadEntry", "prod", "a", actor="x"),
        store.deregister("nobody"),
        store.register(reg(), now=0.0) and store.revision(),
        store.apply(workload_entry("b", address="10.9.9.9"), actor="x"),
    ]
    assert seen == [1, 2, 3, None, 4, 5]


def test_concurrent_writers_get_distinct_gapless_revisions(backend: Backend) -> None:
    stores = [backend.open(), backend.open()]  # two connections to one database
    stores[0].revision()  # create the schema before the race
    revisions: list[int] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        store = stores[index % 2]
        for n in range(10):
            revision = store.apply(workload_entry(f"w{index}-{n}"), actor=f"t{index}")
            with lock:
                revisions.append(revision)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(revisions) == list(range(1, 41))
    assert len(stores[1].changes_since(0).resources) == 40


def test_changes_since_reports_resources_and_registrations_after_a_revision(store: SqlStore) -> None:
    store.apply(workload_entry("old"), actor="x")
    start = store.revision()
    store.apply(workload_entry("a"), actor="x")
    store.apply(workload_entry("a", address="10.0.0.9"), actor="x")
    store.delete("WorkloadEntry", "prod", "old", actor="x")
    store.register(reg("r1"), now=0.0)
    store.apply(workload_entry("a", address="10.0.0.9"), actor="x")  # unchanged: not a change

    changes = store.changes_since(start)

    assert changes.revision == store.revision() == start + 4
    assert changes.resources == {("WorkloadEntry", "prod", "a"), ("WorkloadEntry", "prod", "old")}
    assert changes.registrations == {"r1"}
    assert store.changes_since(changes.revision) == replace(
        changes, resources=frozenset(), registrations=frozenset()
    )
    assert store.changes_since(0).resources >= changes.resources


def test_data_survives_reopening(backend: Backend) -> None:
    first = backend.open()
    revision = first.apply(workload_entry(), actor="alice")
    first.register(reg(), now=100.0)
    first.audit("alice", "apply", "WorkloadEntry/prod/a", "ok", at=5.0)
    last = first.revision()
    first.close()

    again = backend.open()
    stored = again.get(*KEY)
    assert stored is not None and stored.revision == revision
    assert again.revision() == last == 2
    assert [r.id for r in again.registrations()] == ["r1"]
    assert [e.actor for e in again.audit_entries()] == ["alice"]


def test_watch_calls_back_with_each_committed_revision(store: SqlStore) -> None:
    seen: list[int] = []
    subscription = store.watch(seen.append)
    try:
        first = store.apply(workload_entry("a"), actor="x")
        store.apply(workload_entry("a"), actor="x")  # unchanged: no revision, no callback
        second = store.register(reg(), now=0.0) and store.revision()
        wait_for(lambda: second in seen, timeout=5, message="revision delivered")
    finally:
        subscription.close()
    store.apply(workload_entry("b"), actor="x")
    time.sleep(0.3)
    assert first in seen and second in seen
    assert max(seen) == second, "no callbacks after close"


def test_closed_store_raises_store_unavailable(backend: Backend) -> None:
    store = backend.open()
    store.apply(workload_entry(), actor="x")
    store.close()
    with pytest.raises(StoreUnavailable):
        store.get(*KEY)


# -- registrations ----------------------------------------------------------------------------


def test_register_sets_the_lease_from_now(store: SqlStore) -> None:
    lease = store.register(
        reg(labels={"version": "v1"}, weight=3, ttl_seconds=10.0, service_account="ratings"), 100.0
    )

    assert lease.expires_at == 110.0
    assert store.registrations() == [lease]
    assert store.registrations()[0].labels == {"version": "v1"}


def test_heartbeat_renews_only_a_live_lease(store: SqlStore) -> None:
    store.register(reg(ttl_seconds=10.0), now=100.0)

    renewed = store.heartbeat("r1", now=105.0)
    assert renewed is not None and renewed.expires_at == 115.0
    assert store.heartbeat("r1", now=115.0) is None, "expired at 115 even though expire() has not run"
    assert store.heartbeat("nobody", now=100.0) is None
    assert store.registrations()[0].expires_at == 115.0


def test_heartbeat_is_not_a_change(store: SqlStore) -> None:
    store.register(reg(), now=0.0)
    revision = store.revision()
    store.heartbeat("r1", now=1.0)
    assert store.revision() == revision


def test_expire_deletes_leases_past_their_ttl(store: SqlStore) -> None:
    store.register(reg("short", ttl_seconds=5.0), now=100.0)
    store.register(reg("long", ttl_seconds=60.0), now=100.0)
    store.register(reg("renewed", ttl_seconds=5.0), now=100.0)
    store.heartbeat("renewed", now=104.0)
    before = store.revision()

    assert store.expire(now=104.9) == []
    assert store.revision() == before
    assert store.expire(now=105.0) == ["short"]
    assert store.revision() == before + 1
    assert store.expire(now=200.0) == ["long", "renewed"]
    assert store.revision() == before + 2, "one revision per expire call"
    assert store.registrations() == []
    assert store.changes_since(before).registrations == {"short", "long", "renewed"}


def test_expire_with_a_floor_spares_leases_that_lapsed_before_it(store: SqlStore) -> None:
    """A server that just started reaps only the leases that lapsed since it started: the others
    lapsed while nothing could renew them (``ControlPlane._reap_floor``)."""
    store.register(reg("lapsed-before", ttl_seconds=5.0), now=100.0)  # lapsed at 105
    store.register(reg("lapsed-after", ttl_seconds=5.0), now=108.0)  # lapses at 113

    assert store.expire(now=114.0, lapsed_after=110.0) == ["lapsed-after"]
    assert [r.id for r in store.registrations()] == ["lapsed-before"]
    assert store.expire(now=114.0, lapsed_after=105.0) == [], "expired at the floor: spared"
    assert store.expire(now=114.0) == ["lapsed-before"]


def test_deregister_removes_the_lease(store: SqlStore) -> None:
    store.register(reg("r1"), now=0.0)
    store.register(reg("r2"), now=0.0)

    revision = store.deregister("r1")

    assert revision == store.revision()
    assert [r.id for r in store.registrations()] == ["r2"]
    assert store.deregister("r1") is None


def test_reregistering_changes_the_revision_only_when_the_endpoint_changes(store: SqlStore) -> None:
    store.register(reg(), now=0.0)
    revision = store.revision()

    again = store.register(reg(), now=50.0)
    assert again.expires_at == 80.0 and store.revision() == revision

    draining = store.register(reg(draining=True), now=60.0)
    assert store.revision() == revision + 1
    assert store.registrations() == [draining] and draining.draining


# -- audit ------------------------------------------------------------------------------------


def test_audit_entries_newest_first_with_limit(store: SqlStore) -> None:
    for n in range(5):
        store.audit(
            f"user{n}", "delete", f"WorkloadEntry/prod/w{n}", "denied" if n % 2 else "ok", at=float(n)
        )

    entries = store.audit_entries(limit=3)

    assert [(e.actor, e.verb, e.target, e.result, e.at) for e in entries] == [
        ("user4", "delete", "WorkloadEntry/prod/w4", "ok", 4.0),
        ("user3", "delete", "WorkloadEntry/prod/w3", "denied", 3.0),
        ("user2", "delete", "WorkloadEntry/prod/w2", "ok", 2.0),
    ]
    assert entries[0].seq > entries[1].seq > entries[2].seq
    assert len(store.audit_entries()) == 5
    assert store.revision() == 0, "the audit log is not configuration"


def test_history_timestamps_come_from_the_clock(backend: Backend) -> None:
    store = backend.open(clock=lambda: 1234.5)
    store.apply(workload_entry(), actor="alice")
    assert [h.at for h in store.history(*KEY)] == [1234.5]
