"""Inbound listeners and ``inbound|PORT||`` clusters: the ports the proxy's own workload serves,
bound on its IP, forwarding to the app on loopback (explicit capture)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from listeners_builders import HCM, bound, by_name, client, hcm, sidecar, tcp_proxy
from translate_builders import service_entry, snapshot, workload

from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate.clusters import http_options
from pilotfish.xds.translate.inbound import inbound_ports, translate_inbound_clusters
from pilotfish.xds.translate.listeners import route_names, translate_listeners

RATINGS = "ratings.prod.svc.cluster.local"
SELECTED = service_entry(RATINGS, extra="  workloadSelector: {labels: {app: ratings}}")
HERE = workload("ratings-a", "prod", "10.0.0.1", {"app": "ratings"})
ELSEWHERE = workload("ratings-b", "prod", "10.0.0.2", {"app": "ratings"})


def listeners(*documents: str, **proxy_options):
    return by_name(translate_listeners(snapshot(*documents), client(**proxy_options)))


def clusters(*documents: str, **proxy_options):
    return {c.name: c for c in translate_inbound_clusters(snapshot(*documents), client(**proxy_options))}


def app_address(cluster: cluster_pb2.Cluster) -> tuple[str, int]:
    (group,) = cluster.load_assignment.endpoints
    (endpoint,) = group.lb_endpoints
    address = endpoint.endpoint.address.socket_address
    return address.address, address.port_value


def test_an_endpoint_at_the_proxy_ip_gets_a_listener_on_that_ip_routing_inline_to_the_app():
    found = listeners(SELECTED, HERE, ELSEWHERE)
    inbound = found["10.0.0.1_9080"]
    assert bound(inbound) == ("10.0.0.1", 9080)
    assert inbound.traffic_direction == base_pb2.INBOUND
    manager = hcm(inbound)
    assert manager.stat_prefix == "inbound_9080"
    assert manager.use_remote_address.value is False and manager.HasField("use_remote_address")
    assert manager.forward_client_cert_details == HCM.APPEND_FORWARD
    config = manager.route_config
    assert config.name == "inbound|9080||" and not manager.HasField("rds")
    (host,) = config.virtual_hosts
    assert (host.name, list(host.domains)) == ("inbound|http|9080", ["*"])
    (route,) = host.routes
    assert route.match.prefix == "/" and route.route.cluster == "inbound|9080||"
    assert route.route.timeout.ToTimedelta().total_seconds() == 0
    assert route.decorator.operation == f"{RATINGS}:9080/*"
    assert [f.name for f in manager.http_filters][-1] == "envoy.filters.http.router"
    assert "10.0.0.2_9080" not in found
    assert route_names(found.values()) == ["9080"]  # the inbound route is not on RDS


def test_the_inbound_cluster_is_static_with_the_app_on_loopback():
    (cluster,) = clusters(SELECTED, HERE).values()
    assert cluster.name == "inbound|9080||"
    assert cluster.type == cluster_pb2.Cluster.STATIC
    assert cluster.connect_timeout.seconds == 10
    assert app_address(cluster) == ("127.0.0.1", 9080)
    assert cluster.load_assignment.cluster_name == "inbound|9080||"


def test_the_endpoint_port_is_the_inbound_port_and_app_ports_move_the_app():
    with_target = workload("ratings-a", "prod", "10.0.0.1", {"app": "ratings"}, ports="{p9080: 8080}")
    assert sorted(listeners(SELECTED, with_target)) == ["10.0.0.1_8080", "127.0.0.1_9080"]
    found = clusters(SELECTED, with_target, app_ports={8080: 18080})
    assert app_address(found["inbound|8080||"]) == ("127.0.0.1", 18080)


def test_a_tcp_port_gets_a_tcp_proxy_to_the_inbound_cluster():
    tcp = service_entry(
        "db.prod.svc.cluster.local",
        port=5432,
        protocol="TCP",
        extra="  workloadSelector: {labels: {app: ratings}}",
    )
    proxy_filter = tcp_proxy(listeners(tcp, HERE)["10.0.0.1_5432"])
    assert proxy_filter.cluster == proxy_filter.stat_prefix == "inbound|5432||"


def test_grpc_ports_speak_http2_on_both_sides():
    grpc = service_entry(
        "api.prod.svc.cluster.local",
        port=7070,
        protocol="GRPC",
        extra="  workloadSelector: {labels: {app: ratings}}",
    )
    assert hcm(listeners(grpc, HERE)["10.0.0.1_7070"]).HasField("http2_protocol_options")
    options = http_options(clusters(grpc, HERE)["inbound|7070||"])
    assert options.explicit_http_config.HasField("http2_protocol_options")
    assert not hcm(listeners(SELECTED, HERE)["10.0.0.1_9080"]).HasField("http2_protocol_options")


def test_an_app_at_the_listener_address_would_loop_and_is_left_out():
    at_loopback = workload("ratings-a", "prod", "127.0.0.1", {"app": "ratings"})
    assert inbound_ports(snapshot(SELECTED, at_loopback), client(ip="127.0.0.1")) == []
    moved = inbound_ports(snapshot(SELECTED, at_loopback), client(ip="127.0.0.1", app_ports={9080: 19080}))
    assert [(p.bind, p.port, p.app_port) for p in moved] == [("127.0.0.1", 9080, 19080)]


def test_the_workloads_own_port_wins_over_an_outbound_listener_on_the_same_address():
    found = listeners(SELECTED, HERE, OUTBOUND_BIND="10.0.0.1")
    assert list(found) == ["10.0.0.1_9080"]
    assert found["10.0.0.1_9080"].traffic_direction == base_pb2.INBOUND


INGRESS = """
ingress:
- port: {number: 9080, protocol: HTTP, name: http}
  defaultEndpoint: 127.0.0.1:19080
- port: {number: 9090, protocol: HTTP, name: admin}
  defaultEndpoint: 0.0.0.0:19090
  bind: 10.0.0.9
- port: {number: 9091, protocol: TCP, name: socket}
  defaultEndpoint: unix:///var/run/app.sock
- port: {number: 9092, protocol: HTTP, name: plain}
"""


def test_sidecar_ingress_replaces_the_endpoint_ports_with_its_own():
    docs = (SELECTED, HERE, sidecar("ratings", "prod", INGRESS))
    found = clusters(*docs, app_ports={9092: 29092})
    assert sorted(found) == ["inbound|9080||", "inbound|9090||", "inbound|9091||", "inbound|9092||"]
    assert app_address(found["inbound|9080||"]) == ("127.0.0.1", 19080)
    assert app_address(found["inbound|9090||"]) == ("10.0.0.1", 19090)  # a wildcard means the proxy IP
    unix = found["inbound|9091||"].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert unix.pipe.path == "/var/run/app.sock"
    assert app_address(found["inbound|9092||"]) == ("127.0.0.1", 29092)
    bound_to = {
        name: bound(listener)
        for name, listener in listeners(*docs).items()
        if listener.traffic_direction == base_pb2.INBOUND
    }
    assert bound_to == {
        "10.0.0.1_9080": ("10.0.0.1", 9080),
        "10.0.0.9_9090": ("10.0.0.9", 9090),
        "10.0.0.1_9091": ("10.0.0.1", 9091),
        "10.0.0.1_9092": ("10.0.0.1", 9092),
    }
    decorator = hcm(listeners(*docs)["10.0.0.1_9080"]).route_config.virtual_hosts[0].routes[0].decorator
    assert decorator.operation == "ratings.prod:9080/*"


def test_a_sidecar_without_ingress_keeps_the_endpoint_ports():
    egress_only = sidecar("ratings", "prod", "egress: [{hosts: ['./*']}]")
    assert list(clusters(SELECTED, HERE, egress_only)) == ["inbound|9080||"]


def test_gateways_have_no_inbound_side():
    assert translate_inbound_clusters(snapshot(SELECTED, HERE), client(kind=ProxyType.ROUTER)) == []
