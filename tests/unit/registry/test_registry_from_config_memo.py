"""``build_registry`` re-derives only the ServiceEntries that changed since the last build, and
always re-derives those that select workloads (what they select can change without them)."""

from __future__ import annotations

from pilotfish.config.loader import load_text
from pilotfish.registry.from_config import build_registry

STATIC = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: ns}
spec:
  hosts: [static.ns.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
"""
SELECTING = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: selecting, namespace: ns}
spec:
  hosts: [selecting.ns.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: sel}}
"""


def workload(address: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: w, namespace: ns}}
spec: {{address: {address}, labels: {{app: sel}}}}
"""


def load(*documents: str) -> list:  # type: ignore[type-arg]
    result = load_text("---\n".join(documents))
    assert not result.errors, result.errors
    return list(result.resources)


def test_an_unchanged_entry_keeps_its_endpoints_and_a_selecting_one_follows_its_workloads() -> None:
    static, selecting, first = load(STATIC, SELECTING, workload("10.1.0.1"))
    _, before = build_registry([static, selecting, first])
    (moved,) = load(workload("10.1.0.2"))
    services, after = build_registry([static, selecting, moved])
    static_key, selected_key = ("static.ns.svc.cluster.local", 80), ("selecting.ns.svc.cluster.local", 80)
    assert after[static_key][0] is before[static_key][0]  # not derived again
    assert [e.address for e in after[selected_key]] == ["10.1.0.2"]
    assert [s.hostname for s in services] == ["selecting.ns.svc.cluster.local", "static.ns.svc.cluster.local"]
    (edited,) = load(STATIC.replace("10.0.0.1", "10.0.0.9"))
    _, again = build_registry([edited, selecting, moved])
    assert [e.address for e in again[static_key]] == ["10.0.0.9"]  # a new object: derived again
