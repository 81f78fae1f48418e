"""bench/bench_scale.py cannot rot: a tiny run (3 proxies × 5 services × 1 trial) against a real
``pilotfish serve`` and the baseline server must complete and report every measurement. Nothing is
timed here; the numbers are only checked for being present and delivered to every proxy."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.processes import is_running
from harness.waiting import wait_for

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


@pytest.mark.parametrize("mode", ["SotW", "delta"])
def test_a_tiny_scale_bench_runs_end_to_end_and_reports_everything(mode: str) -> None:
    flags = ["--delta"] if mode == "delta" else []
    out = run_bench("--proxies", "3", "--services", "5", "--trials", "1", "--settle", "0.2", *flags)
    assert f"1 trials, {mode} ADS" in out, out
    # 5 services + the DestinationRule's subset cluster; secrets: the workload cert and the root.
    assert "each proxy holds: 6 CDS, 6 EDS, 1 LDS, 1 RDS, 2 SDS" in out, out
    for run in ("pilotfish", "baseline"):
        section = out.split(f"\n{run}:\n", 1)[1]
        assert re.search(r"initial sync, all 3 proxies ACKed everything: \d+\.\d\d s", section), out
        fan_out = r"each proxy: first \d+ ms, p50 \d+ ms, p99 \d+ ms, max \d+ ms \(n=3\)\n"
        assert re.search(r"endpoint change → " + fan_out, section), out
        assert re.search(r"DestinationRule change → " + fan_out, section), out
    assert re.search(r"pilotfish RSS: [\d.]+ MB before the clients, [\d.]+ MB after", out), out
    cpu = r"endpoint change [\d.]+ s, DestinationRule change [\d.]+ s"
    assert re.search(r"baseline CPU \(user \+ system\): " + cpu, out), out
    assert re.search(r"ratio pilotfish/baseline: initial sync [\d.]+, endpoint p50 [\d.]+", out), out
    assert "never arrived" not in out, out


def test_replicas_share_the_proxies_and_every_proxy_gets_every_change() -> None:
    """``--replicas 2``: two ``serve`` processes on one config directory and CA, proxy P on
    replica P mod 2: every proxy syncs and receives both changes, and RSS covers both."""
    out = run_bench(
        "--proxies",
        "4",
        "--services",
        "5",
        "--trials",
        "1",
        "--settle",
        "0.2",
        "--replicas",
        "2",
        "--no-baseline",
    )
    assert "2 pilotfish processes" in out, out
    section = out.split("\npilotfish (2 replicas):\n", 1)[1]
    assert re.search(r"initial sync, all 4 proxies ACKed everything: \d+\.\d\d s", section), out
    fan_out = r"each proxy: first \d+ ms, p50 \d+ ms.* \(n=4\)\n"
    assert re.search(r"endpoint change → " + fan_out, section), out
    assert re.search(r"DestinationRule change → " + fan_out, section), out
    assert re.search(r"pilotfish RSS \(all replicas\): [\d.]+ MB before the clients", out), out
    assert "never arrived" not in out, out


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux ``/proc/PID/task/*/children``)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = {int(c) for c in (task / "children").read_text().split()}
                todo.extend(children - found)
                found |= children
    return found


def _ours(pid: int) -> bool:
    """pilotfish or a client process (not multiprocessing's resource tracker, which follows its
    parent by itself)."""
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"pilotfish\0serve" in cmdline or b"spawn_main" in cmdline
    return False


def test_a_terminated_bench_stops_pilotfish_and_its_client_processes() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH),
            "--proxies",
            "3",
            "--services",
            "5",
            "--trials",
            "50",
            "--settle",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    children: set[int] = set()
    try:

        def pilotfish_running() -> set[int]:
            children = descendants(proc.pid)
            cmdlines = [Path(f"/proc/{c}/cmdline").read_bytes() for c in children if is_running(c)]
            return (
                children if any(b"serve\0--config" in c for c in cmdlines) and len(children) >= 3 else set()
            )

        children = wait_for(pilotfish_running, timeout=60, message="pilotfish and the clients started")
        time.sleep(1.0)  # in the middle of the trials
        children |= descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        # Stopped by the bench before it exits, not left to notice their parent is gone.
        left = wait_for(
            lambda: not any(is_running(c) and _ours(c) for c in children), timeout=1, message="no child left"
        )
        assert left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for child in children:  # whatever the bench failed to stop, stopped here by PID
            if is_running(child) and _ours(child):
                os.kill(child, signal.SIGKILL)
        if proc.stdout:
            proc.stdout.close()
