"""TCP and TLS rules and L4 gateway servers: what the golden files do not single out."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from listeners_builders import client
from translate_builders import snapshot

from pilotfish.registry.from_config import port_protocol
from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate import translate_clusters
from pilotfish.xds.translate.gateway_l4 import BLACKHOLE_CLUSTER, sni_dnat_clusters
from pilotfish.xds.translate.listeners import translate_listeners

SERVICES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: prod}
spec:
  hosts: [db.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: postgres}]
  endpoints: [{address: 10.0.0.40, labels: {version: v1}}, {address: 10.0.0.41, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: prod}
spec:
  host: db.prod.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""

SPLIT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: prod}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {app: canary}}]
    route: [{destination: {host: db, subset: v2}}]
  - route:
    - {destination: {host: db, subset: v1}, weight: 90}
    - {destination: {host: db, subset: v2}, weight: 10}
    - {destination: {host: db, subset: v2}, weight: 0}
"""


def tcp_proxies(labels: dict[str, str]) -> list[tcp_proxy_pb2.TcpProxy]:
    snap = snapshot(SERVICES, SPLIT)
    (listener,) = [
        item for item in translate_listeners(snap, client(labels=labels)) if item.name.endswith("5432")
    ]
    out = []
    for chain in listener.filter_chains:
        proxy = tcp_proxy_pb2.TcpProxy()
        chain.filters[-1].typed_config.Unpack(proxy)
        out.append(proxy)
    return out


def test_a_source_label_rule_applies_only_to_the_proxies_it_names_and_stops_there() -> None:
    (canary,) = tcp_proxies({"app": "canary"})
    assert canary.cluster == "outbound|5432|v2|db.prod.svc.cluster.local"
    (other,) = tcp_proxies({"app": "web"})
    weights = [(c.name, c.weight) for c in other.weighted_clusters.clusters]
    assert weights == [
        ("outbound|5432|v1|db.prod.svc.cluster.local", 90),
        ("outbound|5432|v2|db.prod.svc.cluster.local", 10),
    ]  # the zero weight is dropped
    assert other.stat_prefix == "db.prod"


def test_without_a_rule_the_port_goes_to_its_own_service() -> None:
    snap = snapshot(SERVICES)
    (listener,) = [item for item in translate_listeners(snap, client()) if item.name.endswith("5432")]
    proxy = tcp_proxy_pb2.TcpProxy()
    listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    assert proxy.cluster == "outbound|5432||db.prod.svc.cluster.local"


def test_port_protocol_comes_from_the_declaration_then_the_name_then_tcp() -> None:
    assert port_protocol("grpc", "http-x") == "GRPC"
    assert port_protocol("", "http-web") == "HTTP"
    assert port_protocol("", "grpc-web-ui") == "GRPC-WEB"
    assert port_protocol("", "mongo") == "MONGO"
    assert port_protocol("", "tls-secure") == "TLS"
    assert port_protocol("", "postgres") == "TCP"  # unknown: opaque TCP (no sniffing)
    assert port_protocol("", "httpx") == "TCP"


AUTO = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross, namespace: prod}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
"""


def test_auto_passthrough_gateways_get_sni_named_copies_of_the_outbound_clusters() -> None:
    snap = snapshot(SERVICES, AUTO)
    gateway = client(labels={"istio": "eastwestgateway"}, kind=ProxyType.ROUTER)
    clusters = translate_clusters(snap, gateway)
    extra = {c.name: c for c in sni_dnat_clusters(snap, gateway, clusters)}
    assert set(extra) == {
        BLACKHOLE_CLUSTER,
        "outbound_.5432_._.db.prod.svc.cluster.local",
        "outbound_.5432_.v1_.db.prod.svc.cluster.local",
        "outbound_.5432_.v2_.db.prod.svc.cluster.local",
    }
    v1 = extra["outbound_.5432_.v1_.db.prod.svc.cluster.local"]
    assert v1.type == cluster_pb2.Cluster.EDS
    assert v1.eds_cluster_config.service_name == "outbound|5432|v1|db.prod.svc.cluster.local"
    assert not v1.transport_socket_matches and not v1.HasField("transport_socket")
    assert sni_dnat_clusters(snap, client(), translate_clusters(snap, client())) == []  # sidecars: none
