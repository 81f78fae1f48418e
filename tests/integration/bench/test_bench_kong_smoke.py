"""bench/bench_kong.py cannot rot: one tiny round of both series, in process and behind gRPC
(with the real Redis), must complete with every Check allowed. Nothing is timed here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_kong.py"


def test_a_tiny_run_reports_both_series() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--requests", "200", "--rounds", "1", "--duration", "0.5"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Ratio kong/plain server CPU per Check" in run.stdout
    assert "| kong |" in run.stdout and "| plain |" in run.stdout
