"""Log lines that a peer can repeat at will — Envoy NACKs, ext_authz denies — rate-limited per
source and summarised, so a misbehaving proxy or a flood of denied requests cannot fill the disk
(2,000 NACKs of 10 KB were 20 MB of log in 3 s) or drown every other line.

``RateLimitedLog(logger).log(level, key, fmt, *args)``: per ``key`` (e.g. proxy and type, or
policy and workload) at most ``burst`` lines per ``window`` seconds are written, each at most
``max_chars`` long; the rest are counted and reported as one summary line for that key when its
window is swept (on a later call, at most ``window`` seconds after it ended). Distinct keys beyond
``max_keys`` share one overflow count, so memory stays bounded whatever the keys. Counting is
the job of metrics (every NACK and every deny is counted there); these lines are for reading.
Not thread-safe: each event loop (or Check worker process) owns its limiter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

OVERFLOW_KEY = "<other sources>"


@dataclass(slots=True)
class _Window:
    start: float
    level: int
    logged: int = 0
    suppressed: int = 0


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        window: float = 60.0,
        max_chars: int = 2000,
        max_keys: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.burst, self.window = logger, burst, window
        self.max_chars, self.max_keys, self.clock = max_chars, max_keys, clock
        self._windows: dict[Hashable, _Window] = {}
        self._swept = clock()

    def log(self, level: int, key: Hashable, fmt: str, *args: Any) -> bool:
        """Write the line unless ``key`` used its burst in this window; True when written."""
        now = self.clock()
        if now - self._swept >= self.window:
            self.sweep(now)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                key = OVERFLOW_KEY
                window = self._windows.setdefault(key, _Window(now, level, logged=self.burst))
            else:
                window = self._windows[key] = _Window(now, level)
        if window.logged >= self.burst:
            window.suppressed += 1
            return False
        window.logged += 1
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", self._truncated(fmt % args if args else fmt))
        return True

    def sweep(self, now: float | None = None) -> None:
        """Summarise and forget every window that has ended (all of them with ``now=inf``)."""
        now = self.clock() if now is None else now
        self._swept = now
        for key, window in list(self._windows.items()):
            if now - window.start < self.window:
                continue
            del self._windows[key]
            if window.suppressed:
                self.logger.log(
                    window.level,
                    "%d more like the above from %s in the last %.0fs (not logged; see metrics)",
                    window.suppressed,
                    _shown(key),
                    now - window.start,
                )

    def _truncated(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return f"{text[: self.max_chars]}… ({len(text) - self.max_chars} more characters)"


def _shown(key: Hashable) -> str:
    if isinstance(key, tuple):
        return " ".join(str(part) for part in key)
    return str(key)
