"""translate_endpoints: Istio's EndpointBuilder — subset filtering, localities, weights, health."""

from __future__ import annotations

from envoy.config.core.v3 import health_check_pb2
from translate_builders import destination_rule, proxy, service_entry, snapshot, workload

from pilotfish.config.loader import load_text
from pilotfish.registry.model import Endpoint
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate import translate_clusters, translate_endpoints
from pilotfish.xds.translate.endpoints import locality, socket_address, subset_endpoints

HOST = "svc.prod.svc.cluster.local"
DEFAULT = f"outbound|9080||{HOST}"
SELECTED = service_entry(HOST, extra="  workloadSelector: {labels: {app: svc}}")
RULE = destination_rule(
    "rule",
    "prod",
    f"""
host: {HOST}
subsets:
- {{name: v1, labels: {{version: v1}}}}
- {{name: v1-canary, labels: {{version: v1, track: canary}}}}
- {{name: everything}}
- {{name: none, labels: {{version: v9}}}}
""",
)


def assignments(snap, client=None):
    client = client or proxy()
    return {a.cluster_name: a for a in translate_endpoints(snap, client, translate_clusters(snap, client))}


def addresses(assignment):
    return sorted(
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    )


def test_subset_clusters_hold_endpoints_with_all_subset_labels():
    snap = snapshot(
        SELECTED,
        RULE,
        workload("a", "prod", "10.0.0.1", {"app": "svc", "version": "v1"}),
        workload("b", "prod", "10.0.0.2", {"app": "svc", "version": "v1", "track": "canary"}),
        workload("c", "prod", "10.0.0.3", {"app": "svc", "version": "v2"}),
    )
    found = assignments(snap)
    assert addresses(found[DEFAULT]) == [("10.0.0.1", 9080), ("10.0.0.2", 9080), ("10.0.0.3", 9080)]
    assert addresses(found[f"outbound|9080|v1|{HOST}"]) == [("10.0.0.1", 9080), ("10.0.0.2", 9080)]
    assert addresses(found[f"outbound|9080|v1-canary|{HOST}"]) == [("10.0.0.2", 9080)]
    assert addresses(found[f"outbound|9080|everything|{HOST}"]) == addresses(found[DEFAULT])
    empty = found[f"outbound|9080|none|{HOST}"]
    assert list(empty.endpoints) == []  # still sent, so the cluster warms


def test_eds_cluster_without_endpoints_gets_an_empty_assignment():
    found = assignments(snapshot(SELECTED))
    assert list(found) == [DEFAULT] and list(found[DEFAULT].endpoints) == []


def test_only_eds_clusters_get_assignments():
    snap = snapshot(
        service_entry("api.example.com", resolution="DNS"), service_entry(HOST, resolution="NONE")
    )
    assert assignments(snap) == {}


def test_endpoints_group_by_locality_with_weights():
    snap = snapshot(
        SELECTED,
        workload("a", "prod", "10.0.0.1", {"app": "svc"}, locality="us-east/zone-b", weight="2"),
        workload("b", "prod", "10.0.0.2", {"app": "svc"}, locality="us-east/zone-a/rack-1"),
        workload("c", "prod", "10.0.0.3", {"app": "svc"}, locality="us-east/zone-b", weight="5"),
        workload("d", "prod", "10.0.0.4", {"app": "svc"}),
    )
    groups = assignments(snap)[DEFAULT].endpoints
    summary = [
        (
            (g.locality.region, g.locality.zone, g.locality.sub_zone),
            g.load_balancing_weight.value,
            [
                (lb.endpoint.address.socket_address.address, lb.load_balancing_weight.value)
                for lb in g.lb_endpoints
            ],
        )
        for g in groups
    ]
    assert summary == [
        (("", "", ""), 1, [("10.0.0.4", 1)]),
        (("us-east", "zone-a", "rack-1"), 1, [("10.0.0.2", 1)]),
        (("us-east", "zone-b", ""), 7, [("10.0.0.1", 2), ("10.0.0.3", 5)]),
    ]


def test_health_draining_is_sent_unhealthy_is_not():
    result = load_text(SELECTED)
    extra = [
        Endpoint(HOST, 9080, "10.0.0.1", 8080, health="HEALTHY"),
        Endpoint(HOST, 9080, "10.0.0.2", 8080, health="DRAINING"),
        Endpoint(HOST, 9080, "10.0.0.3", 8080, health="UNHEALTHY"),
    ]
    snap = MeshSnapshot.build(result.resources, extra_endpoints=extra)
    [group] = assignments(snap)[DEFAULT].endpoints
    statuses = [(lb.endpoint.address.socket_address.address, lb.health_status) for lb in group.lb_endpoints]
    assert statuses == [("10.0.0.1", health_check_pb2.HEALTHY), ("10.0.0.2", health_check_pb2.DRAINING)]


def test_endpoints_use_the_workload_port():
    snap = snapshot(SELECTED, workload("a", "prod", "10.0.0.1", {"app": "svc"}, ports="{p9080: 18080}"))
    assert addresses(assignments(snap)[DEFAULT]) == [("10.0.0.1", 18080)]


def test_a_service_invisible_to_the_proxy_yields_no_endpoints():
    private = service_entry(HOST, extra="  exportTo: ['.']\n  workloadSelector: {labels: {app: svc}}")
    snap = snapshot(private, workload("a", "prod", "10.0.0.1", {"app": "svc"}))
    assert assignments(snap, proxy("client")) == {}


def test_helpers():
    eps = [Endpoint(HOST, 80, "1.1.1.1", 80, labels={"a": "1", "b": "2"}), Endpoint(HOST, 80, "1.1.1.2", 80)]
    assert subset_endpoints(eps, {"a": "1"}) == (eps[0],)
    assert subset_endpoints(eps, {}) == tuple(eps)
    assert subset_endpoints(eps, {"a": "2"}) == ()
    assert socket_address("unix:///var/run/app.sock", 0).pipe.path == "/var/run/app.sock"
    assert socket_address("10.0.0.1", 80).socket_address.port_value == 80
    assert (locality("r").region, locality("r").zone) == ("r", "")
    assert locality("") == locality("//")


def _registered(address: str, port: int = 9080, weight: int = 1) -> Endpoint:
    return Endpoint(HOST, 9080, address, port, weight=weight, namespace="prod", workload=f"reg/{address}")


def test_an_endpoint_envoy_would_reject_is_left_out_and_the_rest_still_sent():
    """One invalid registration must not cost the service its other endpoints: Envoy rejects a
    whole ClusterLoadAssignment for one malformed address."""
    from pilotfish.xds.translate.endpoint_checks import dropped_endpoints

    base = snapshot(SELECTED, workload("a", "prod", "10.0.0.1", {"app": "svc"}))
    extra = (
        _registered("not-an-ip!"),
        _registered("10.0.0.9", port=70000),
        _registered("10.0.0.8", weight=2**32),
        _registered("10.0.0.2"),
        _registered("unix:///tmp/svc.sock"),
    )
    snap = MeshSnapshot.build(base.resources, extra_endpoints=extra)
    assert addresses(assignments(snap)[DEFAULT]) == [("", 0), ("10.0.0.1", 9080), ("10.0.0.2", 9080)]
    dropped = sorted(dropped_endpoints(snap).values(), key=lambda d: d.address)
    assert [(d.address, d.hostname) for d in dropped] == [
        ("10.0.0.8", HOST),
        ("10.0.0.9", HOST),
        ("not-an-ip!", HOST),
    ]
    assert "not an IP address" in str(dropped[2]) and "reg/not-an-ip!" in str(dropped[2])
    assert "port 70000" in dropped[1].reason and "weight" in dropped[0].reason


def test_a_dns_service_keeps_host_name_endpoints_but_not_bad_ports():
    from pilotfish.xds.translate.endpoint_checks import dropped_endpoints

    dns = service_entry("api.example.com", resolution="DNS")
    base = snapshot(dns)
    extra = (
        Endpoint("api.example.com", 9080, "backend.example.com", 9080),
        Endpoint("api.example.com", 9080, "other.example.com", 99999),
    )
    snap = MeshSnapshot.build(base.resources, extra_endpoints=extra)
    assert [d.address for d in dropped_endpoints(snap).values()] == ["other.example.com"]
    [cluster] = [
        c for c in translate_clusters(snap, proxy()) if "api.example.com" in c.name and "|9080|" in c.name
    ]
    hosts = [
        lb.endpoint.address.socket_address.address
        for group in cluster.load_assignment.endpoints
        for lb in group.lb_endpoints
    ]
    assert "backend.example.com" in hosts and "other.example.com" not in hosts
