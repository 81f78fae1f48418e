"""CDS+EDS build time for a mesh of N services × M endpoints (issue "xDS at scale").

Measures, in one run and on the same machine:
  cold     — MeshSnapshot.build (registry) + the outbound part (CDS + EDS, serialized, content-hash
             versions) of one sidecar with empty translation tables: a server's first proxy;
  change   — one endpoint of one service changed: MeshSnapshot.build + the same part with the
             tables of the previous mesh (what every config change costs a running server);
  second   — a second sidecar of the same scope (same namespace and labels, another IP) of a
             mesh already built: its CDS + EDS are the first one's (target ≈ 0);
  other    — a sidecar of another namespace: every resource hits the tables, only keys are built;
  baseline — the protobuf floor: constructing and serializing the same number of Cluster and
             ClusterLoadAssignment messages directly, with no Istio logic at all.
Prints medians and the ratios against the baseline. Target: change < 50 ms at 1000 × 5.

    .venv/bin/python bench/bench_translate.py [--services 1000] [--endpoints 5] [--runs 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from functools import partial

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from pilotfish.config.loader import load_text
from pilotfish.config.resource import Resource
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds import resources as rt
from pilotfish.xds.builder import SnapshotBuilder
from pilotfish.xds.proxy import Proxy, ProxyType


def load_mesh(services: int, endpoints: int) -> tuple[Resource, ...]:
    """The mesh through the real loader, 100 services (200 documents) per text, as a config
    directory would hold them (one file may hold at most ``limits.MAX_DOCUMENTS``)."""
    out: list[Resource] = []
    for start in range(0, services, 100):
        result = load_text(mesh_yaml(min(100, services - start), endpoints, start))
        assert not result.errors, result.errors[:3]
        out.extend(result.resources)
    return tuple(out)


def mesh_yaml(services: int, endpoints: int, start: int = 0) -> str:
    docs = []
    for s in range(start, start + services):
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


def sidecar(ip: str, namespace: str) -> Proxy:
    return Proxy(
        id=f"sidecar~{ip}~bench.{namespace}~{namespace}.svc.cluster.local",
        type=ProxyType.SIDECAR,
        ip=ip,
        name="bench",
        namespace=namespace,
        dns_domain=f"{namespace}.svc.cluster.local",
    )


PROXY = sidecar("10.0.0.1", "ns-0")
SAME_SCOPE = sidecar("10.0.0.2", "ns-0")
OTHER_SCOPE = sidecar("10.0.0.3", "ns-1")
CASES = ("cold", "change", "second", "other")


def moved(resources: tuple[Resource, ...]) -> tuple[Resource, ...]:
    """The same mesh with the first endpoint of svc-0 at another address."""
    out = []
    for resource in resources:
        if resource.kind == "ServiceEntry" and resource.name == "svc-0":
            first, *rest = resource.spec.endpoints
            endpoints = (dataclasses.replace(first, address="10.250.0.1"), *rest)
            spec = dataclasses.replace(resource.spec, endpoints=endpoints)
            resource = dataclasses.replace(resource, spec=spec)
        out.append(resource)
    return tuple(out)


def timed(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def build(builder: SnapshotBuilder, resources: tuple[Resource, ...]) -> None:
    """The registry, then the first proxy's CDS + EDS."""
    builder.use(MeshSnapshot.build(resources))
    builder.outbound(PROXY)


def ours(resources: tuple[Resource, ...], runs: int) -> tuple[dict[str, float], int, int]:
    """Median seconds per case, resources in the part, resources rebuilt by the change."""
    times: dict[str, list[float]] = {c: [] for c in CASES}
    changed_resources: tuple[Resource, ...] = moved(resources)
    count = rebuilt = 0
    for _ in range(runs):
        builder = SnapshotBuilder()  # fresh: empty tables, no interning carried over between runs
        times["cold"].append(timed(partial(build, builder, resources)))
        misses = builder.clusters.misses + builder.assignments.misses
        times["change"].append(timed(partial(build, builder, changed_resources)))
        rebuilt = builder.clusters.misses + builder.assignments.misses - misses
        times["second"].append(timed(partial(builder.outbound, SAME_SCOPE)))
        times["other"].append(timed(partial(builder.outbound, OTHER_SCOPE)))
        part = builder.outbound(PROXY)
        count = sum(len(part.named.get(t, {})) for t in (rt.CLUSTER, rt.ENDPOINT))
    return {c: statistics.median(v) for c, v in times.items()}, count, rebuilt


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
    medians, count, rebuilt = ours(load_mesh(args.services, args.endpoints), args.runs)
    base_s = baseline(args.services, args.endpoints, args.runs)
    print(f"services={args.services} endpoints/service={args.endpoints} resources={count} runs={args.runs}")
    print(f"cold (registry + CDS + EDS + serialize, empty tables): {medians['cold'] * 1000:.1f} ms")
    print(
        f"one endpoint changed (registry + CDS + EDS, warm tables): {medians['change'] * 1000:.1f} ms "
        f"(target < 50 ms; {rebuilt} resources rebuilt)"
    )
    print(f"second proxy of the same scope (CDS + EDS): {medians['second'] * 1000:.3f} ms (target ≈ 0)")
    print(f"proxy of another namespace (CDS + EDS from the tables): {medians['other'] * 1000:.1f} ms")
    print(f"baseline (bare protobuf build + serialize): {base_s * 1000:.1f} ms")
    print(f"ratio cold/baseline: {medians['cold'] / base_s:.2f}")
    print(f"ratio change/baseline: {medians['change'] / base_s:.2f}")


if __name__ == "__main__":
    main()
