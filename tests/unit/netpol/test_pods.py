"""Workloads as pods: WorkloadEntries, ServiceEntry endpoints, registrations and auto-registered
proxies all become pods with their namespace, labels, IP and named ports."""

from __future__ import annotations

from pilotfish.config.loader import load_text
from pilotfish.netpol.decide import Endpoint, decide
from pilotfish.netpol.pods import world_of
from pilotfish.registry.from_registrations import (
    auto_registration,
    registered_workloads,
    registration_endpoints,
)
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.store.base import Registration

CONFIG = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: prod}
spec:
  hosts: [api.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, targetPort: 8080, protocol: HTTP}]
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: prod}
spec:
  hosts: [legacy.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{number: 5432, name: pg, protocol: TCP}]
  endpoints: [{address: 10.0.0.50, labels: {app: legacy}}, {address: legacy.example.com}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: web, namespace: prod}
spec:
  metadata: {labels: {app: web}}
  template: {serviceAccount: web}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1, namespace: prod}
spec: {address: 10.0.0.11, labels: {app: api}, ports: {http: 8080}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]
"""


def test_every_kind_of_workload_is_a_pod() -> None:
    loaded = load_text(CONFIG)
    assert not loaded.problems, loaded.problems
    resources = loaded.resources
    registrations = [
        Registration(
            "reg-1", "api.prod.svc.cluster.local", "10.0.0.12", 8081, {"app": "api"}, ttl_seconds=30
        ),
        auto_registration("web", "prod", "10.0.0.21", {"app": "web"}, "web", 10.0),  # serves no service
    ]
    snapshot = MeshSnapshot.build(
        resources,
        extra_endpoints=registration_endpoints(registrations, resources),
        registered=registered_workloads(registrations, resources),
    )
    world = world_of(snapshot)
    by_ip = {p.ip: p for p in world.pods}
    assert set(by_ip) == {"10.0.0.11", "10.0.0.12", "10.0.0.21", "10.0.0.50"}  # no hostname pod
    assert dict(by_ip["10.0.0.11"].ports) == {"http": 8080}  # the WorkloadEntry's named port
    assert dict(by_ip["10.0.0.12"].ports) == {"http": 8081}  # the registration's port by service port name
    assert (by_ip["10.0.0.21"].namespace, dict(by_ip["10.0.0.21"].labels)) == ("prod", {"app": "web"})
    assert by_ip["10.0.0.50"].name == "legacy-0"
    web = Endpoint("10.0.0.21", by_ip["10.0.0.21"])
    for ip, port in (("10.0.0.11", 8080), ("10.0.0.12", 8081)):
        assert decide(world, web, Endpoint(ip, by_ip[ip]), port).allowed  # named port "http" on each
        assert not decide(
            world, Endpoint("10.0.0.50", by_ip["10.0.0.50"]), Endpoint(ip, by_ip[ip]), port
        ).allowed


def test_registered_workloads_are_kept_only_when_a_network_policy_exists() -> None:
    resources = load_text(CONFIG.split("---\napiVersion: networking.k8s.io/v1")[0]).resources
    registered = registered_workloads(
        [auto_registration("web", "prod", "10.0.0.21", {"app": "web"}, "web", 10.0)], resources
    )
    assert registered and MeshSnapshot.build(resources, registered=registered).registered == ()


def test_the_snapshot_carries_a_workloads_digest_only_with_a_network_policy() -> None:
    with_policy = load_text(CONFIG).resources
    without = load_text(CONFIG.split("---\napiVersion: networking.k8s.io/v1")[0]).resources
    moved = load_text(CONFIG.replace("10.0.0.11", "10.0.0.13")).resources
    digest = MeshSnapshot.build(with_policy).workloads_digest
    assert digest and MeshSnapshot.build(with_policy).workloads_digest == digest
    assert MeshSnapshot.build(moved).workloads_digest != digest  # a WorkloadEntry moved
    registered = registered_workloads(
        [auto_registration("web", "prod", "10.0.0.21", {"app": "web"}, "web", 10.0)], with_policy
    )
    assert MeshSnapshot.build(with_policy, registered=registered).workloads_digest != digest
    assert MeshSnapshot.build(without).workloads_digest == ""
