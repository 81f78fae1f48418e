"""Rate-limited logging (``pilotfish.lograte``): a burst per key, then one summary; bounded lines
and keys. Its users' tests: tests/unit/xds/test_xds_nack_log.py, the Check server's deny log in
tests/unit/extauthz/test_authz_server_service.py."""

from __future__ import annotations

import logging

import pytest

from pilotfish.lograte import OVERFLOW_KEY, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="test.lograte")
    return logging.getLogger("test.lograte")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.lograte"]


def test_a_burst_per_key_then_one_summary_when_the_window_is_swept(logger, caplog) -> None:
    clock = Clock()
    limited = RateLimitedLog(logger, burst=2, window=10.0, clock=clock)
    written = [limited.log(logging.WARNING, ("p1", "CDS"), "p1 NACKed CDS: %d", i) for i in range(100)]
    assert written == [True, True] + [False] * 98
    assert limited.log(logging.WARNING, ("p2", "CDS"), "p2 NACKed CDS"), "another key has its own burst"
    clock.now += 10.0
    assert limited.log(logging.WARNING, ("p1", "CDS"), "p1 NACKed CDS: again")
    assert lines(caplog) == [
        "p1 NACKed CDS: 0",
        "p1 NACKed CDS: 1",
        "p2 NACKed CDS",
        "98 more like the above from p1 CDS in the last 10s (not logged; see metrics)",
        "p1 NACKed CDS: again",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}


def test_long_lines_are_truncated(logger, caplog) -> None:
    limited = RateLimitedLog(logger, max_chars=100)
    limited.log(logging.INFO, "k", "%s", "x" * 10_000)
    (line,) = lines(caplog)
    assert line == "x" * 100 + "… (9900 more characters)"


def test_keys_beyond_the_limit_share_one_overflow_count(logger, caplog) -> None:
    clock = Clock()
    limited = RateLimitedLog(logger, burst=1, window=5.0, max_keys=3, clock=clock)
    for i in range(1000):
        limited.log(logging.INFO, f"workload-{i}", "deny from workload-%d", i)
    assert len(lines(caplog)) == 3
    clock.now += 5.0
    limited.sweep()
    assert (
        lines(caplog)[-1]
        == f"997 more like the above from {OVERFLOW_KEY} in the last 5s (not logged; see metrics)"
    )
