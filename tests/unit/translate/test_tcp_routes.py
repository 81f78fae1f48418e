"""TCP and TLS rules and L4 gateway servers: what the golden files do not single out."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from listeners_builders import client
from test_listeners_golden import bootstrap_for, translated, validate
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


STICKY = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: prod}
spec:
  host: db.prod.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {idleTimeout: 90s}}
    loadBalancer: {consistentHash: {useSourceIp: true}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
"""


def test_a_single_destination_takes_its_rule_idle_timeout_and_source_ip_hashing() -> None:
    snap = snapshot(SERVICES.split("---")[0], STICKY)
    (listener,) = [item for item in translate_listeners(snap, client()) if item.name.endswith("5432")]
    proxy = tcp_proxy_pb2.TcpProxy()
    listener.filter_chains[0].filters[-1].typed_config.Unpack(proxy)
    assert proxy.idle_timeout.seconds == 90
    assert [h.WhichOneof("policy_specifier") for h in proxy.hash_policy] == ["source_ip"]
    routed = snapshot(SERVICES.split("---")[0], STICKY, SPLIT.replace("subset: v2}}]", "subset: v2}}]\n"))
    (canary,) = tcp_proxies_of(routed, {"app": "canary"})  # subset v2 balances round robin: no hash
    assert canary.cluster.startswith("outbound|5432|v2|") and not canary.hash_policy
    assert canary.idle_timeout.seconds == 90


def tcp_proxies_of(snap, labels: dict[str, str]) -> list[tcp_proxy_pb2.TcpProxy]:
    (listener,) = [
        item for item in translate_listeners(snap, client(labels=labels)) if item.name.endswith("5432")
    ]
    out = []
    for chain in listener.filter_chains:
        proxy = tcp_proxy_pb2.TcpProxy()
        chain.filters[-1].typed_config.Unpack(proxy)
        out.append(proxy)
    return out


@pytest.mark.e2e
def test_envoy_accepts_an_auto_passthrough_gateway_with_its_sni_clusters(tmp_path: Path) -> None:
    """The gateway-l4 golden's listeners and clusters plus the SNI-named copies and the
    BlackHoleCluster the AUTO_PASSTHROUGH chain names, through ``envoy --mode validate``."""
    snap, proxy, _, _ = translated("gateway-l4")
    boot = bootstrap_for("gateway-l4")
    extra = sni_dnat_clusters(snap, proxy, translate_clusters(snap, proxy))
    assert any(c.name.startswith("outbound_.") for c in extra)
    boot.static_resources.clusters.extend(extra)
    result = validate(boot, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


NAMED_PORTS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: named, namespace: prod}
spec:
  ingress:
  - {port: {number: 9080, name: http-web}, defaultEndpoint: '127.0.0.1:19080'}
  - {port: {number: 5432, name: postgres}, defaultEndpoint: '127.0.0.1:15432'}
  egress:
  - {port: {number: 7000, name: grpc-api}, hosts: ['*/*']}
"""


def test_sidecar_ports_without_a_protocol_take_their_names() -> None:
    snap = snapshot(SERVICES, NAMED_PORTS)
    listeners = {item.name: item for item in translate_listeners(snap, client(ip="10.0.0.9"))}
    filters = {
        name: [f.name for c in item.filter_chains for f in c.filters] for name, item in listeners.items()
    }
    assert "envoy.filters.network.http_connection_manager" in filters["10.0.0.9_9080"]  # http-web
    assert filters["10.0.0.9_5432"][-1] == "envoy.filters.network.tcp_proxy"  # postgres: TCP
    assert "envoy.filters.network.http_connection_manager" in filters["127.0.0.1_7000"]  # grpc-api


GATEWAY_TCP = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: prod}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 5432, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge-db, namespace: prod}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - match: [{port: 5432, sourceLabels: {app: somebody-else}}]
    route: [{destination: {host: db.prod.svc.cluster.local}}]
"""


def test_a_gateway_matches_tcp_rules_on_port_and_gateway_only() -> None:
    """Istio ``l4SingleMatch``: sourceLabels do not apply to the gateway proxy itself."""
    snap = snapshot(SERVICES, GATEWAY_TCP)
    gateway = client(labels={"istio": "ingressgateway"}, kind=ProxyType.ROUTER)
    (listener,) = translate_listeners(snap, gateway)
    proxy = tcp_proxy_pb2.TcpProxy()
    listener.filter_chains[0].filters[-1].typed_config.Unpack(proxy)
    assert proxy.cluster == "outbound|5432||db.prod.svc.cluster.local"
