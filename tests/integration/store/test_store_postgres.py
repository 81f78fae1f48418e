"""PostgreSQL-only behaviour: replicas hearing each other through LISTEN/NOTIFY, and outages —
an unreachable or silent server, killed connections, and a server that goes away and returns
(simulated by a TCP gate in front of the real server that we can shut and reopen)."""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

import psycopg
import pytest
from harness.gate import Gate
from harness.ports import free_port
from harness.waiting import wait_for
from test_store_support import (
    backends_of,
    create_schema,
    database_url,
    scratch_database,
    terminate_backends,
    workload_entry,
)

from pilotfish.errors import StoreUnavailable
from pilotfish.store import open_store
from pilotfish.store.postgres import PostgresStore

pytestmark = pytest.mark.integration

PROMPT = 3.0  # seconds: how long "unavailable" may take to say so


@pytest.fixture(scope="module")
def dbname() -> Iterator[str]:
    with scratch_database("pilotfish_store_pg") as name:
        yield name


@pytest.fixture
def url(dbname: str) -> str:
    return database_url(dbname, create_schema(dbname))


@pytest.fixture
def open_replica(url: str) -> Iterator[Callable[..., PostgresStore]]:
    opened: list[PostgresStore] = []

    def open_(at: str = url) -> PostgresStore:
        store = PostgresStore(at)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


class Recorder:
    """A watch callback that remembers each revision and when it arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.lock = threading.Lock()

    def __call__(self, revision: int) -> None:
        with self.lock:
            self.arrivals.setdefault(revision, time.perf_counter())

    def has(self, revision: int) -> bool:
        with self.lock:
            return revision in self.arrivals


def test_a_write_on_one_replica_reaches_the_other_replicas_listener(
    open_replica: Callable[..., PostgresStore],
) -> None:
    a, b = open_replica(), open_replica()
    a.revision()
    heard = Recorder()
    subscription = b.watch(heard)
    delays = []
    for n in range(20):
        started = time.perf_counter()
        revision = a.apply(workload_entry(f"w{n}"), actor="replica-a")
        wait_for(partial(heard.has, revision), timeout=5, message=f"revision {revision} heard by B")
        delays.append(heard.arrivals[revision] - started)
    subscription.close()

    median, worst = statistics.median(delays) * 1000, max(delays) * 1000
    print(
        f"\nA.apply -> B's watch callback, {len(delays)} writes: median {median:.1f} ms, max {worst:.1f} ms"
    )
    assert max(delays) < 1.0
    stored = b.get("WorkloadEntry", "prod", "w19")
    assert stored is not None and stored.revision == 20


def test_every_write_notifies_its_revision_on_the_documented_channel(
    url: str, open_replica: Callable[..., PostgresStore]
) -> None:
    store = open_replica()
    store.revision()
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN pilotfish_changes")
        written = [
            store.apply(workload_entry("a"), actor="x"),
            store.delete("WorkloadEntry", "prod", "a", actor="x"),
        ]
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert payloads == [str(r) for r in written]


def test_unreachable_server_raises_store_unavailable_promptly() -> None:
    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens_here")
    try:
        for call in (store.revision, lambda: store.apply(workload_entry(), actor="x"), store.registrations):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                call()
            assert time.monotonic() - started < PROMPT
    finally:
        store.close()


def test_a_server_that_accepts_but_never_answers_times_out_promptly() -> None:
    """The kernel completes the handshake for a listening socket nobody accepts from, so the
    client waits for a server greeting that never comes: only the connect timeout saves it."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        port = silent.getsockname()[1]
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/silent")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.revision()
            elapsed = time.monotonic() - started
        finally:
            store.close()
    assert elapsed < PROMPT


def test_a_killed_connection_fails_one_call_then_the_store_reconnects(
    dbname: str, open_replica: Callable[..., PostgresStore]
) -> None:
    store = open_replica()
    store.apply(workload_entry(), actor="x")
    assert terminate_backends(dbname, "pilotfish-store") == 1

    with pytest.raises(StoreUnavailable):
        store.revision()
    assert store.revision() == 1
    assert store.apply(workload_entry("b"), actor="x") == 2


def test_the_listener_reconnects_after_its_connection_is_killed(
    dbname: str, open_replica: Callable[..., PostgresStore]
) -> None:
    a, b = open_replica(), open_replica()
    a.revision()
    heard = Recorder()
    subscription = b.watch(heard)
    try:
        (old,) = backends_of(dbname, "pilotfish-listener")
        terminate_backends(dbname, "pilotfish-listener")
        wait_for(
            lambda: backends_of(dbname, "pilotfish-listener") not in ([], [old]),
            timeout=10,
            message="a new listener connection",
        )
        revision = a.apply(workload_entry(), actor="x")
        wait_for(lambda: heard.has(revision), timeout=5, message="write heard after the listener reconnected")
    finally:
        subscription.close()
    assert backends_of(dbname, "pilotfish-listener") == [], "close() closed the listener's connection"


def test_the_listener_survives_an_unexpected_error_logs_it_and_keeps_listening(
    open_replica: Callable[..., PostgresStore], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug (not a PostgreSQL error) in the listener's loop is logged with its traceback and
    retried like a lost connection: the thread does not end silently."""
    a, b = open_replica(), open_replica()
    a.revision()
    real, attempts = b._connect, []

    def first_attempt_fails(name: str) -> psycopg.Connection[tuple[object, ...]]:
        attempts.append(name)
        if len(attempts) == 1:
            raise RuntimeError("a bug in the listener")
        return real(name)

    b._connect = first_attempt_fails  # type: ignore[method-assign]
    heard = Recorder()
    with caplog.at_level(logging.ERROR, logger="pilotfish.store.postgres"):
        subscription = b.watch(heard)
        try:
            wait_for(lambda: len(attempts) >= 2, timeout=10, message="the listener tried again")
            revision = a.apply(workload_entry(), actor="x")
            wait_for(lambda: heard.has(revision), timeout=10, message="write heard after the failure")
        finally:
            subscription.close()
    [record] = [r for r in caplog.records if "store listener failed" in r.getMessage()]
    assert record.exc_info is not None and "a bug in the listener" in str(record.exc_info[1])


def test_replicas_starting_together_create_the_schema_once(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    results: list[object] = []

    def start(store: PostgresStore) -> None:
        barrier.wait()
        try:
            results.append(store.revision())
        except Exception as exc:  # recorded and asserted on below
            results.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for store in stores:
            store.close()
    assert results == [0] * len(stores)


@pytest.fixture
def gate(url: str) -> Iterator[Gate]:
    gate = Gate(url)
    gate.open()
    yield gate
    if gate.is_open:
        gate.shut()


def through(gate: Gate, url: str) -> str:
    return gate.url


def test_server_outage_is_reported_promptly_and_everything_recovers_when_it_returns(
    url: str, gate: Gate, open_replica: Callable[..., PostgresStore]
) -> None:
    a = open_replica(through(gate, url))  # replica A reaches the server through the gate
    b = open_replica(through(gate, url))  # so does replica B, which watches
    direct = open_replica()  # a replica on the far side of the outage keeps writing
    a.apply(workload_entry("before"), actor="a")
    heard = Recorder()
    subscription = b.watch(heard)
    try:
        gate.shut()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            a.apply(workload_entry("during"), actor="a")
        with pytest.raises(StoreUnavailable):
            a.revision()
        assert time.monotonic() - started < PROMPT
        missed = direct.apply(workload_entry("while-b-was-cut-off"), actor="direct")

        gate.open()
        wait_for(lambda: a.revision() == missed, timeout=10, message="replica A reconnected")
        wait_for(lambda: heard.has(missed), timeout=15, message="B's listener caught up after reconnecting")
        live = direct.apply(workload_entry("after"), actor="direct")
        wait_for(lambda: heard.has(live), timeout=5, message="B's listener live again")
    finally:
        subscription.close()
    assert a.get("WorkloadEntry", "prod", "during") is None
    assert [s.resource.name for s in a.list()] == ["after", "before", "while-b-was-cut-off"]
