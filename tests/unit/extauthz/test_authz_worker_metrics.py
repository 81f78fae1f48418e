"""Check metrics from worker processes: tallies summed into the control plane's /metrics."""

from __future__ import annotations

import pickle

from pilotfish.extauthz.tally import CheckTally
from pilotfish.metrics import Metrics


def tally(decisions: list[tuple[str, str, str, float]], jwks_ok: int = 0, hits: int = 0) -> CheckTally:
    t = CheckTally()
    for d in decisions:
        t.on_authz_check(*d)
    for _ in range(jwks_ok):
        t.on_jwks_fetch(True)
    for _ in range(hits):
        t.on_token_cache(True)
    return t


def test_two_workers_tallies_are_summed_in_the_exposition() -> None:
    one = tally(
        [("allow", "allowed", "foo/require-jwt", 0.0004), ("deny", "denied", "foo/deny-admin", 0.002)], 1, 3
    )
    two = tally([("allow", "allowed", "foo/require-jwt", 0.03)], hits=2)
    two.on_custom_provider("ext-authz-grpc", "deny")
    one.on_custom_provider("ext-authz-grpc", "deny")
    stats = [
        {"pid": 1, "metrics": pickle.loads(pickle.dumps(one.snapshot()))},
        {"pid": 2, "metrics": two.snapshot()},
    ]
    metrics = Metrics()
    metrics.use_authz_workers(lambda: stats)
    text = metrics.exposition().decode()
    assert (
        'pilotfish_authz_checks_total{decision="allow",policy="foo/require-jwt",reason="allowed"} 2.0' in text
    )
    assert 'pilotfish_authz_checks_total{decision="deny",policy="foo/deny-admin",reason="denied"} 1.0' in text
    assert 'pilotfish_authz_check_duration_seconds_bucket{le="0.0005"} 1.0' in text
    assert 'pilotfish_authz_check_duration_seconds_bucket{le="+Inf"} 3.0' in text
    assert "pilotfish_authz_check_duration_seconds_count 3.0" in text
    assert 'pilotfish_authz_jwks_fetches_total{result="ok"} 1.0' in text
    assert 'pilotfish_authz_token_cache_lookups_total{result="hit"} 5.0' in text
    assert 'pilotfish_authz_custom_provider_calls_total{provider="ext-authz-grpc",result="deny"} 2.0' in text
    assert len([line for line in text.splitlines() if line.startswith("# TYPE pilotfish_authz_checks")]) == 1


def test_no_workers_yet_gives_empty_families() -> None:
    metrics = Metrics()
    metrics.use_authz_workers(list)
    assert "pilotfish_authz_check_duration_seconds_count 0.0" in metrics.exposition().decode()
