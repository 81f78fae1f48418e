"""Polling with a deadline: the one way tests wait for an eventually-true condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Exceptions from the predicate count as "not yet" (a port not yet open, a stat not yet present),
    but the last one is chained to the ``TimeoutError`` so a failure explains itself. Exceptions
    of a ``fatal`` type (say, "the process died") propagate at once: waiting longer cannot help.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    last_value: object = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except fatal:
            raise
        except Exception as exc:  # any other failure means "not ready yet"
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{message} not met within {timeout}s (last value {last_value!r})"
            ) from last_error
        time.sleep(interval)
