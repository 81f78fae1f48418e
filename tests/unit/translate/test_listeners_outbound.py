"""Outbound listeners: one per service port, bound explicitly, HTTP on RDS "<port>", TCP to the
first service's cluster, narrowed and overridden by the Sidecar's egress listeners."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from listeners_builders import HCM, bound, by_name, client, hcm, sidecar, tcp_proxy
from translate_builders import service_entry, snapshot

from pilotfish.config.loader import load_text
from pilotfish.config.mesh import MeshConfig, PathNormalization
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate.listeners import route_names, translate_listeners

REVIEWS = "reviews.prod.svc.cluster.local"
RATINGS = "ratings.prod.svc.cluster.local"
DB = "db.prod.svc.cluster.local"
MESH = (
    service_entry(REVIEWS),
    service_entry(RATINGS),
    service_entry(DB, port=5432, protocol="TCP"),
    service_entry("dns.prod.svc.cluster.local", port=53, protocol="UDP"),
)


def listeners(*documents: str, **proxy_options):
    return by_name(translate_listeners(snapshot(*documents), client(**proxy_options)))


def test_one_listener_per_service_port_on_loopback_http_on_rds_tcp_to_the_cluster():
    found = listeners(*MESH)
    assert sorted(found) == ["127.0.0.1_5432", "127.0.0.1_9080"]  # UDP has no listener
    http = found["127.0.0.1_9080"]
    assert bound(http) == ("127.0.0.1", 9080)
    assert http.traffic_direction == base_pb2.OUTBOUND
    manager = hcm(http)
    assert manager.rds.route_config_name == "9080"
    assert manager.rds.config_source.HasField("ads")
    assert manager.stat_prefix == "outbound_127.0.0.1_9080"
    tcp = tcp_proxy(found["127.0.0.1_5432"])
    assert tcp.cluster == tcp.stat_prefix == f"outbound|5432||{DB}"


def test_the_connection_manager_follows_istio():
    manager = hcm(listeners(*MESH)["127.0.0.1_9080"])
    names = [f.name for f in manager.http_filters]
    assert names == ["envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]
    assert manager.http_filters[-1].typed_config.Is(router_pb2.Router.DESCRIPTOR)
    assert manager.codec_type == HCM.AUTO
    assert manager.normalize_path.value is True and manager.merge_slashes is False
    assert manager.HasField("use_remote_address") and manager.use_remote_address.value is False
    assert [u.upgrade_type for u in manager.upgrade_configs] == ["websocket"]
    assert manager.server_name == "istio-envoy"
    assert manager.xff_num_trusted_hops == 0 and not manager.access_log


def test_mesh_path_normalization_decides_normalize_and_merge_slashes():
    result = load_text("\n---\n".join(MESH))
    for mode, expected in {
        "NONE": (False, False, HCM.KEEP_UNCHANGED),
        "MERGE_SLASHES": (True, True, HCM.KEEP_UNCHANGED),
        "DECODE_AND_MERGE_SLASHES": (True, True, HCM.UNESCAPE_AND_FORWARD),
    }.items():
        mesh = MeshConfig(path_normalization=PathNormalization(normalization=mode))  # type: ignore[arg-type]
        snap = MeshSnapshot.build(result.resources, mesh)
        manager = hcm(by_name(translate_listeners(snap, client()))["127.0.0.1_9080"])
        got = (manager.normalize_path.value, manager.merge_slashes, manager.path_with_escaped_slashes_action)
        assert got == expected, mode


def test_outbound_bind_metadata_moves_every_outbound_listener():
    found = listeners(*MESH, OUTBOUND_BIND="127.0.0.21")
    assert sorted(found) == ["127.0.0.21_5432", "127.0.0.21_9080"]
    assert bound(found["127.0.0.21_9080"]) == ("127.0.0.21", 9080)


def test_the_first_service_on_a_port_decides_http_or_tcp():
    tcp_first = service_entry("a-tcp.prod.svc.cluster.local", port=9080, protocol="TCP")
    found = listeners(tcp_first, service_entry(REVIEWS))
    assert tcp_proxy(found["127.0.0.1_9080"]).cluster == "outbound|9080||a-tcp.prod.svc.cluster.local"
    found = listeners(
        service_entry(REVIEWS), service_entry("z-tcp.prod.svc.cluster.local", port=9080, protocol="TCP")
    )
    assert hcm(found["127.0.0.1_9080"]).rds.route_config_name == "9080"


def test_sidecar_egress_hosts_narrow_the_ports():
    only_db = sidecar("s", "prod", f"egress: [{{hosts: ['./{DB}']}}]")
    assert sorted(listeners(*MESH, only_db)) == ["127.0.0.1_5432"]
    other_namespace = sidecar("s", "prod", "egress: [{hosts: ['istio-system/*']}]")
    assert listeners(*MESH, other_namespace) == {}


def test_egress_port_and_bind_override_and_the_catch_all_fills_in_the_rest():
    body = f"""
egress:
- port: {{number: 9080, protocol: TCP, name: tcp}}
  bind: 127.0.0.30
  hosts: ['./{RATINGS}']
- hosts: ['*/*']
"""
    found = listeners(*MESH, sidecar("s", "prod", body), OUTBOUND_BIND="127.0.0.21")
    assert sorted(found) == ["127.0.0.21_5432", "127.0.0.30_9080"]
    assert tcp_proxy(found["127.0.0.30_9080"]).cluster == f"outbound|9080||{RATINGS}"


def test_an_http_egress_port_needs_no_service_and_a_tcp_one_does():
    body = """
egress:
- port: {number: 8080, protocol: HTTP, name: http}
  hosts: ['./*']
- port: {number: 7070, protocol: TCP, name: tcp}
  hosts: ['./*']
"""
    found = listeners(*MESH, sidecar("s", "prod", body))
    assert sorted(found) == ["127.0.0.1_8080"]
    assert hcm(found["127.0.0.1_8080"]).rds.route_config_name == "8080"


def test_route_names_lists_each_rds_name_once_in_order():
    first = listeners(*MESH).values()
    assert route_names([*first, *first]) == ["9080"]
    assert route_names([]) == []
