"""A small mesh and two sidecars of one namespace, through the real loader (for the push tests)."""

from __future__ import annotations

import dataclasses

from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.1.0.1}, {address: 10.1.0.2}]
"""


def mesh_and_proxies() -> tuple[MeshSnapshot, list[Proxy]]:
    result = load_text(MESH)
    assert not result.errors, result.errors
    base = Proxy(
        id="sidecar~10.0.0.1~a.prod~prod.svc.cluster.local",
        type=ProxyType.SIDECAR,
        ip="10.0.0.1",
        name="a",
        namespace="prod",
        dns_domain="prod.svc.cluster.local",
    )
    other = dataclasses.replace(
        base, id="sidecar~10.0.0.2~b.prod~prod.svc.cluster.local", ip="10.0.0.2", name="b"
    )
    return MeshSnapshot.build(result.resources), [base, other]
