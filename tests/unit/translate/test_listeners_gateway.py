"""Gateway listeners: the plain-HTTP servers of every Gateway selecting the proxy, one listener
``0.0.0.0_<port>`` per port on RDS ``http.<port>``, bound to server bind / GATEWAY_BIND / the IP."""

from __future__ import annotations

from listeners_builders import HCM, bound, by_name, client, gateway, hcm
from translate_builders import service_entry, snapshot

from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate.listeners import route_names, translate_listeners

INGRESS = {"istio": "ingressgateway"}
BOOKINFO = gateway(
    "bookinfo",
    "prod",
    """
selector: {istio: ingressgateway}
servers:
- port: {number: 8080, name: http, protocol: HTTP}
  hosts: ['*/bookinfo.example.com']
- port: {number: 8443, name: https, protocol: HTTPS}
  hosts: ['*/bookinfo.example.com']
  tls: {mode: SIMPLE, credentialName: bookinfo-cert}
""",
)
REVIEWS = gateway(
    "reviews",
    "other",
    """
selector: {istio: ingressgateway}
servers:
- port: {number: 8080, name: http-reviews, protocol: HTTP}
  hosts: ['*/reviews.example.com']
- port: {number: 9000, name: grpc, protocol: GRPC}
  hosts: ['*/grpc.example.com']
""",
)
EGRESS = gateway(
    "egress",
    "prod",
    """
selector: {istio: egressgateway}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ['*/*']
""",
)


def gateway_listeners(*documents: str, labels=INGRESS, **options):
    return by_name(
        translate_listeners(
            snapshot(*documents), client("istio-system", labels, kind=ProxyType.ROUTER, **options)
        )
    )


def test_selected_gateways_in_any_namespace_merge_their_http_servers_per_port():
    found = gateway_listeners(BOOKINFO, REVIEWS, EGRESS)
    assert sorted(found) == ["0.0.0.0_8080", "0.0.0.0_8443", "0.0.0.0_9000"]  # egress not selected
    assert route_names(found.values()) == ["http.8080", "http.9000", "https.8443.https.bookinfo.prod"]
    assert bound(found["0.0.0.0_8080"]) == ("10.0.0.1", 8080)


def test_the_gateway_connection_manager_trusts_the_remote_address():
    manager = hcm(gateway_listeners(BOOKINFO)["0.0.0.0_8080"])
    assert manager.use_remote_address.value is True
    assert manager.xff_num_trusted_hops == 0
    assert manager.stat_prefix == "outbound_0.0.0.0_8080"
    assert manager.forward_client_cert_details == HCM.SANITIZE_SET
    names = [f.name for f in manager.http_filters]
    assert names == ["envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]


def test_an_empty_selector_selects_every_gateway_and_a_mismatch_selects_none():
    everyone = gateway(
        "all", "prod", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*/*']}]"
    )
    assert list(gateway_listeners(everyone, labels={})) == ["0.0.0.0_80"]
    assert gateway_listeners(BOOKINFO, labels={"istio": "other"}) == {}


def test_bind_comes_from_the_server_then_gateway_bind_metadata_then_the_proxy_ip():
    assert bound(gateway_listeners(BOOKINFO, GATEWAY_BIND="127.0.0.50")["0.0.0.0_8080"]) == (
        "127.0.0.50",
        8080,
    )
    bound_server = gateway(
        "bound",
        "prod",
        """
selector: {istio: ingressgateway}
servers:
- port: {number: 8080, name: http-bound, protocol: HTTP}
  hosts: ['*/bound.example.com']
  bind: 127.0.0.60
""",
    )
    found = gateway_listeners(BOOKINFO, bound_server, GATEWAY_BIND="127.0.0.50")
    assert bound(found["0.0.0.0_8080"]) == ("127.0.0.60", 8080)


def test_a_gateway_gets_no_sidecar_listeners():
    assert gateway_listeners(service_entry("reviews.prod.svc.cluster.local")) == {}
