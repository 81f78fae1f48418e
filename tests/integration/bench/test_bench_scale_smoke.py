"""bench/bench_scale.py cannot rot: a tiny run (3 proxies × 5 services × 1 trial) against a real
``pilotfish serve`` and the baseline server must complete and report every measurement. Nothing is
timed here; the numbers are only checked for being present and delivered to every proxy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_scale.py"


def run_bench(*args: str, timeout: float = 120) -> str:
    # Own session: on a timeout the whole group (pilotfish, the client processes) is stopped.
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"bench_scale.py did not finish within {timeout}s:\n{out.decode(errors='replace')}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


def test_a_tiny_scale_bench_runs_end_to_end_and_reports_everything() -> None:
    out = run_bench("--proxies", "3", "--services", "5", "--trials", "1", "--settle", "0.2")
    # 5 services + the DestinationRule's subset cluster; secrets: the workload cert and the root.
    assert "each proxy holds: 6 CDS, 6 EDS, 1 LDS, 1 RDS, 2 SDS" in out, out
    for run in ("pilotfish", "baseline"):
        section = out.split(f"\n{run}:\n", 1)[1]
        assert re.search(r"initial sync, all 3 proxies ACKed everything: \d+\.\d\d s", section), out
        assert re.search(
            r"endpoint change → each proxy: p50 \d+ ms, p99 \d+ ms, max \d+ ms \(n=3\)\n", section
        )
        assert re.search(r"DestinationRule change → each proxy: p50 \d+ ms.* \(n=3\)\n", section), out
    assert re.search(r"pilotfish RSS: [\d.]+ MB before the clients, [\d.]+ MB after", out), out
    assert re.search(r"ratio pilotfish/baseline: initial sync [\d.]+, endpoint p50 [\d.]+", out), out
    assert "never arrived" not in out, out
