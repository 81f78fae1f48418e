"""Supervision of the control plane's background work: nothing dies silently.

Theory of operation. Every long-running asyncio task of ``pilotfish serve`` (the push debouncer,
certificate rotation, lease expiry, the config-directory watcher, ...) is started through one
``Supervisor`` under a name. A task is meant to run until ``stop()``; when its coroutine raises
(or returns early), the supervisor

* logs the failure with its traceback (``log.exception``: one line plus the traceback),
* counts it through the ``on_failure(task)`` hook (``pilotfish_task_failures_total{task}``),
* marks the task degraded — ``problems()`` names it, and ``/healthz`` answers 503 with that
  line — and
* starts the coroutine again after a backoff delay (``Backoff``: exponential, capped, jittered so
  that replicas failing together do not retry in lock-step, as gRPC's connection backoff).

A restarted task is healthy again once it has run ``Backoff.stable_after`` seconds without
failing; only then does the backoff start over from ``initial``. Work that runs in threads or
worker processes (the PostgreSQL listener, the ext_authz worker monitor) heals itself where it
runs and reports a failure here through ``report``, which counts it and shows it in
``problems()`` for ``stable_after`` seconds.

``stop()`` cancels every task and logs — never swallows — an exception a task ends with.
``Backoff.delay`` is pure (the random draw is passed in); ``Supervisor`` is the asyncio shell.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: ``initial * factor**(n-1)`` for the n-th failure in a row, capped at
    ``maximum``, of which the last ``jitter`` fraction is random (gRPC connection backoff uses
    ±20%; "equal jitter" keeps a floor so a crash loop never spins)."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    stable_after: float = 5.0  # seconds of running without failing that count as recovered

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"invalid backoff {self}")
        if self.stable_after < 0:
            raise ValueError("stable_after must not be negative")

    def delay(self, failures: int, draw: float) -> float:
        """Seconds before restart number ``failures`` (1 for the first); ``draw`` in [0, 1)."""
        exponent = max(failures - 1, 0)
        base = min(self.initial * self.factor ** min(exponent, 64), self.maximum)
        return base * (1 - self.jitter) + base * self.jitter * draw


@dataclass(slots=True)
class TaskState:
    """What ``problems()`` says about one named task."""

    failures: int = 0  # failures in a row (reset once stable)
    total: int = 0  # failures since start
    last_error: str = ""
    failed_at: float | None = None  # monotonic time of the last failure
    running_since: float | None = None  # monotonic time of the last (re)start
    restarting: bool = False  # failed, waiting out its backoff
    restart_in: float = 0.0


class Supervisor:
    """Starts, restarts and stops named background tasks; see the module docstring."""

    def __init__(
        self,
        backoff: Backoff = Backoff(),
        on_failure: Callable[[str], None] = lambda _task: None,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.backoff = backoff
        self._on_failure = on_failure
        self._clock = clock
        self._draw = draw
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, TaskState] = {}
        self._stopping = False

    def start(self, name: str, factory: TaskFactory) -> None:
        """Run ``factory()`` as the task ``name`` until ``stop()``, restarting it when it fails."""
        if name in self._tasks:
            raise ValueError(f"a background task named {name!r} is already running")
        self.states[name] = TaskState()
        self._tasks[name] = asyncio.get_running_loop().create_task(self._run(name, factory), name=name)

    def report(self, name: str, error: str) -> None:
        """A failure of work that heals itself elsewhere (a thread, a worker process): counted,
        logged by the caller, and shown by ``problems()`` for ``stable_after`` seconds."""
        state = self.states.setdefault(name, TaskState())
        self._record(name, state, error)
        state.running_since = state.failed_at

    def problems(self) -> list[str]:
        """One line per task that failed and has not yet run ``stable_after`` seconds since."""
        now = self._clock()
        return [
            self._describe(name, s, now) for name, s in sorted(self.states.items()) if self._degraded(s, now)
        ]

    async def stop(self) -> None:
        """Cancel every task; log (never swallow) an exception one ends with."""
        self._stopping = True
        tasks = list(self._tasks.items())
        for _name, task in tasks:
            task.cancel()
        results = await asyncio.gather(*(task for _name, task in tasks), return_exceptions=True)
        for (name, _task), result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("background task %s ended with an error while stopping", name, exc_info=result)
        self._tasks.clear()

    # internals

    async def _run(self, name: str, factory: TaskFactory) -> None:
        state = self.states[name]
        while True:
            state.running_since = self._clock()
            failed: Exception | None = None
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the point of supervision: any failure is logged and retried
                if self._stopping:
                    raise  # stop() logs it
                error = f"{type(exc).__name__}: {exc}"
                failed = exc
            else:
                if self._stopping:
                    return
                error = "returned while the server was running"
            if self._clock() - state.running_since >= self.backoff.stable_after:
                state.failures = 0  # it had recovered: start the backoff over
            self._record(name, state, error)
            state.restarting = True
            state.restart_in = self.backoff.delay(state.failures, self._draw())
            log.error(
                "background task %s failed (%s); restarting in %.2fs",
                name,
                error,
                state.restart_in,
                exc_info=failed,
            )
            await asyncio.sleep(state.restart_in)
            state.restarting = False
            log.info("background task %s restarted (failure %d in a row)", name, state.failures)

    def _record(self, name: str, state: TaskState, error: str) -> None:
        state.failures += 1
        state.total += 1
        state.last_error = error
        state.failed_at = self._clock()
        self._on_failure(name)

    def _degraded(self, state: TaskState, now: float) -> bool:
        if state.failed_at is None:
            return False
        since = state.failed_at if state.running_since is None else state.running_since
        return state.restarting or now - since < self.backoff.stable_after

    @staticmethod
    def _describe(name: str, state: TaskState, now: float) -> str:
        ago = now - state.failed_at if state.failed_at is not None else 0.0
        return (
            f"background task {name} failed {ago:.1f}s ago ({state.last_error}); "
            f"{state.total} failure(s) since start, recovering"
        )
