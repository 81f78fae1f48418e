"""A TCP forwarder that a test can cut: the database (or any server) "goes away" and comes back
on the same address, without stopping the real server that other tests share."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from harness.ports import free_port


class Gate:
    """A TCP forwarder in front of a server: ``shut`` cuts every connection and refuses new ones
    (the server "goes away"), ``open`` listens again on the same port. ``url`` is the PostgreSQL
    URL given, rewritten to go through the gate."""

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
