"""Translation off the event loop: one worker thread builds and publishes proxies' snapshots.

Theory of operation
-------------------
The event loop serves every ADS stream, the admin API and ``/healthz``; translating a large mesh
takes tens of milliseconds and more, which on the loop would delay every ACK and health check.
So all translation runs on one worker thread (``ThreadPoolExecutor(max_workers=1)``), in the order
it was asked for: a push (load the config, build the ``MeshSnapshot``, rebuild every connected
proxy's snapshot through ``SnapshotBuilder``), a newly connected proxy's first snapshot (batched:
every proxy that connected while the worker was busy is built in one job), a forgotten proxy.
One thread owns the builder and its tables, so they need no locks; jobs never overlap, so a proxy
that connects during a push is built from the push's mesh or the next one, never half of each.

A thread, not a process: a process would have to receive the mesh and send back every snapshot
(pickling thousands of resources per push, more than the translation itself costs), and the
loop stays responsive anyway because CPython hands the GIL over every few milliseconds
(``sys.getswitchinterval``). Measured in bench/RESULTS.md: /healthz answers while a full push of
1,000 proxies is computed.

Publishing is ``SnapshotCache.set_snapshot`` from the worker: thread-safe, and each stream's
watcher hands the snapshot to the loop through the server's ``Handover`` (one
``call_soon_threadsafe`` per batch of snapshots, not one per proxy) where the stream diffs and
sends on its own task, so a slow or stuck proxy delays nobody else (``server.PushGate`` bounds
how many streams push at once). A proxy whose versions did not change is not woken at all
(counted as skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.builder import SecretSource, SnapshotBuilder
from pilotfish.xds.cache import InconsistentSnapshot, SnapshotCache
from pilotfish.xds.proxy import Proxy

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PublishHooks:
    """Metric callbacks: seconds per translated part, pushes skipped (nothing changed), and one
    whole pass (seconds, proxies)."""

    translated: Callable[[str, float], None] | None = None
    skipped: Callable[[int], None] | None = None
    pass_done: Callable[[float, int], None] | None = None


class Publisher:
    """Owns the builder and the worker thread; every method is called on the event loop."""

    def __init__(
        self, cache: SnapshotCache, secrets: SecretSource | None = None, hooks: PublishHooks | None = None
    ) -> None:
        self.cache = cache
        self.hooks = hooks or PublishHooks()
        self.builder = SnapshotBuilder(cache.interner, secrets, self.hooks.translated)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pilotfish-translate")
        self._connecting: dict[str, Proxy] = {}
        self._connect_job: asyncio.Future[None] | None = None
        self.passes = 0  # full passes over every proxy
        self.batches = 0  # batches of newly connected proxies

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    async def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the worker thread, after every job asked for before it."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, job)

    def use(self, mesh: MeshSnapshot) -> None:
        """Worker thread only: build from ``mesh`` from now on."""
        self.builder.use(mesh)

    def publish_all(self, proxies: Iterable[Proxy], alive: Callable[[str], bool]) -> int:
        """Worker thread only: rebuild and publish every proxy in ``proxies`` that is still
        ``alive``; returns how many were published with a change."""
        started = time.perf_counter()
        proxies = list(proxies)
        changed = skipped = 0
        for proxy in proxies:
            outcome = self._publish(proxy, alive)
            if outcome is True:
                changed += 1
            elif outcome is False:
                skipped += 1
        self.builder.finish(p.id for p in proxies if alive(p.id))
        self.builder.report_timing()
        self.passes += 1
        if self.hooks.skipped is not None and skipped:
            self.hooks.skipped(skipped)
        if self.hooks.pass_done is not None:
            self.hooks.pass_done(time.perf_counter() - started, len(proxies))
        return changed

    def _publish(self, proxy: Proxy, alive: Callable[[str], bool]) -> bool | None:
        """True: published with a change; False: nothing changed; None: not published."""
        if not alive(proxy.id):
            self.builder.forget(proxy.id)
            return None
        try:
            snapshot = self.builder.build(proxy)
        except InconsistentSnapshot as exc:  # a translation bug: keep the last good snapshot
            log.error("not publishing an inconsistent snapshot for %s: %s", proxy.id, exc)
            return None
        return self.cache.set_snapshot(proxy.id, snapshot)

    def connected(self, proxy: Proxy, alive: Callable[[str], bool]) -> None:
        """Build ``proxy``'s first snapshot soon; proxies connecting meanwhile join the batch."""
        self._connecting[proxy.id] = proxy
        if self._connect_job is None:
            self._connect_job = asyncio.ensure_future(self._build_connected(alive))

    async def _build_connected(self, alive: Callable[[str], bool]) -> None:
        try:
            while self._connecting:
                batch, self._connecting = list(self._connecting.values()), {}
                await self.run(partial(self._publish_batch, batch, alive))
        except Exception:
            log.exception("building the snapshots of newly connected proxies failed")
        finally:
            self._connect_job = None
            if self._connecting:  # arrived after the loop ended (or after a failure): go again
                self._connect_job = asyncio.ensure_future(self._build_connected(alive))

    def _publish_batch(self, batch: list[Proxy], alive: Callable[[str], bool]) -> None:
        for proxy in batch:
            self._publish(proxy, alive)
        self.builder.report_timing()
        self.batches += 1

    def forget(self, proxy_id: str) -> None:
        """The proxy is gone: drop its snapshot now and its builder state on the worker."""
        self._connecting.pop(proxy_id, None)
        self.cache.clear(proxy_id)
        with contextlib.suppress(RuntimeError):  # shut down: nothing left to forget it in
            self._worker.submit(self._forget, proxy_id)

    def _forget(self, proxy_id: str) -> None:
        self.builder.forget(proxy_id)
        self.cache.clear(proxy_id)  # a build that raced the disconnect may have published it
