"""NetworkPolicy under the translation cache: a builder that holds the previous mesh builds what
the reference translation builds when only workloads changed (a new pod must enter the
destination's ingress RBAC, a moved one leave it), and proxies that share a scope but not an
address (two gateways) each bind their own source address."""

from __future__ import annotations

from pathlib import Path

from test_listeners_golden import proxy_of
from test_translate_cache_keys import built, contents
from translate_builders import snapshot

from pilotfish.app import translate
from pilotfish.xds import resources as rt
from pilotfish.xds.builder import SnapshotBuilder
from pilotfish.xds.cache import SnapshotCache

GOLDEN = Path(__file__).parent / "netpol_golden"
NEW_WEB = """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-3, namespace: prod}
spec: {address: 10.0.0.24, labels: {app: web}, serviceAccount: web}
"""


def test_a_workload_that_appears_or_moves_reaches_the_cached_listeners() -> None:
    text = (GOLDEN / "ingress.in.yaml").read_text()
    proxy = proxy_of(text)
    builder = SnapshotBuilder()
    built(builder, snapshot(text), proxy)
    for changed in (text + NEW_WEB, text.replace("10.0.0.22", "10.0.0.25")):
        reference = SnapshotCache().build(translate(snapshot(changed), proxy))
        after = built(builder, snapshot(changed), proxy)
        assert contents(after) == contents(reference)
    listener = after.named(rt.LISTENER)["10.0.0.11_5432"].body
    assert b"10.0.0.25" in listener and b"10.0.0.22" not in listener


def test_gateways_sharing_a_scope_bind_their_own_addresses() -> None:
    text = """# proxy: router istio-system 10.0.0.5 istio=ingressgateway
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: prod}
spec:
  hosts: [api.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.31}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec: {podSelector: {}}
"""
    builder = SnapshotBuilder()
    first = proxy_of(text)
    second = proxy_of(text.replace("10.0.0.5", "10.0.0.6"))
    built(builder, snapshot(text), first)
    for proxy in (first, second):
        reference = SnapshotCache().build(translate(snapshot(text), proxy))
        assert contents(builder.build(proxy)) == contents(reference)
        cluster = builder.build(proxy).named(rt.CLUSTER)["outbound|80||api.prod.svc.cluster.local"].body
        assert proxy.ip.encode() in cluster
