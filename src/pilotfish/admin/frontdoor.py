"""The admin port's front door: a thread accepts its connections, answers ``GET /healthz``
itself and hands every other connection to the aiohttp server on the event loop.

Why a thread: the event loop also serves every ADS stream. While a change is pushed to a
thousand proxies, one pass of the loop runs thousands of callbacks (30–110 ms per pass measured
in ``bench/bench_scale.py``), and a probe's request waits behind several passes: its accept, its
read, its handler. A load balancer or kubelet probe with a short timeout would then take a busy
but healthy control plane for a dead one. The thread needs only the GIL, which the loop hands
over every switch interval (``SWITCH_INTERVAL``, set by ``serve``).

A hung loop must still fail the probe: the loop stamps a heartbeat every ``BEAT`` seconds (a
timer callback), and the front door answers 503 "event loop unresponsive" once the stamp is older
than ``stall_after``, with the backend's own reasons (failed background tasks, the store).

What is answered here: only a complete ``GET /healthz`` request head in the first bytes of a
connection, with ``Connection: close``. Anything else, including a request that arrives in
pieces, is handed to aiohttp untouched (the thread only peeks, ``MSG_PEEK``), so every other
route, keep-alive, RBAC and aiohttp's own timeouts behave as before. A connection that sends
nothing for ``HANDOVER_AFTER`` seconds is handed over too (aiohttp times it out).

The thread never dies of an unexpected error: it logs it with the traceback, reports it through
``on_failure`` (``pilotfish_task_failures_total{task="admin-front-door"}`` and ``/healthz``) and
goes on after a short pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BEAT = 0.5  # seconds between two heartbeats of the event loop
STALL_AFTER = 5.0  # a heartbeat older than this: the loop is not running (a push pass is < 2 s)
HANDOVER_AFTER = 1.0  # a connection silent this long goes to aiohttp
PEEK_BYTES = 4096
_REQUEST = b"GET /healthz"
_HEAD_END = b"\r\n\r\n"

# The GIL switch interval of a serving process (CPython's default: 5 ms). A probe's socket calls
# each give the GIL away and wait up to one interval to get it back while the loop and the
# translation thread are busy; measured at 1,000 proxies (bench/RESULTS.md), /healthz p99 during
# pushes went from 36-79 ms to 13-45 ms with 1 ms, and push fan-out and CPU stayed within noise.
SWITCH_INTERVAL = 0.001


def tune_switch_interval() -> None:
    """Hand the GIL over more often (``SWITCH_INTERVAL``); called once by ``serve``."""
    sys.setswitchinterval(SWITCH_INTERVAL)


Health = Callable[[], tuple[bool, list[str]]]
HandOver = Callable[[socket.socket], None]


def is_health_probe(head: bytes) -> bool:
    """A complete ``GET /healthz`` (with or without a query) request head."""
    return (
        head.startswith(_REQUEST)
        and head[len(_REQUEST) : len(_REQUEST) + 1] in (b" ", b"?")
        and _HEAD_END in head
    )


def health_text(ok: bool, reasons: list[str]) -> str:
    """The probe's body, whoever answers it (this thread or aiohttp's ``healthz`` handler)."""
    return "ok\n" if ok else "\n".join(reasons) + "\n"


def health_response(ok: bool, reasons: list[str]) -> bytes:
    """What aiohttp's ``healthz`` handler says, as a whole HTTP/1.1 response that closes."""
    body = health_text(ok, reasons).encode()
    status = b"200 OK" if ok else b"503 Service Unavailable"
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


class FrontDoor:
    """Owns the admin port's listening socket and the thread that accepts on it."""

    def __init__(
        self,
        listener: socket.socket,
        health: Health,
        hand_over: HandOver,
        stall_after: float = STALL_AFTER,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._listener = listener
        self._health, self._hand_over = health, hand_over
        self._on_failure = on_failure
        self.stall_after = stall_after
        self._beat_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="admin-front-door", daemon=True)
        self.answered = 0  # probes answered on the thread
        self.handed_over = 0

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat(loop)
        self._thread.start()

    def stop(self) -> None:
        """Any thread: no new connections from here on (the heartbeat ends with its next beat)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._listener.close()

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat_at = time.monotonic()
        if not self._stop.is_set():  # a timer is the loop's own: only the loop may cancel it
            loop.call_later(BEAT, self._beat, loop)

    def health(self) -> tuple[bool, list[str]]:
        """The backend's health, and the loop's: 503 while its heartbeat is stale."""
        ok, reasons = self._health()
        stale = time.monotonic() - self._beat_at
        if stale > self.stall_after:
            reasons = [f"event loop unresponsive for {stale:.1f} s", *reasons]
            ok = False
        return ok, reasons

    # ---- the thread --------------------------------------------------------------------------

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            self._listener.setblocking(False)
            selector.register(self._listener, selectors.EVENT_READ)
            waiting: dict[socket.socket, float] = {}  # accepted, nothing read yet -> hand-over time
            while not self._stop.is_set():
                try:
                    self._once(selector, waiting)
                except Exception as exc:  # never die: the admin port would stop answering
                    if self._stop.is_set():
                        break
                    log.exception("admin port front door")
                    if self._on_failure is not None:
                        self._on_failure(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(0.1)
            for conn in waiting:
                conn.close()

    def _once(self, selector: selectors.BaseSelector, waiting: dict[socket.socket, float]) -> None:
        """One round: accept, look at first bytes, hand over the silent ones."""
        for key, _ in selector.select(timeout=0.2):
            if key.fileobj is self._listener:
                self._accept(selector, waiting)
                continue
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            selector.unregister(conn)
            waiting.pop(conn, None)
            self._first_bytes(conn)
        now = time.monotonic()
        for conn in [c for c, at in waiting.items() if at <= now]:
            selector.unregister(conn)
            del waiting[conn]
            self._give(conn)

    def _accept(self, selector: selectors.BaseSelector, waiting: dict[socket.socket, float]) -> None:
        for _ in range(64):  # what is queued now; the selector reports the rest
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: aiohttp would have failed the same way
                log.warning("admin port: accept failed: %s", exc)
                return
            conn.setblocking(False)
            if self._first_bytes(conn, early=True):
                continue
            selector.register(conn, selectors.EVENT_READ)
            waiting[conn] = time.monotonic() + HANDOVER_AFTER

    def _first_bytes(self, conn: socket.socket, early: bool = False) -> bool:
        """Look at what the connection sent and answer, hand over or close it; False only when
        ``early`` (just accepted) and nothing has arrived yet: the selector waits for it.

        Every socket call gives the GIL away, and while a push keeps the loop and the translation
        thread busy each one costs up to a switch interval to get it back: a probe makes
        as few as it can. Its request has usually arrived by the time it is accepted, so it is
        read right away, not after another round of the selector; a short response is written
        with one ``send`` and the close sends the FIN."""
        try:
            head = conn.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            if early:
                return False
            self._give(conn)  # the selector said readable: nothing to read after all
            return True
        except OSError:
            conn.close()
            return True
        if not head:  # closed before saying anything
            conn.close()
            return True
        if not is_health_probe(head):
            self._give(conn)
            return True
        try:
            ok, reasons = self.health()
        except Exception:  # the backend's state changed under us: let the loop answer
            log.debug("health on the front door failed; handing the probe to the loop", exc_info=True)
            self._give(conn)
            return True
        self.answered += 1  # before the send: whoever reads the response sees it counted
        with contextlib.closing(conn), contextlib.suppress(OSError):
            conn.recv(head.index(_HEAD_END) + len(_HEAD_END))  # consume what was peeked: no RST
            response = health_response(ok, reasons)
            sent = conn.send(response)
            if sent < len(response):  # a full send buffer: finish blocking, briefly
                conn.settimeout(1.0)
                conn.sendall(response[sent:])
        return True

    def _give(self, conn: socket.socket) -> None:
        try:
            self._hand_over(conn)
        except Exception:  # the loop is closed: the server is going away
            conn.close()
            return
        self.handed_over += 1


def listen(host: str, port: int) -> socket.socket:
    """The admin port's listening socket (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


def hand_over_to(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any]) -> HandOver:
    """Hand an accepted socket to ``factory``'s protocol on ``loop`` (aiohttp's server)."""

    def hand_over(conn: socket.socket) -> None:
        future = asyncio.run_coroutine_threadsafe(loop.connect_accepted_socket(factory, conn), loop)

        def done(f: Any) -> None:
            if f.cancelled() or f.exception() is not None:
                conn.close()

        future.add_done_callback(done)

    return hand_over
