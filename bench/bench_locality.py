"""What locality failover costs EDS: translate_endpoints for N services × M endpoints spread over
three localities, for a sidecar in r1/z1.

Measures, in one run on the same machine:
  failover — every DestinationRule has outlierDetection, so each ClusterLoadAssignment gets the
             proxy's locality priorities (``xds/translate/locality.py``);
  baseline — the same mesh and rules without outlierDetection: the plain locality grouping.
Prints both (median of runs) and the ratio failover/baseline.

    .venv/bin/python bench/bench_locality.py [--services 1000] [--endpoints 6] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate import translate_clusters, translate_endpoints

LOCALITIES = ("r1/z1", "r1/z2", "r2/z1")
CHUNK = 400
PROXY = Proxy(
    id="sidecar~10.0.0.1~bench.ns-0~ns-0.svc.cluster.local",
    type=ProxyType.SIDECAR,
    ip="10.0.0.1",
    name="bench",
    namespace="ns-0",
    dns_domain="ns-0.svc.cluster.local",
)


def mesh_yaml(services: range, endpoints: int, outlier: bool) -> str:
    with_outlier = "{outlierDetection: {consecutive5xxErrors: 5}}"
    policy = with_outlier if outlier else "{loadBalancer: {simple: RANDOM}}"
    docs = []
    for s in services:
        eps = "\n".join(
            f"  - {{address: 10.{s // 250}.{s % 250}.{e + 1}, locality: {LOCALITIES[e % 3]}}}"
            for e in range(endpoints)
        )
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{s}, namespace: ns-{s % 20}}}
spec:
  hosts: [svc-{s}.ns-{s % 20}.svc.cluster.local]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
{eps}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{s}, namespace: ns-{s % 20}}}
spec:
  host: svc-{s}.ns-{s % 20}.svc.cluster.local
  trafficPolicy: {policy}
""")
    return "---\n".join(docs)


def eds_time(services: int, endpoints: int, outlier: bool, runs: int) -> tuple[float, int]:
    resources = []
    for start in range(0, services, CHUNK):  # the loader takes at most 1,000 documents a file
        result = load_text(mesh_yaml(range(start, min(start + CHUNK, services)), endpoints, outlier))
        assert not result.errors, result.errors[:3]
        resources.extend(result.resources)
    snapshot = MeshSnapshot.build(resources)
    proxy = replace(PROXY, locality="r1/z1")
    clusters = translate_clusters(snapshot, proxy)
    times, priorities = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        assignments = translate_endpoints(snapshot, proxy, clusters)
        times.append(time.perf_counter() - t0)
        priorities = max(g.priority for a in assignments for g in a.endpoints)
    return statistics.median(times), priorities


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=6)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    failover, top = eds_time(args.services, args.endpoints, True, args.runs)
    base, flat = eds_time(args.services, args.endpoints, False, args.runs)
    assert top == 2 and flat == 0, (top, flat)  # the failover mesh really has priorities 0..2
    print(f"services={args.services} endpoints/service={args.endpoints} localities=3 runs={args.runs}")
    print(f"EDS with locality failover (priorities 0..{top}): {failover * 1000:.1f} ms")
    print(f"baseline, same mesh without outlierDetection: {base * 1000:.1f} ms")
    print(f"ratio failover/baseline: {failover / base:.2f}")


if __name__ == "__main__":
    main()
