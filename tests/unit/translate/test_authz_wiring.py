"""ext_authz wiring: which listeners get the filter, how it is configured, and the authz cluster."""

from __future__ import annotations

import json
from pathlib import Path

from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

from pilotfish.app import translate
from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.authz import AUTHZ_CLUSTER, EXT_AUTHZ_FILTER

BOOKINFO = (Path(__file__).resolve().parents[3] / "examples" / "bookinfo" / "bookinfo.yaml").read_text()
POLICY = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules: [{to: [{operation: {methods: [GET]}}]}]
"""
MESH_WIDE_JWT = """---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks"}]
"""


def proxy(name: str, ip: str, labels: dict[str, str], kind: ProxyType = ProxyType.SIDECAR) -> Proxy:
    return Proxy(
        id=f"{kind}~{ip}~{name}.default~default.svc.cluster.local",
        type=kind,
        ip=ip,
        name=name,
        namespace="default",
        dns_domain="default.svc.cluster.local",
        labels=labels,
        service_account=f"bookinfo-{labels.get('app', 'gw')}",
        workload_name=name,
    )


REVIEWS = proxy("reviews-v1", "127.0.0.21", {"app": "reviews", "version": "v1"})
PRODUCTPAGE = proxy("productpage-v1", "127.0.0.11", {"app": "productpage", "version": "v1"})
GATEWAY = proxy("istio-ingressgateway", "127.0.0.10", {"istio": "ingressgateway"}, ProxyType.ROUTER)


def resources(extra: str, p: Proxy, authz: tuple[str, int] | None = ("127.0.0.1", 9191)) -> list:
    loaded = load_text(BOOKINFO + extra)
    assert not loaded.errors, loaded.errors
    return translate(MeshSnapshot.build(loaded.resources, authz_address=authz), p)


def managers(found: list) -> dict[str, http_connection_manager_pb2.HttpConnectionManager]:
    out = {}
    for r in found:
        if r.DESCRIPTOR.name == "Listener":
            manager = http_connection_manager_pb2.HttpConnectionManager()
            if r.filter_chains[0].filters[0].typed_config.Unpack(manager):
                out[r.name] = manager
    return out


def authz_of(manager: http_connection_manager_pb2.HttpConnectionManager) -> ext_authz_pb2.ExtAuthz | None:
    first = manager.http_filters[0]
    if first.name != EXT_AUTHZ_FILTER:
        return None
    config = ext_authz_pb2.ExtAuthz()
    first.typed_config.Unpack(config)
    return config


def test_a_selected_workload_gets_ext_authz_first_on_inbound_only() -> None:
    found = resources(POLICY, REVIEWS)
    by_name = managers(found)
    inbound = authz_of(by_name["127.0.0.21_9080"])
    assert inbound is not None
    assert not inbound.failure_mode_allow and inbound.include_peer_certificate
    assert inbound.grpc_service.envoy_grpc.cluster_name == AUTHZ_CLUSTER
    metadata = {h.key: h.value for h in inbound.grpc_service.initial_metadata}
    assert metadata["x-pilotfish-namespace"] == "default" and metadata["x-pilotfish-workload"] == "reviews-v1"
    assert json.loads(metadata["x-pilotfish-labels"]) == {"app": "reviews", "version": "v1"}
    assert metadata["x-pilotfish-service-account"] == "bookinfo-reviews"
    assert [f.name for f in by_name["127.0.0.21_9080"].http_filters][-1] == "envoy.filters.http.router"
    outbound = [m for name, m in by_name.items() if name != "127.0.0.21_9080"]
    assert outbound and all(authz_of(m) is None for m in outbound)
    clusters = {r.name for r in found if r.DESCRIPTOR.name == "Cluster"}
    assert AUTHZ_CLUSTER in clusters


def test_an_unselected_workload_gets_neither_filter_nor_cluster() -> None:
    found = resources(POLICY, PRODUCTPAGE)
    assert all(authz_of(m) is None for m in managers(found).values())
    assert AUTHZ_CLUSTER not in {r.name for r in found if r.DESCRIPTOR.name == "Cluster"}


def test_a_root_namespace_policy_selects_the_gateway_too() -> None:
    found = resources(MESH_WIDE_JWT, GATEWAY)
    (gateway,) = managers(found).values()
    assert authz_of(gateway) is not None


def test_no_check_server_no_filter() -> None:
    found = resources(POLICY, REVIEWS, authz=None)
    assert all(authz_of(m) is None for m in managers(found).values())
