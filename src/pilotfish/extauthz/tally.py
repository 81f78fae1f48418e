"""Check metrics kept as plain data inside a Check worker process (``CheckHooks``).

Workers are separate processes, so their prometheus collectors would be invisible to the control
plane's ``/metrics``. Each worker counts into a ``CheckTally`` instead and ships ``snapshot()``
(picklable, self-describing: it names its histogram bounds) with its stats; ``metrics.py`` sums
the workers' snapshots at scrape time. A restarted worker starts from zero, which Prometheus
reads as a counter reset.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

CHECK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1, 0.5)


@dataclass(slots=True)
class CheckTally:
    checks: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    latency: list[int] = field(default_factory=lambda: [0] * (len(CHECK_BUCKETS) + 1))  # last: +Inf
    latency_sum: float = 0.0
    jwks: Counter[str] = field(default_factory=Counter)
    token_cache: Counter[str] = field(default_factory=Counter)
    decision_cache: Counter[str] = field(default_factory=Counter)
    custom_providers: Counter[tuple[str, str]] = field(default_factory=Counter)

    def on_authz_check(self, decision: str, reason: str, policy: str, seconds: float) -> None:
        self.checks[(decision, reason, policy)] += 1
        self.latency[bisect.bisect_left(CHECK_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def on_jwks_fetch(self, ok: bool) -> None:
        self.jwks["ok" if ok else "error"] += 1

    def on_token_cache(self, hit: bool) -> None:
        self.token_cache["hit" if hit else "miss"] += 1

    def on_decision_cache(self, hit: bool) -> None:
        self.decision_cache["hit" if hit else "miss"] += 1

    def on_custom_provider(self, provider: str, result: str) -> None:
        self.custom_providers[(provider, result)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "checks": [[*key, count] for key, count in self.checks.items()],
            "latency": {"bounds": list(CHECK_BUCKETS), "counts": list(self.latency), "sum": self.latency_sum},
            "jwks": dict(self.jwks),
            "token_cache": dict(self.token_cache),
            "decision_cache": dict(self.decision_cache),
            "custom_providers": [[*key, count] for key, count in self.custom_providers.items()],
        }
