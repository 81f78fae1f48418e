"""CDS+EDS build time for a mesh of N services × M endpoints (issue "xDS server" performance line).

Measures, in one run and on the same machine:
  ours     — MeshSnapshot.build (registry) + translate_clusters + translate_endpoints + cache.build
             (serialize once, content-hash versions) for one sidecar;
  baseline — the protobuf floor: constructing and serializing the same number of Cluster and
             ClusterLoadAssignment messages directly, with no Istio logic at all.
Prints both (median of runs) and the ratio ours/baseline. Target: ours < 50 ms at 1000 × 5.
Also prints ours per phase — the registry runs once per config change for all proxies, the rest
once per proxy — and what one further proxy of the same snapshot costs.

    .venv/bin/python bench/bench_translate.py [--services 1000] [--endpoints 5] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate import translate_clusters, translate_endpoints


def mesh_yaml(services: int, endpoints: int) -> str:
    docs = []
    for s in range(services):
        eps = "\n".join(
            f"  - address: 10.{s // 250}.{s % 250}.{e + 1}\n    labels: {{version: v{e % 2 + 1}}}"
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
""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{s}, namespace: ns-{s % 20}}}
spec:
  host: svc-{s}.ns-{s % 20}.svc.cluster.local
  trafficPolicy: {{loadBalancer: {{simple: LEAST_REQUEST}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
""")
    return "---\n".join(docs)


PROXY = Proxy(
    id="sidecar~10.0.0.1~bench.ns-0~ns-0.svc.cluster.local",
    type=ProxyType.SIDECAR,
    ip="10.0.0.1",
    name="bench",
    namespace="ns-0",
    dns_domain="ns-0.svc.cluster.local",
)
OTHER_PROXY = Proxy(
    id="sidecar~10.0.0.2~bench.ns-1~ns-1.svc.cluster.local",
    type=ProxyType.SIDECAR,
    ip="10.0.0.2",
    name="bench",
    namespace="ns-1",
    dns_domain="ns-1.svc.cluster.local",
)


PHASES = ("registry", "clusters", "endpoints", "cache")


def ours(resources: tuple, runs: int) -> tuple[float, dict[str, float], float, int]:
    """Median total, median per phase, and the median cost of one more proxy (see ``next_proxy``)."""
    totals, phases, nexts, count = [], {p: [] for p in PHASES}, [], 0
    for _ in range(runs):
        cache = SnapshotCache()  # fresh: no interning carried over between runs
        t0 = time.perf_counter()
        snapshot = MeshSnapshot.build(resources)
        t1 = time.perf_counter()
        clusters = translate_clusters(snapshot, PROXY)
        t2 = time.perf_counter()
        endpoints = translate_endpoints(snapshot, PROXY, clusters)
        t3 = time.perf_counter()
        built = cache.build([*clusters, *endpoints])
        t4 = time.perf_counter()
        totals.append(t4 - t0)
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[phase].append(seconds)
        nexts.append(next_proxy(snapshot))
        count = sum(len(built.named(t)) for t in built.versions)
    return (
        statistics.median(totals),
        {p: statistics.median(v) for p, v in phases.items()},
        statistics.median(nexts),
        count,
    )


def next_proxy(snapshot: MeshSnapshot) -> float:
    """CDS + EDS + cache for a second proxy, in another namespace, of a snapshot already built:
    what each further proxy costs (the DestinationRule index is shared; its view of the mesh and
    a fresh cache, so no interning, are not)."""
    t0 = time.perf_counter()
    clusters = translate_clusters(snapshot, OTHER_PROXY)
    SnapshotCache().build([*clusters, *translate_endpoints(snapshot, OTHER_PROXY, clusters)])
    return time.perf_counter() - t0


def baseline(services: int, endpoints: int, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = []
        for s in range(services):
            for subset in ("", "v1"):
                name = f"outbound|8080|{subset}|svc-{s}.ns-{s % 20}.svc.cluster.local"
                cluster = cluster_pb2.Cluster(
                    name=name, type=cluster_pb2.Cluster.EDS, lb_policy=cluster_pb2.Cluster.LEAST_REQUEST
                )
                cluster.eds_cluster_config.eds_config.CopyFrom(
                    config_source_pb2.ConfigSource(ads={}, resource_api_version=config_source_pb2.V3)
                )
                cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
                group = cla.endpoints.add()
                for e in range(endpoints if not subset else (endpoints + 1) // 2):
                    lb = endpoint_components_pb2.LbEndpoint()
                    lb.endpoint.address.CopyFrom(
                        address_pb2.Address(
                            socket_address=address_pb2.SocketAddress(
                                address=f"10.{s // 250}.{s % 250}.{e + 1}", port_value=8080
                            )
                        )
                    )
                    group.lb_endpoints.append(lb)
                out.append(cluster.SerializeToString(deterministic=True))
                out.append(cla.SerializeToString(deterministic=True))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # Loaded in chunks: one YAML text may hold at most 1,000 documents (config.limits).
    documents = mesh_yaml(args.services, args.endpoints).split("\n---\n")
    resources = []
    for start in range(0, len(documents), 500):
        result = load_text("\n---\n".join(documents[start : start + 500]))
        assert not result.errors, result.errors[:3]
        resources.extend(result.resources)
    ours_s, phases, next_s, count = ours(tuple(resources), args.runs)
    base_s = baseline(args.services, args.endpoints, args.runs)
    print(f"services={args.services} endpoints/service={args.endpoints} resources={count} runs={args.runs}")
    print(f"ours (registry + CDS + EDS + serialize): {ours_s * 1000:.1f} ms (target < 50 ms)")
    print("  per phase (medians): " + ", ".join(f"{p} {s * 1000:.1f} ms" for p, s in phases.items()))
    print(f"  per further proxy of the same snapshot (CDS + EDS + serialize): {next_s * 1000:.1f} ms")
    print(f"baseline (bare protobuf build + serialize): {base_s * 1000:.1f} ms")
    print(f"ratio ours/baseline: {ours_s / base_s:.2f}")


if __name__ == "__main__":
    main()
