"""Push debouncing, as Istio's ``debounce()`` (pilot/pkg/xds/discovery.go).

Changes are merged; a push starts once the changes have been quiet for ``quiet`` seconds
(PILOT_DEBOUNCE_AFTER, 100 ms) or the oldest unpushed change is ``max_delay`` old
(PILOT_DEBOUNCE_MAX, 10 s); only one push runs at a time, and changes that arrive during a
push start the next cycle. ``wait_time`` is the pure decision; ``Debouncer`` is the asyncio shell.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def wait_time(first: float, last: float, now: float, quiet: float, max_delay: float) -> float:
    """Seconds still to wait before pushing; ``<= 0`` means push now."""
    return min(last + quiet, first + max_delay) - now


class Debouncer:
    def __init__(
        self,
        push: Callable[[], Awaitable[None]],
        quiet: float = 0.1,
        max_delay: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_failure: Callable[[Exception], None] = lambda _exc: None,
    ) -> None:
        self._push = push
        self._on_failure = on_failure  # a failed push is logged here and reported (supervise.py)
        self.quiet = quiet
        self.max_delay = max_delay
        self._clock = clock
        self._first: float | None = None
        self._last = 0.0
        self._wake = asyncio.Event()
        self.first_change_of_last_push: float | None = None  # for push-latency metrics

    def trigger(self) -> None:
        """Record a change. Safe to call from the event loop thread only."""
        now = self._clock()
        if self._first is None:
            self._first = now
        self._last = now
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            while self._first is not None:
                delay = wait_time(self._first, self._last, self._clock(), self.quiet, self.max_delay)
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
            self._wake.clear()
            self.first_change_of_last_push, self._first = self._first, None
            try:
                await self._push()
            except Exception as exc:  # a failed push must not stop future pushes
                log.exception("push failed")
                self._on_failure(exc)
