"""translate_routes for gateways: route configuration "http.<port>" (Istio buildGatewayHTTPRouteConfig)."""

from __future__ import annotations

import pytest
from routes_builders import gateway, host_named, host_names, virtual_service
from translate_builders import proxy, service_entry, snapshot

from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate.gateway_routes import intersection, route_port
from pilotfish.xds.translate.routes import translate_routes
from pilotfish.xds.translate.virtual_hosts import VirtualHost

PAGE = "productpage.prod.svc.cluster.local"
GATEWAY = gateway(
    "gw",
    "prod",
    """
    selector: {istio: ingressgateway}
    servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: [bookinfo.example.com, "*.shop.example.com"]
    - port: {number: 443, name: tls, protocol: TLS}
      hosts: [secure.example.com]
      tls: {mode: PASSTHROUGH}
    """,
)


def vs(
    name: str, hosts: str, gateways: str, rules: str = "[{route: [{destination: {host: productpage}}]}]"
) -> str:
    return virtual_service(name, "prod", f"hosts: {hosts}\ngateways: {gateways}\nhttp: {rules}")


def ingress(labels=None, namespace: str = "istio-system"):
    return proxy(namespace, labels if labels is not None else {"istio": "ingressgateway"}, ProxyType.ROUTER)


def route_config(snap, name: str = "http.80", client=None):
    (config,) = translate_routes(snap, client or ingress(), [name])
    return config


@pytest.mark.parametrize(
    ("name", "port"), [("http.80", 80), ("http.8080", 8080), ("http.", None), ("https.443", None)]
)
def test_route_port(name, port):
    assert route_port(name) == port


@pytest.mark.parametrize(
    ("server", "service", "expected"),
    [
        (["a.com"], ["a.com"], ["a.com"]),
        (["*.com"], ["a.com", "b.org"], ["a.com"]),
        (["a.com"], ["*.com"], ["a.com"]),
        (["*"], ["*.a.com", "b.com"], ["*.a.com", "b.com"]),
        (["*.a.com", "*.com"], ["x.a.com"], ["x.a.com"]),
        (["a.com"], ["b.com"], []),
    ],
)
def test_intersection_keeps_the_narrower_host(server, service, expected):
    assert intersection(server, service) == expected


def test_a_virtual_service_bound_to_the_gateway_gets_a_virtual_host_per_matching_host():
    snap = snapshot(
        service_entry(PAGE),
        GATEWAY,
        vs("shop", "[a.shop.example.com, bookinfo.example.com, other.example.com]", "[gw]"),
    )
    config = route_config(snap)
    assert host_names(config) == ["a.shop.example.com:80"]
    host = host_named(config, "a.shop.example.com:80")
    assert list(host.domains) == ["a.shop.example.com", "bookinfo.example.com"]
    assert host.routes[0].route.cluster == f"outbound|9080||{PAGE}"
    assert config.ignore_port_in_host_matching


@pytest.mark.parametrize(
    ("gateways", "bound"),
    [
        ("[gw]", True),
        ("[prod/gw]", True),
        ("[other/gw]", False),
        ("[mesh]", False),
        ("[]", False),
    ],
)
def test_only_virtual_services_bound_to_the_gateway_count(gateways, bound):
    snap = snapshot(service_entry(PAGE), GATEWAY, vs("page", "[bookinfo.example.com]", gateways))
    assert host_names(route_config(snap)) == (["bookinfo.example.com:80"] if bound else ["blackhole:80"])


def test_a_gateway_that_does_not_select_the_proxy_gives_an_empty_configuration():
    snap = snapshot(service_entry(PAGE), GATEWAY, vs("page", "[bookinfo.example.com]", "[gw]"))
    assert route_config(snap, client=ingress({"istio": "egress"})).virtual_hosts == []
    assert route_config(snap, "http.8080").virtual_hosts == []
    assert route_config(snap, "http.443").virtual_hosts == []


def test_no_routes_means_a_blackhole_host_that_answers_404():
    snap = snapshot(service_entry(PAGE), GATEWAY)
    (host,) = route_config(snap).virtual_hosts
    assert host == VirtualHost(name="blackhole:80", domains=["*"])


def test_virtual_services_for_one_host_merge_with_catch_alls_last():
    snap = snapshot(
        service_entry(PAGE),
        GATEWAY,
        vs(
            "a-fallback",
            "[bookinfo.example.com]",
            "[gw]",
            "[{name: fallback, route: [{destination: {host: productpage}}]}]",
        ),
        vs(
            "b-specific",
            "[bookinfo.example.com]",
            "[gw]",
            "[{name: specific, match: [{uri: {prefix: /api}}], route: [{destination: {host: productpage}}]}]",
        ),
    )
    (host,) = route_config(snap).virtual_hosts
    assert [r.name for r in host.routes] == ["specific", "fallback"]


def test_server_hosts_with_a_namespace_only_serve_that_namespaces_virtual_services():
    scoped = gateway(
        "gw",
        "edge",
        """
        selector: {istio: ingressgateway}
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [prod/a.example.com, ./b.example.com, "*/c.example.com"]
        """,
    )
    snap = snapshot(
        service_entry(PAGE),
        scoped,
        vs("page", "[a.example.com, b.example.com, c.example.com]", "[edge/gw]"),
    )
    (host,) = route_config(snap).virtual_hosts
    assert list(host.domains) == ["a.example.com", "c.example.com"]


def test_a_match_for_another_gateway_is_left_out():
    snap = snapshot(
        service_entry(PAGE),
        GATEWAY,
        vs(
            "page",
            "[bookinfo.example.com]",
            "[gw, prod/internal]",
            "[{name: internal-only, match: [{gateways: [internal], uri: {prefix: /i}}], "
            "route: [{destination: {host: productpage}}]}, "
            "{name: all, route: [{destination: {host: productpage}}]}]",
        ),
    )
    (host,) = route_config(snap).virtual_hosts
    assert [r.name for r in host.routes] == ["all"]


def test_an_https_redirect_server_requires_tls_even_without_routes():
    redirecting = gateway(
        "redirect",
        "prod",
        """
        selector: {istio: ingressgateway}
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [bookinfo.example.com, bare.example.com]
          tls: {httpsRedirect: true}
        """,
    )
    snap = snapshot(service_entry(PAGE), redirecting, vs("page", "[bookinfo.example.com]", "[redirect]"))
    config = route_config(snap)
    assert host_names(config) == ["bare.example.com:80", "bookinfo.example.com:80"]
    assert all(h.require_tls == VirtualHost.ALL for h in config.virtual_hosts)
    assert not host_named(config, "bare.example.com:80").routes


@pytest.mark.parametrize(("export_to", "port"), [("", 9443), ("  exportTo: ['.']", 9080)])
def test_destinations_resolve_in_the_virtual_services_namespace_when_visible(export_to, port):
    """``shared.example.com`` is declared in prod (the VirtualService's namespace, port 9443) and in
    istio-system (the gateway's, port 9080); the single port decides the cluster."""
    snap = snapshot(
        service_entry("shared.example.com", namespace="prod", port=9443, extra=export_to),
        service_entry("shared.example.com", namespace="istio-system", port=9080),
        GATEWAY,
        vs(
            "page", "[bookinfo.example.com]", "[gw]", "[{route: [{destination: {host: shared.example.com}}]}]"
        ),
    )
    (host,) = route_config(snap).virtual_hosts
    assert host.routes[0].route.cluster == f"outbound|{port}||shared.example.com"
