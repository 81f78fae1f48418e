"""SQLite-only behaviour: an acknowledged write survives SIGKILL; the file is WAL and made on demand."""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store_support import workload_entry

from pilotfish.store import open_store
from pilotfish.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

# Applies documents w0, w1, ... forever, printing "<revision> <n>" after each apply returns.
WRITER = """
import sys
from pilotfish.store.sqlite import SqliteStore

store = SqliteStore(sys.argv[1])
n = 0
while True:
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
           "metadata": {"name": f"w{n}", "namespace": "prod"}, "spec": {"address": "10.0.0.1"}}
    print(store.apply(doc, actor="writer"), n, flush=True)
    n += 1
"""


def read_until_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> bytes:
    """What the process wrote to stdout once it has written ``count`` lines."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
        while out.count(b"\n") < count:
            assert time.monotonic() < deadline, f"writer printed only {out!r} in {timeout}s"
            if selector.select(0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"writer exited early: {proc.wait()}"
                out += chunk
    return out


def test_writes_acknowledged_before_sigkill_are_there_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
    try:
        printed = read_until_lines(proc, 200, timeout=60)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    acknowledged = [tuple(map(int, line.split())) for line in (printed + rest).decode().splitlines() if line]

    with SqliteStore(path) as store:
        assert store.revision() >= acknowledged[-1][0]
        for revision, n in acknowledged:
            stored = store.get("WorkloadEntry", "prod", f"w{n}")
            assert stored is not None and stored.revision == revision, f"acknowledged write w{n} lost"
        print(f"\n{len(acknowledged)} acknowledged writes present after SIGKILL; revision {store.revision()}")


def test_the_file_and_its_directory_are_created_on_first_use_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "pilotfish" / "store.db"
    store = open_store(f"sqlite://{path}")
    try:
        assert not path.exists(), "nothing is created before first use"
        store.apply(workload_entry(), actor="x")
        # synchronous is per connection, so only the store's own connection can show it (2 = FULL).
        assert isinstance(store, SqliteStore) and store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT revision FROM pilotfish_meta").fetchone() == (1,)
    finally:
        conn.close()


def test_two_store_objects_on_one_file_share_revisions(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as one, SqliteStore(tmp_path / "s.db") as two:
        assert one.apply(workload_entry("a"), actor="x") == 1
        assert two.apply(workload_entry("b"), actor="x") == 2
        assert [s.resource.name for s in one.list()] == ["a", "b"]
        assert one.changes_since(1).resources == {("WorkloadEntry", "prod", "b")}
