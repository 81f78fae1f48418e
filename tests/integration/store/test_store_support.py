"""Helpers the store tests share (no tests here): sample documents and throwaway PostgreSQL
databases, created with a unique name and dropped at the end, never touching shared tables.

The server is ``$PILOTFISH_TEST_POSTGRES`` (a libpq URL of a database we may CREATE DATABASE
from), by default the local trust-auth server. When it cannot be reached the PostgreSQL tests
are skipped with the reason, unless ``PILOTFISH_REQUIRE_POSTGRES=1`` makes that a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

ADMIN_URL = os.environ.get("PILOTFISH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def workload_entry(
    name: str = "a", namespace: str | None = "prod", address: str = "10.0.0.1"
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": metadata,
        "spec": {"address": address},
    }


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("PILOTFISH_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}")


def database_url(dbname: str, schema: str | None = None) -> str:
    """``ADMIN_URL`` pointed at another database (and schema, via ``search_path``)."""
    base = ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{dbname}"
    return url if schema is None else f"{url}?options={quote(f'-c search_path={schema}')}"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named database, yield its name, drop it (even if connections linger)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield name
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def create_schema(dbname: str) -> str:
    """A fresh schema in ``dbname``, so each test starts from empty tables."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url(dbname), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    return schema


def backends_of(dbname: str, application_name: str) -> list[int]:
    """PIDs of server backends in ``dbname`` opened under ``application_name``."""
    with psycopg.connect(database_url(dbname), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (dbname, application_name),
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def terminate_backends(dbname: str, application_name: str) -> int:
    """Kill the server side of the matching connections, as a crashed backend or a failover would."""
    pids = backends_of(dbname, application_name)
    with psycopg.connect(database_url(dbname), autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)
