"""Process plumbing shared by the echo and Envoy wrappers: start, read a line with a deadline, stop."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line the process writes to its stdout pipe, or ``TimeoutError``/``EOFError``.

    ``readline`` alone could block forever on a hung child, so the pipe is polled with a deadline.
    """
    assert proc.stdout is not None, "the process was not started with stdout=PIPE"
    fd = proc.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line from pid {proc.pid} within {timeout}s (got {buffer!r})")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"pid {proc.pid} closed stdout before a full line (got {buffer!r})")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps, so no zombie outlives a test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def is_running(pid: int) -> bool:
    """Whether ``pid`` names a live process that is not a zombie (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
