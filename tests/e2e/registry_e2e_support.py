"""Helpers for the registry, replica and restart e2e tests (no tests here): the admin API client,
a TCP gate in front of PostgreSQL, throwaway PostgreSQL databases, and the mesh they share."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from harness import http
from harness.envoy import EnvoyProcess
from harness.waiting import wait_for

HOST = "ratings.prod.svc.cluster.local"
CLUSTER = f"outbound|9080||{HOST}"
POSTGRES = os.environ.get("PILOTFISH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

SERVICE = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ratings}}}}
"""


def workload_entry(name: str, address: str, port: int = 9080) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: prod}}
spec:
  address: {address}
  ports: {{http: {port}}}
  labels: {{app: ratings}}
"""


class Api:
    """The admin API of one pilotfish, as a workload or an operator would call it."""

    def __init__(self, admin: str, token: str | None = None) -> None:
        self.base = f"http://{admin}"
        self.token = token

    def call(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> http.Response:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None and not isinstance(body, str):
            body, headers["content-type"] = json.dumps(body), "application/json"
        elif body is not None:
            headers["content-type"] = "application/yaml"
        return http.request(method, self.base + path, headers=headers, body=body, timeout=timeout)

    def register(self, address: str, port: int, **fields: Any) -> http.Response:
        return self.call(
            "POST", "/registrations", {"service": HOST, "address": address, "port": port, **fields}
        )

    def heartbeat(self, id: str) -> http.Response:
        return self.call("PUT", f"/registrations/{quote(id, safe='')}/heartbeat")

    def deregister(self, id: str) -> http.Response:
        return self.call("DELETE", f"/registrations/{quote(id, safe='')}")

    def apply(self, text: str) -> http.Response:
        return self.call("POST", "/apis", text)


def has_endpoint(envoy: EnvoyProcess, address: str) -> bool:
    """Envoy holds ``address`` (``ip`` or ``ip:port``) in the ratings cluster."""
    return any(e == address or e.rsplit(":", 1)[0] == address for e in envoy.endpoints(CLUSTER))


def timed_until(
    predicate: Callable[[], bool], timeout: float, message: str, interval: float = 0.005
) -> float:
    """Seconds until ``predicate`` held (polled every ``interval``)."""
    started = time.perf_counter()
    wait_for(predicate, timeout=timeout, interval=interval, message=message)
    return time.perf_counter() - started


# ---- PostgreSQL -----------------------------------------------------------------------------


def _admin_connection() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("PILOTFISH_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}: {exc}")


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A uniquely named database's URL, dropped afterwards even if connections linger."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
