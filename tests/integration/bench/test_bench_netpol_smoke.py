"""bench/bench_netpol.py cannot rot: one tiny round (enforcement off, then on) through real
sidecars must complete and report both series for both modes. Nothing is timed here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_netpol.py"


def test_a_tiny_run_reports_every_series() -> None:
    # Own session: on a timeout the whole group (pilotfish, Envoys, echo) is stopped.
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), "--rounds", "1", "--requests", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-4000:]
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    for row in (
        "| keep-alive | off | 30 |",
        "| keep-alive | on | 30 |",
        "| new-conn | off | 10 |",
        "| new-conn | on | 10 |",
    ):
        assert row in done.stdout, done.stdout
    assert "keep-alive p50 on/off **" in done.stdout and "Noise (new-conn)" in done.stdout
