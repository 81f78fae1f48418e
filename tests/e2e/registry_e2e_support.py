"""Helpers for the registry, replica and restart e2e tests (no tests here): the admin API client,
a TCP gate in front of PostgreSQL, throwaway PostgreSQL databases, and the mesh they share."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from harness import http
from harness.envoy import EnvoyProcess
from harness.ports import free_port
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


class Gate:
    """A TCP forwarder in front of PostgreSQL: ``shut`` cuts every connection and refuses new ones
    (the database "goes away"), ``open`` listens again on the same port. (The store's own
    integration tests use the same device.)"""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.port = free_port()
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}"))
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._spawn(self._accept, self._listener)

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def shut(self) -> None:
        assert self._listener is not None
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with self._lock:
            sockets, self._sockets = [self._listener, *self._sockets], []
            threads, self._threads = self._threads, []
        for sock in sockets[1:]:
            _shutdown(sock)
        for thread in threads:
            thread.join()
        for sock in sockets:
            sock.close()
        self._listener = None

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _shutdown(sink)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
