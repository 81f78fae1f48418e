"""``--authz-workers N``: N Check server processes sharing one port.

Theory of operation. One Python process decides a few thousand Checks per second (the GIL), so
the Check server scales out in processes, like Envoy scales across worker threads:

* The parent (``AuthzWorkers``, in the control plane) reserves the port: it binds a socket with
  ``SO_REUSEPORT`` and never listens on it, so port 0 works and the port stays ours while workers
  come and go (a bound, non-listening socket receives no connections).
* Each worker is a ``spawn``-context process running ``CheckService`` on a grpc.aio server bound
  to that port with ``grpc.so_reuseport=1``; the kernel spreads new connections across the
  listening workers. Each keeps its own ``JwksCache`` (refreshed in the background,
  ``server.refresh_loop``) and verified-token cache.
* Bundles travel over one duplex ``multiprocessing`` Pipe per worker (see ``bundle``: a bundle
  pickles as its source and recompiles on arrival). ``publish`` pickles once and sends the same
  bytes to every worker; a worker's mailbox thread unpickles (compiles) off the event loop, then
  swaps the bundle on the loop. The parent only sends requests and reads replies (``ready``,
  ``stats``), so a pipe never fills with unread messages.
* A monitor thread waits on the workers' process sentinels; a worker that dies is restarted with
  the latest bundle (at most once per ``RESTART_BACKOFF`` per slot). While no worker listens,
  Envoy's connections are refused and, with ``failure_mode_allow: false``, it answers 403.
* The monitor also probes each worker every ``probe_interval`` over a second pipe of its own
  (so a large bundle being compiled, or a slow ``stats`` reply, never delays a probe); the
  worker answers from its event loop, so a loop that is stuck, or a process that is stopped
  (SIGSTOP) or swapped out, misses the ``probe_timeout`` deadline. Such a worker is killed
  (SIGKILL: a stopped process ignores SIGTERM until continued) and replaced. Killing matters:
  the kernel keeps handing new connections to every socket in the ``SO_REUSEPORT`` group,
  including a hung worker's, whose accept queue nobody drains (Kubernetes' liveness probe,
  which restarts a container that stops answering, is the model; its default timeout is 1 s).
* The monitor never dies of an unexpected error: it logs it with the traceback, reports it
  through ``on_failure`` (``pilotfish_task_failures_total{task="authz-workers"}``) and goes on.
* A worker stops when asked, or when its pipe reaches EOF (the parent died): no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.jwks_fetch import DEFAULT_TIMEOUT, jwks_fetcher
from pilotfish.extauthz.server import CheckService, refresh_loop, start_server
from pilotfish.extauthz.tally import CheckTally

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0  # a spawned worker imports grpc and the package before it can bind
PROBE_INTERVAL = 0.25  # seconds between two health probes of the workers
PROBE_TIMEOUT = 1.0  # a worker whose event loop does not answer within this is replaced
RESTART_BACKOFF = 1.0  # seconds between two starts of one worker slot
STOP_GRACE = 2.0


class WorkerError(RuntimeError):
    """A worker did not start, or did not answer over its pipe."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    host: str
    port: int
    strict: bool = False
    jwks_timeout: float = DEFAULT_TIMEOUT
    jwks_refresh: float = 30.0
    log_level: int = logging.INFO


# ---- the worker process ---------------------------------------------------------------------------


def worker_main(config: WorkerConfig, conn: Connection, first: bytes, probes: Connection) -> None:
    """The entry point of a worker process (module-level, so ``spawn`` can import it). ``first``
    is a pickled ``("bundle", AuthzBundle)`` message: the bundle to serve from the start;
    ``probes`` the pipe the parent's health probes arrive on."""
    logging.basicConfig(
        level=config.log_level, format=f"%(asctime)s authz-worker[{os.getpid()}] %(levelname)s %(message)s"
    )
    _kind, bundle = pickle.loads(first)
    asyncio.run(_serve(config, conn, bundle, probes))


async def _serve(config: WorkerConfig, conn: Connection, bundle: AuthzBundle, probes: Connection) -> None:
    tally = CheckTally()  # shipped with the worker's stats: the control plane's /metrics sums them
    service = CheckService(bundle, fetch=jwks_fetcher(config.jwks_timeout), strict=config.strict, hooks=tally)
    server, _port = await start_server(service, config.host, config.port, reuse_port=True)
    gc.freeze()  # imports and the bundle live as long as the worker: keep them out of GC passes
    refresher = asyncio.create_task(refresh_loop(service, config.jwks_refresh))
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[None] = loop.create_future()
    threading.Thread(target=_answer_probes, args=(probes, loop), daemon=True).start()
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    threading.Thread(target=_mailbox, args=(conn, service, loop, stopped), daemon=True).start()
    try:
        await stopped
    finally:
        refresher.cancel()
        await server.stop(STOP_GRACE)
        await service.close()  # the CUSTOM providers' gRPC channels and HTTP session


def _mailbox(
    conn: Connection, service: CheckService, loop: asyncio.AbstractEventLoop, stopped: asyncio.Future[None]
) -> None:
    """Serve the parent's messages until ``stop`` or EOF. Bundles are unpickled (compiled) here,
    off the event loop, and installed on the loop."""
    while True:
        try:
            kind, payload = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            kind, payload = "stop", None
        except Exception:  # unreadable, or a bundle that does not compile here: keep serving
            log.exception("unreadable message from the control plane; keeping the current bundle")
            continue
        if kind == "bundle":
            loop.call_soon_threadsafe(service.swap, payload)
        elif kind == "stats":
            conn.send_bytes(pickle.dumps(("stats", service.stats())))
        else:
            loop.call_soon_threadsafe(_resolve, stopped)
            return


def _answer_probes(conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
    """Echo each probe's number once the event loop has run a callback: the answer proves the
    loop that serves Checks is alive, not only this thread."""
    while True:
        try:
            number = conn.recv()
            ran = threading.Event()
            loop.call_soon_threadsafe(ran.set)
            ran.wait()
            conn.send(number)
        except (EOFError, OSError, RuntimeError):  # the parent is gone, or the loop closed
            return


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# ---- the parent -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    probes: Connection | None = None  # health probes (monitor thread only)
    started_at: float = 0.0
    pid: int = 0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never-listening ``SO_REUSEPORT`` socket holding ``port`` (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class AuthzWorkers:
    """N Check worker processes on one port. ``start()`` returns the port; ``publish(bundle)``
    reaches every worker (and every later restart); ``stop()`` ends them all."""

    def __init__(
        self,
        port: int,
        n: int,
        *,
        host: str = "127.0.0.1",
        bundle: AuthzBundle | None = None,
        strict: bool = False,
        jwks_timeout: float = DEFAULT_TIMEOUT,
        restart: bool = True,
        probe_interval: float = PROBE_INTERVAL,
        probe_timeout: float = PROBE_TIMEOUT,
        on_failure: Callable[[str], None] = lambda _what: None,
    ) -> None:
        if n < 1:
            raise ValueError("AuthzWorkers needs at least one worker")
        self.host, self.requested_port, self.restart = host, port, restart
        self.port = 0
        self._strict, self._jwks_timeout = strict, jwks_timeout
        first = bundle or AuthzBundle.build(())
        self._latest, self.version = pickle.dumps(("bundle", first)), first.version
        self._slots = [_Slot(i) for i in range(n)]
        self._lock = threading.Lock()  # guards _latest and each slot's process/conn
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._reservation: socket.socket | None = None
        self._context = multiprocessing.get_context("spawn")
        self.restarts = 0
        self.probe_interval, self.probe_timeout = probe_interval, probe_timeout
        self._on_failure = on_failure  # called from the monitor thread
        self._probe_number = 0
        self._next_probe = 0.0
        self.hung = 0  # workers killed because they missed a health probe

    # lifecycle

    def start(self) -> int:
        """Start every worker and wait until each listens; the bound port. Raises ``WorkerError``."""
        self._reservation = reserve_port(self.host, self.requested_port)
        self.port = int(self._reservation.getsockname()[1])
        try:
            for slot in self._slots:
                self._launch(slot)
        except BaseException:
            self.stop()
            raise
        self._monitor = threading.Thread(target=self._watch, name="authz-workers-monitor", daemon=True)
        self._monitor.start()
        log.info("ext_authz: %d workers on %s:%d", len(self._slots), self.host, self.port)
        return self.port

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Ask every worker to stop; terminate those that do not within ``grace``; release the port."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join()
        for slot in self._slots:
            self._end(slot, grace)
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None

    # bundles and stats

    def publish(self, bundle: AuthzBundle) -> bool:
        """Send ``bundle`` to every worker (workers that start later get it too), pickled once.
        False, and nothing is sent, when it is the version already published."""
        if bundle.version == self.version:
            return False
        data = pickle.dumps(("bundle", bundle))
        with self._lock:
            self._latest, self.version = data, bundle.version
            for slot in self._slots:
                self._send(slot, data)
        return True

    def stats(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Each live worker's ``{"pid", "version", "allow", "deny", "error"}``."""
        request = pickle.dumps(("stats", None))
        out = []
        with self._lock:
            for slot in self._slots:
                if slot.conn is not None and self._send(slot, request):
                    reply = _receive(slot.conn, timeout)
                    if reply is not None and reply[0] == "stats":
                        out.append(reply[1])
        return out

    def wait_version(self, version: str, timeout: float = 10.0) -> None:
        """Block until every worker reports ``version``; ``WorkerError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            versions = [s["version"] for s in self.stats()]
            if len(versions) == len(self._slots) and set(versions) == {version}:
                return
            time.sleep(0.02)
        raise WorkerError(f"workers did not all reach bundle {version} within {timeout}s")

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [s.pid for s in self._slots if s.process is not None and s.process.is_alive()]

    # internals

    def _launch(self, slot: _Slot) -> None:
        """Spawn the slot's worker with the latest bundle and wait for its ``ready``."""
        config = WorkerConfig(
            self.host, self.port, self._strict, self._jwks_timeout, log_level=logging.getLogger().level
        )
        slot.started_at = time.monotonic()
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        parent_probes, child_probes = self._context.Pipe(duplex=True)
        with self._lock:
            sent = self._latest
        process = self._context.Process(
            target=worker_main,
            args=(config, child_conn, sent, child_probes),
            name=f"authz-worker-{slot.index}",
        )
        process.daemon = True
        process.start()
        child_conn.close()
        child_probes.close()
        reply = _receive(parent_conn, READY_TIMEOUT)
        if reply is None or reply[0] != "ready":
            _kill(process)
            parent_conn.close()
            parent_probes.close()
            raise WorkerError(f"authz worker {slot.index} did not start (exit code {process.exitcode})")
        with self._lock:
            slot.process, slot.conn, slot.pid, slot.probes = process, parent_conn, reply[1], parent_probes
            if self._latest is not sent:
                self._send(slot, self._latest)  # a publish happened while it was starting

    def _send(self, slot: _Slot, data: bytes) -> bool:
        if slot.conn is None:
            return False
        try:
            slot.conn.send_bytes(data)
        except OSError:
            return False  # the worker died; the monitor restarts it with the latest bundle
        return True

    def _watch(self) -> None:
        """Reap dead and hung workers and (with ``restart``) start them again, until ``stop``."""
        while not self._stopping.is_set():
            try:
                self._watch_once()
            except Exception as exc:  # a bug here must not leave the pool unwatched for good
                log.exception("authz worker monitor failed; continuing")
                self._on_failure(f"authz-workers: {type(exc).__name__}: {exc}")
                self._stopping.wait(RESTART_BACKOFF)

    def _watch_once(self) -> None:
        """One round: wait briefly for an exit, probe, then bury and restart."""
        with self._lock:
            sentinels = [s.process.sentinel for s in self._slots if s.process is not None]
        if sentinels:
            wait(sentinels, timeout=0.2)
        else:
            self._stopping.wait(0.2)
        self._probe()
        for slot in self._slots:
            if self._stopping.is_set():
                return
            if slot.process is not None and not slot.process.is_alive():
                self._bury(slot)
            if slot.process is None and self.restart:
                self._relaunch(slot)

    def _probe(self) -> None:
        """Every ``probe_interval``: probe every worker at once, then kill each one that did not
        answer by the shared deadline (the monitor then restarts it like any dead worker)."""
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + self.probe_interval
        sent: list[tuple[_Slot, int]] = []
        for slot in self._slots:
            if slot.probes is not None and slot.process is not None and slot.process.is_alive():
                self._probe_number += 1
                with contextlib.suppress(OSError):  # dead: the sentinel wait reaps it
                    slot.probes.send(self._probe_number)
                    sent.append((slot, self._probe_number))
        deadline = now + self.probe_timeout
        for slot, number in sent:
            assert slot.probes is not None
            if not _answered(slot.probes, number, deadline) and slot.process is not None:
                if not slot.process.is_alive():
                    continue  # it exited meanwhile: buried as a dead worker
                self.hung += 1
                log.error(
                    "authz worker %d (pid %d) did not answer a health probe within %.1fs; replacing it",
                    slot.index,
                    slot.pid,
                    self.probe_timeout,
                )
                slot.process.kill()  # SIGKILL: a stopped process would hold SIGTERM until continued
                slot.process.join(STOP_GRACE)  # gone before the next probe: reported and killed once
                self._on_failure(f"authz worker {slot.index} (pid {slot.pid}) hung")

    def _bury(self, slot: _Slot) -> None:
        with self._lock:
            process, conn, probes = slot.process, slot.conn, slot.probes
            slot.process, slot.conn, slot.probes = None, None, None
        assert process is not None
        process.join()
        for pipe in (conn, probes):
            if pipe is not None:
                pipe.close()
        log.error("authz worker %d (pid %d) exited with %s", slot.index, slot.pid, process.exitcode)

    def _relaunch(self, slot: _Slot) -> None:
        if time.monotonic() - slot.started_at < RESTART_BACKOFF:
            return  # the next round tries again: a worker that dies at once must not spin
        try:
            self._launch(slot)
        except WorkerError as exc:
            log.error("%s; retrying", exc)
            return
        self.restarts += 1
        log.info("authz worker %d restarted as pid %d", slot.index, slot.pid)

    def _end(self, slot: _Slot, grace: float) -> None:
        with self._lock:
            process, conn, probes = slot.process, slot.conn, slot.probes
            slot.conn, slot.probes = None, None
        if conn is not None:
            self._send_stop(conn)
        if process is not None:
            process.join(grace)
            _kill(process)
        for pipe in (conn, probes):
            if pipe is not None:
                pipe.close()

    @staticmethod
    def _send_stop(conn: Connection) -> None:
        with contextlib.suppress(OSError):  # already gone
            conn.send_bytes(pickle.dumps(("stop", None)))


def _receive(conn: Connection, timeout: float) -> tuple[str, Any] | None:
    """One reply, or ``None`` on timeout or EOF."""
    try:
        if not conn.poll(timeout):
            return None
        message: tuple[str, Any] = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return None
    return message


def _answered(conn: Connection, number: int, deadline: float) -> bool:
    """Whether probe ``number`` is echoed by ``deadline``; earlier (late) echoes are skipped. An
    echo already waiting counts even past the deadline (another worker's wait may have used it)."""
    while True:
        try:
            if not conn.poll(max(deadline - time.monotonic(), 0.0)):
                return False
            if conn.recv() == number:
                return True
        except (EOFError, OSError):
            return False


def _kill(process: BaseProcess) -> None:
    """Terminate, then kill, a process that is still running; always reap it."""
    if process.is_alive():
        process.terminate()
        process.join(STOP_GRACE)
    if process.is_alive():
        process.kill()
    process.join()
