"""``pilotfish.app.translate`` with listeners wired in: outbound + inbound clusters, their
endpoints, the listeners and exactly the route configurations they name — a snapshot the cache
accepts as consistent — and proxies that bind different IPs never share a translation."""

from __future__ import annotations

from listeners_builders import client, gateway
from translate_builders import service_entry, snapshot, workload

from pilotfish.app import proxy_class, translate
from pilotfish.xds import resources as rt
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import ProxyType

RATINGS = "ratings.prod.svc.cluster.local"
GATEWAY_SPEC = """
selector: {istio: ingressgateway}
servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*/*']}]
"""
MESH = snapshot(
    service_entry(RATINGS, extra="  workloadSelector: {labels: {app: ratings}}"),
    service_entry(
        "db.prod.svc.cluster.local", port=5432, protocol="TCP", extra="  endpoints: [{address: 10.0.0.40}]"
    ),
    workload("ratings-a", "prod", "10.0.0.1", {"app": "ratings"}),
    gateway("gw", "prod", GATEWAY_SPEC),
)


def names(proxy) -> dict[str, list[str]]:
    built = SnapshotCache().build(translate(MESH, proxy))  # raises InconsistentSnapshot if not
    return {rt.short_name(t): sorted(built.named(t)) for t in rt.ADS_ORDER if built.named(t)}


def test_a_sidecar_gets_inbound_and_outbound_listeners_and_their_routes():
    found = names(client(app_ports={9080: 19080}))
    assert found["LDS"] == ["10.0.0.1_9080", "127.0.0.1_5432", "127.0.0.1_9080"]
    assert "inbound|9080||" in found["CDS"] and f"outbound|9080||{RATINGS}" in found["CDS"]
    assert found["EDS"] == sorted(["outbound|5432||db.prod.svc.cluster.local", f"outbound|9080||{RATINGS}"])
    assert found["RDS"] == ["9080"]  # the inbound route is inline; TCP needs none

    elsewhere = names(client(ip="10.0.0.9"))
    assert elsewhere["LDS"] == ["127.0.0.1_5432", "127.0.0.1_9080"]
    assert "inbound|9080||" not in elsewhere["CDS"]


def test_a_gateway_gets_its_listener_and_route_configuration():
    found = names(client("istio-system", {"istio": "ingressgateway"}, kind=ProxyType.ROUTER))
    assert found["LDS"] == ["0.0.0.0_8080"]
    assert found["RDS"] == ["http.8080"]


def test_proxies_differing_only_in_ip_or_listener_metadata_are_different_classes():
    base = client()
    assert proxy_class(base) == proxy_class(client())
    assert proxy_class(base) != proxy_class(client(ip="10.0.0.2"))
    assert proxy_class(base) != proxy_class(client(app_ports={9080: 19080}))
    assert proxy_class(base) != proxy_class(client(OUTBOUND_BIND="127.0.0.21"))
