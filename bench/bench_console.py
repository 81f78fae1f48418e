"""The web console's per-poll cost: ``/ui/api/mesh``'s graph and a service page, for a mesh of N
services × M endpoints with a DestinationRule (two subsets) and a VirtualService routing to a
subset for every service. The console computes them on every poll of every open page, on the
control plane's event loop, so they must stay small next to what a config change costs anyway.

Measured in one run: ``model.graph`` (everything visible) on a fresh snapshot (the first poll
after a config change computes the whole graph) and again on the same snapshot (every later poll
only filters it for the caller's RBAC), ``model.service_page``, and the BASELINE, the same run's
``MeshSnapshot.build`` of the same resources — what every config change costs before any proxy
is translated. Prints medians and the ratios to the baseline.

    .venv/bin/python bench/bench_console.py [--services 1000] [--endpoints 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from pilotfish.config.loader import load_text
from pilotfish.console import model
from pilotfish.registry.snapshot import MeshSnapshot


def mesh_yaml(services: int, endpoints: int, first: int = 0) -> str:
    docs = []
    for s in range(first, first + services):
        ns, host = f"ns-{s % 20}", f"svc-{s}.ns-{s % 20}.svc.cluster.local"
        eps = "\n".join(
            f"  - address: 10.{s // 250}.{s % 250}.{e + 1}\n"
            f"    labels: {{version: v{e % 2 + 1}, security.istio.io/tlsMode: istio}}"
            for e in range(endpoints)
        )
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{s}, namespace: {ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
{eps}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{s}, namespace: {ns}}}
spec:
  host: {host}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{s}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: {host}, subset: v2}}}}]
  - route: [{{destination: {{host: {host}, subset: v1}}}}]
""")
    return "---\n".join(docs)


def everything(kind: str, namespace: str) -> bool:
    return True


def timed(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    resources = []
    for first in range(0, args.services, 100):  # 100 services (300 documents) per file, within the limits
        loaded = load_text(mesh_yaml(min(100, args.services - first), args.endpoints, first), f"{first}.yaml")
        assert not loaded.errors, loaded.errors[:3]
        resources.extend(loaded.resources)
    build, graph, again, page, edges = [], [], [], [], 0
    for _ in range(args.runs):
        build.append(timed(lambda: MeshSnapshot.build(resources)))
        mesh = MeshSnapshot.build(resources)
        start = time.perf_counter()
        drawn = model.graph(mesh, everything)
        graph.append(time.perf_counter() - start)
        edges = len(drawn["edges"])
        again.append(timed(lambda m=mesh: model.graph(m, everything)))
        page.append(timed(lambda m=mesh: model.service_page(m, "svc-7.ns-7.svc.cluster.local", everything)))
    b, g, a, p = (statistics.median(x) * 1000 for x in (build, graph, again, page))
    print(
        f"mesh: {args.services} services x {args.endpoints} endpoints, {edges} graph edges, {args.runs} runs"
    )
    print(f"baseline MeshSnapshot.build: {b:.1f} ms")
    print(f"console graph, first poll:   {g:.1f} ms  (ratio to build {g / b:.2f})")
    print(f"console graph, later polls:  {a:.1f} ms  (ratio to build {a / b:.2f})")
    print(f"console service page:        {p:.2f} ms")


if __name__ == "__main__":
    main()
