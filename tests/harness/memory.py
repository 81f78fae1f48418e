"""A process's memory, read from Linux ``/proc/PID/status`` (kB → bytes)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from typing import NamedTuple


def status_bytes(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (the resident peak since the process started)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no {field} in /proc/{pid}/status")


class Run(NamedTuple):
    returncode: int
    output: str
    seconds: float
    peak_rss: int  # bytes: the highest VmHWM sampled from /proc, and the kernel's figure at exit


def run_measured(command: Sequence[str], timeout: float = 60.0) -> Run:
    """Run ``command`` to completion, sampling its ``/proc`` peak RSS every few milliseconds; the
    kernel's own maximum (``wait4``) covers the last moments before exit, which sampling can miss."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                peak = max(peak, usage.ru_maxrss * 1024)
                break
            with contextlib.suppress(OSError, LookupError):  # exiting right now
                peak = max(peak, status_bytes(proc.pid, "VmHWM"))
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{command} still running after {timeout}s")
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        assert proc.stdout is not None
        return Run(proc.returncode, proc.stdout.read().decode(errors="replace"), seconds, peak)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
