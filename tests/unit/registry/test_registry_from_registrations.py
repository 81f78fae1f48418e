"""Registrations → endpoints (pure): by service host, by WorkloadGroup, draining, and the mesh."""

from __future__ import annotations

from pilotfish.config.loader import load_text
from pilotfish.registry.from_registrations import (
    AUTO_REGISTERED_PORT,
    auto_registration,
    parse_group_ref,
    registration_endpoints,
    registration_namespace,
)
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.store import Registration

HOST = "ratings.prod.svc.cluster.local"

CONFIG = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}, {{number: 9443, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings-copy, namespace: staging}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 7000, name: http, protocol: HTTP}}]
  resolution: STATIC
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: ratings-vms, namespace: prod}}
spec:
  metadata: {{labels: {{app: ratings, tier: vm}}}}
  template:
    ports: {{http: 8080}}
    serviceAccount: ratings
    labels: {{version: v1}}
"""


def resources():
    result = load_text(CONFIG, "config.yaml")
    assert not result.errors, result.errors
    return result.resources


def reg(**fields) -> Registration:
    base = {"id": "r1", "service": HOST, "address": "10.0.0.7", "port": 7001}
    return Registration(**(base | fields))


def test_a_host_registration_serves_every_port_of_the_first_declaration_at_its_port() -> None:
    endpoints = registration_endpoints([reg(labels={"version": "v2"}, weight=3)], resources())
    assert [(e.service_port, e.address, e.port, e.namespace) for e in endpoints] == [
        (9080, "10.0.0.7", 7001, "prod"),
        (9443, "10.0.0.7", 7001, "prod"),
    ]
    assert all(e.weight == 3 and e.labels == {"version": "v2"} and e.health == "HEALTHY" for e in endpoints)
    assert endpoints[0].workload == "Registration/r1"


def test_draining_keeps_the_endpoint_as_draining() -> None:
    (first, _second) = registration_endpoints([reg(draining=True)], resources())
    assert first.health == "DRAINING"


def test_a_host_nothing_declares_gets_no_endpoints_yet() -> None:
    assert registration_endpoints([reg(service="unknown.example")], resources()) == ()


def test_a_group_registration_is_a_workload_entry_from_the_template() -> None:
    lease = reg(id="vm1", service="WorkloadGroup/prod/ratings-vms", labels={"zone": "a"})
    endpoints = registration_endpoints([lease], resources())
    assert [(e.hostname, e.service_port, e.port) for e in endpoints] == [
        (HOST, 9080, 8080),
        (HOST, 9443, 9443),
    ]
    labels = {"app": "ratings", "tier": "vm", "version": "v1", "zone": "a"}
    assert all(e.labels == labels and e.service_account == "ratings" for e in endpoints)


def test_a_group_whose_labels_no_service_selects_adds_nothing() -> None:
    lease = reg(service="WorkloadGroup/prod/ratings-vms", labels={"app": "other"})
    assert registration_endpoints([lease], resources()) == ()
    assert registration_endpoints([reg(service="WorkloadGroup/prod/missing")], resources()) == ()


def test_registration_endpoints_join_the_mesh_snapshot() -> None:
    rs = resources()
    mesh = MeshSnapshot.build(rs, extra_endpoints=registration_endpoints([reg()], rs))
    assert [e.address for e in mesh.endpoints_for(HOST, 9080)] == ["10.0.0.7"]


def test_auto_registration_leases_the_grace_period_in_the_proxys_group() -> None:
    lease = auto_registration("ratings-vms", "prod", "10.1.1.1", {"zone": "b"}, "sa", 10.0)
    assert lease.id == "auto/prod/ratings-vms/10.1.1.1" and lease.ttl_seconds == 10.0
    assert parse_group_ref(lease.service) == ("prod", "ratings-vms") and lease.port == AUTO_REGISTERED_PORT
    (endpoint, _grpc) = registration_endpoints([lease], resources())
    assert endpoint.address == "10.1.1.1" and endpoint.labels["zone"] == "b"


def test_the_namespace_of_a_registration_is_its_services() -> None:
    rs = resources()
    assert registration_namespace(HOST, rs) == "prod"
    assert registration_namespace("WorkloadGroup/staging/x", rs) == "staging"
    assert registration_namespace("unknown.example", rs) == ""
    assert parse_group_ref("WorkloadGroup/only-namespace") is None
