"""The fast paths of CDS and EDS build exactly what the step-by-step paths build.

``ClusterTemplates`` copies one prebuilt cluster per (discovery type, protocol, policy) and
``LbEndpointWriter`` copies one prebuilt ``LbEndpoint`` per (health, weight, port); both must be
indistinguishable, byte for byte, from building every message field by field.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.endpoint.v3 import endpoint_components_pb2
from translate_builders import destination_rule, proxy, service_entry, snapshot

from pilotfish.registry.model import Endpoint
from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate import translate_clusters
from pilotfish.xds.translate.clusters import ClusterTemplates, build_cluster, service_port_clusters, set_names
from pilotfish.xds.translate.endpoints import LbEndpointWriter, lb_endpoint, visible_destinations

GOLDEN = Path(__file__).parent / "golden"
CASES = {p.name: p.read_text() for p in sorted(GOLDEN.glob("*.in.yaml"))}
# Every protocol class, port-level and subset policies, PASSTHROUGH, a policy holding a Mapping
# (localityLbSetting), a wildcard rule from the root namespace, and DNS services.
CASES["mixed"] = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: multi, namespace: prod}
spec:
  hosts: [multi.prod.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9090, name: grpc, protocol: GRPC}
  - {number: 7000, name: mongo, protocol: MONGO}
  - {number: 7001, name: tcp, protocol: TCP, targetPort: 17001}
  resolution: STATIC
  endpoints:
  - {address: 10.2.0.1, labels: {version: v1}, locality: us-east/zone-a}
  - {address: 10.2.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: multi, namespace: prod}
spec:
  host: multi.prod.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 3s, tcpKeepalive: {probes: 3, time: 10s}}
      http: {http2MaxRequests: 5, idleTimeout: 30s, h2UpgradePolicy: UPGRADE}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s}
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 10s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
  - name: local
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
        localityLbSetting:
          distribute: [{from: us-east/*, to: {"us-east/*": 80, "us-west/*": 20}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: prod}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: none, namespace: prod}
spec:
  hosts: [none.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all, namespace: istio-system}
spec:
  host: "*.example.com"
  trafficPolicy:
    connectionPool: {http: {useClientProtocol: true}}
    retryBudget: {percent: 10}
  subsets:
  - name: warm
    trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST, warmup: {duration: 5s}}}
"""


class BuildEveryCluster(ClusterTemplates):
    """No templates: every cluster built through Istio's steps, as before templates existed."""

    def cluster(self, name, discovery, port, policy):
        built = build_cluster(name, discovery, (), port, self.proxy, policy)
        set_names(built, name)
        return built


def built_by_hand(snap, client):
    templates = BuildEveryCluster(client)
    return [
        cluster
        for service, rule in visible_destinations(snap, client).values()
        for port in service.ports
        for cluster in service_port_clusters(snap, templates, service, port, rule)
    ]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", [ProxyType.SIDECAR, ProxyType.ROUTER])
def test_templated_clusters_equal_clusters_built_one_by_one(case, kind):
    snap, client = snapshot(CASES[case]), proxy("prod", {}, kind)
    fast = [c.SerializeToString(deterministic=True) for c in translate_clusters(snap, client)]
    slow = [c.SerializeToString(deterministic=True) for c in built_by_hand(snap, client)]
    assert fast == slow


def test_policies_that_compare_equal_but_serialize_differently_get_their_own_template():
    # 0.0 == -0.0, yet Envoy receives different bytes: the template key must tell them apart.
    rule = "host: {host}\ntrafficPolicy: {{retryBudget: {{percent: {percent}}}}}"
    snap = snapshot(
        service_entry("a.prod.svc.cluster.local"),
        service_entry("b.prod.svc.cluster.local"),
        destination_rule("a", "prod", rule.format(host="a.prod.svc.cluster.local", percent="0.0")),
        destination_rule("b", "prod", rule.format(host="b.prod.svc.cluster.local", percent="-0.0")),
    )
    budgets = {
        c.name.rsplit("|", 1)[1]: c.circuit_breakers.thresholds[0].retry_budget.budget_percent
        for c in translate_clusters(snap, proxy())
    }
    budgets = {host: percent.SerializeToString() for host, percent in budgets.items()}
    assert budgets["a.prod.svc.cluster.local"] == b""
    assert budgets["b.prod.svc.cluster.local"] != b""


def test_written_lb_endpoints_equal_lb_endpoints_built_one_by_one():
    endpoints = [
        Endpoint("h", 80, "10.0.0.1", 8080),
        Endpoint("h", 80, "10.0.0.2", 8080),
        Endpoint("h", 80, "10.0.0.3", 9090, weight=3),
        Endpoint("h", 80, "10.0.0.4", 8080, health="DRAINING"),
        Endpoint("h", 80, "unix:///var/run/app.sock", 8080),
        Endpoint("h", 80, "10.0.0.5", 8080, weight=0),
    ]
    group = endpoint_components_pb2.LocalityLbEndpoints()
    writer = LbEndpointWriter()
    for endpoint in [*endpoints, *endpoints]:  # the second round is served from the templates
        writer.add(group.lb_endpoints, endpoint)
    assert list(group.lb_endpoints) == [lb_endpoint(e) for e in [*endpoints, *endpoints]]
