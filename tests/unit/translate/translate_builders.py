"""Inputs for the translation tests: snapshots from YAML (through the real loader) and proxies."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

from envoy.config.cluster.v3 import cluster_pb2

from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType


def snapshot(*documents: str) -> MeshSnapshot:
    """A snapshot of YAML documents; any load problem fails the test (inputs must be valid)."""
    text = "\n---\n".join(textwrap.dedent(d) for d in documents)
    result = load_text(text)
    assert not result.errors, [str(p) for p in result.errors]
    return MeshSnapshot.build(result.resources)


def proxy(
    namespace: str = "prod",
    labels: Mapping[str, str] | None = None,
    kind: ProxyType = ProxyType.SIDECAR,
    ip: str = "10.0.0.1",
) -> Proxy:
    return Proxy(
        id=f"{kind.value}~{ip}~client.{namespace}~{namespace}.svc.cluster.local",
        type=kind,
        ip=ip,
        name="client",
        namespace=namespace,
        dns_domain=f"{namespace}.svc.cluster.local",
        labels=dict(labels or {}),
    )


def by_name(clusters: Iterable[cluster_pb2.Cluster]) -> dict[str, cluster_pb2.Cluster]:
    return {c.name: c for c in clusters}


def service_entry(
    host: str,
    namespace: str = "prod",
    resolution: str = "STATIC",
    port: int = 9080,
    protocol: str = "HTTP",
    extra: str = "",
) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host.split(".")[0].lstrip("*") or "wild"}-se, namespace: {namespace}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: {resolution}
  ports: [{{number: {port}, name: p{port}, protocol: {protocol}}}]
{extra}"""


def destination_rule(name: str, namespace: str, body: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{textwrap.indent(textwrap.dedent(body).strip(), "  ")}
"""


def workload(name: str, namespace: str, address: str, labels: Mapping[str, str], **extra: str) -> str:
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    extra_text = "".join(f"\n  {k}: {v}" for k, v in extra.items())
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  address: {address}
  labels: {{{label_text}}}{extra_text}
"""
