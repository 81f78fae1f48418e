"""translate_routes for sidecars: route configuration "<port>" (virtual hosts, default routes,
VirtualService claims, Sidecar scoping, the catch-all) and the names it does not build."""

from __future__ import annotations

import dataclasses

import pytest
from routes_builders import host_named, host_names, sidecar, virtual_service
from translate_builders import proxy, service_entry, snapshot

from pilotfish.config.mesh import MeshConfig, OutboundTrafficPolicy
from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate.routes import translate_routes

REVIEWS = "reviews.prod.svc.cluster.local"
RATINGS = "ratings.prod.svc.cluster.local"


def route_config(snap, name: str = "9080", client=None):
    (config,) = translate_routes(snap, client or proxy(), [name])
    return config


def routes_to(host) -> list[str]:
    return [r.route.cluster or r.name for r in host.routes]


def test_a_service_without_virtual_service_gets_istios_default_route():
    config = route_config(snapshot(service_entry(REVIEWS)))
    assert host_names(config) == [f"{REVIEWS}:9080", "allow_any"]
    (route,) = host_named(config, f"{REVIEWS}:9080").routes
    assert route.name == "default" and route.route.cluster == f"outbound|9080||{REVIEWS}"
    assert route.route.timeout.ToTimedelta().total_seconds() == 0
    assert route.route.retry_policy.num_retries.value == 2
    assert route.decorator.operation == f"{REVIEWS}:9080/*"
    assert config.ignore_port_in_host_matching and config.validate_clusters.value is False


def test_only_http_services_with_the_port_get_virtual_hosts():
    snap = snapshot(
        service_entry(REVIEWS),
        service_entry("db.prod.svc.cluster.local", protocol="TCP"),
        service_entry("tls.prod.svc.cluster.local", protocol="HTTPS"),
        service_entry("grpc.prod.svc.cluster.local", protocol="GRPC"),
        service_entry(RATINGS, port=8080),
    )
    assert host_names(route_config(snap)) == [
        "grpc.prod.svc.cluster.local:9080",
        f"{REVIEWS}:9080",
        "allow_any",
    ]


def test_domains_depend_on_the_proxys_namespace():
    snap = snapshot(service_entry(REVIEWS))
    own = host_named(route_config(snap), f"{REVIEWS}:9080").domains
    other = host_named(route_config(snap, client=proxy("other")), f"{REVIEWS}:9080").domains
    assert list(own) == [REVIEWS, f"{REVIEWS}.", "reviews", "reviews.prod.svc", "reviews.prod"]
    assert list(other) == [REVIEWS, f"{REVIEWS}.", "reviews.prod", "reviews.prod.svc"]


def test_an_exact_virtual_service_host_beats_a_wildcard_one_and_the_first_duplicate_wins():
    snap = snapshot(
        service_entry(REVIEWS),
        service_entry(RATINGS),
        virtual_service(
            "a-wild",
            "prod",
            "hosts: ['*.prod.svc.cluster.local']\n"
            "http: [{name: wild, route: [{destination: {host: reviews}}]}]",
        ),
        virtual_service(
            "b-exact",
            "prod",
            "hosts: [ratings]\nhttp: [{name: exact, route: [{destination: {host: ratings}}]}]",
        ),
        virtual_service(
            "c-again",
            "prod",
            "hosts: [ratings]\nhttp: [{name: again, route: [{destination: {host: ratings}}]}]",
        ),
    )
    config = route_config(snap)
    assert [r.name for r in host_named(config, f"{REVIEWS}:9080").routes] == ["wild"]
    assert [r.name for r in host_named(config, f"{RATINGS}:9080").routes] == ["exact"]


def test_virtual_services_apply_per_source_proxy():
    snap = snapshot(
        service_entry(REVIEWS),
        virtual_service(
            "reviews",
            "prod",
            """
            hosts: [reviews]
            http:
            - name: canary
              match: [{sourceLabels: {track: canary}, uri: {prefix: /c}}]
              route: [{destination: {host: reviews}}]
            - name: v2-only
              match: [{sourceLabels: {track: canary}, uri: {prefix: /x}}]
              route: [{destination: {host: reviews}}]
            """,
        ),
    )
    canary = route_config(snap, client=proxy(labels={"track": "canary"}))
    stable = route_config(snap, client=proxy(labels={"track": "stable"}))
    assert [r.name for r in host_named(canary, f"{REVIEWS}:9080").routes] == ["canary", "v2-only"]
    # No route of the VirtualService applies to this proxy: the service keeps its default route.
    assert [r.name for r in host_named(stable, f"{REVIEWS}:9080").routes] == ["default"]


def test_a_host_outside_the_registry_only_routes_on_port_80():
    snap = snapshot(
        service_entry(REVIEWS, port=80),
        service_entry(RATINGS),
        virtual_service(
            "ext", "prod", "hosts: [legacy.example.com]\nhttp: [{route: [{destination: {host: reviews}}]}]"
        ),
    )
    assert "legacy.example.com:80" in host_names(route_config(snap, "80"))
    assert "legacy.example.com:9080" not in host_names(route_config(snap, "9080"))
    (route,) = host_named(route_config(snap, "80"), "legacy.example.com:80").routes
    assert route.route.cluster == f"outbound|80||{REVIEWS}"


def test_a_destination_without_port_uses_the_listener_port():
    snap = snapshot(
        service_entry(REVIEWS),
        service_entry(RATINGS, port=8080),
        virtual_service("r", "prod", "hosts: [reviews]\nhttp: [{route: [{destination: {host: ratings}}]}]"),
    )
    (route,) = host_named(route_config(snap), f"{REVIEWS}:9080").routes
    assert route.route.cluster == f"outbound|9080||{RATINGS}"


def test_a_sidecar_narrows_the_services_and_virtual_services():
    snap = snapshot(
        service_entry(REVIEWS),
        service_entry("api.shared.svc.cluster.local", namespace="shared"),
        service_entry("db.shared.svc.cluster.local", namespace="shared"),
        virtual_service(
            "db", "shared", "hosts: [db]\nhttp: [{name: db-vs, route: [{destination: {host: db}}]}]"
        ),
        sidecar("s", "prod", "egress: [{hosts: ['./*', 'shared/api.shared.svc.cluster.local']}]"),
    )
    assert host_names(route_config(snap)) == [
        "api.shared.svc.cluster.local:9080",
        f"{REVIEWS}:9080",
        "allow_any",
    ]
    assert "db.shared.svc.cluster.local:9080" in host_names(route_config(snap, client=proxy("other")))


def test_an_egress_listener_with_a_port_serves_only_that_port():
    snap = snapshot(
        service_entry(REVIEWS),
        service_entry(RATINGS, port=8080),
        sidecar(
            "s",
            "prod",
            """
            egress:
            - {port: {number: 9080, protocol: HTTP, name: http}, hosts: ['./reviews.prod.svc.cluster.local']}
            - {hosts: ['./*']}
            """,
        ),
    )
    assert host_names(route_config(snap, "9080")) == [f"{REVIEWS}:9080", "allow_any"]
    assert host_names(route_config(snap, "8080")) == [f"{RATINGS}:8080", "allow_any"]


@pytest.mark.parametrize(
    ("mesh_mode", "sidecar_policy", "expected"),
    [
        ("ALLOW_ANY", "", ("allow_any", "PassthroughCluster")),
        ("REGISTRY_ONLY", "", ("block_all", 502)),
        ("ALLOW_ANY", "outboundTrafficPolicy: {mode: REGISTRY_ONLY}", ("block_all", 502)),
        ("REGISTRY_ONLY", "outboundTrafficPolicy: {mode: ALLOW_ANY}", ("allow_any", "PassthroughCluster")),
        (
            "ALLOW_ANY",
            "outboundTrafficPolicy:\n"
            "  {mode: ALLOW_ANY, egressProxy: {host: egress.example.com, port: {number: 443}}}",
            ("allow_any", "outbound|443||egress.example.com"),
        ),
    ],
)
def test_the_catch_all_follows_the_outbound_traffic_policy(mesh_mode, sidecar_policy, expected):
    documents = [service_entry(REVIEWS)]
    if sidecar_policy:
        documents.append(sidecar("s", "prod", f"egress: [{{hosts: ['*/*']}}]\n{sidecar_policy}"))
    snap = dataclasses.replace(
        snapshot(*documents), mesh=MeshConfig(outbound_traffic_policy=OutboundTrafficPolicy(mesh_mode))
    )
    last = route_config(snap).virtual_hosts[-1]
    (route,) = last.routes
    target = route.route.cluster or route.direct_response.status
    assert (last.name, target) == expected and list(last.domains) == ["*"]


def test_names_a_sidecar_does_not_know_are_empty_and_names_are_built_once():
    snap = snapshot(service_entry(REVIEWS))
    configs = translate_routes(snap, proxy(), ["9080", "http.80", "unknown", "9080", "0x50"])
    assert [c.name for c in configs] == ["9080", "http.80", "unknown", "0x50"]
    assert [len(c.virtual_hosts) for c in configs] == [2, 0, 0, 0]
    gateway = proxy(kind=ProxyType.ROUTER)
    assert translate_routes(snap, gateway, ["9080"])[0].virtual_hosts == []


def test_an_inbound_name_is_the_inbound_route_configuration_or_empty():
    snap = snapshot(
        service_entry(
            REVIEWS,
            extra="  workloadSelector: {labels: {app: reviews}}",
        ),
        """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: prod}
spec: {address: 10.0.0.1, labels: {app: reviews}}
""",
    )
    (config,) = translate_routes(snap, proxy(ip="10.0.0.1"), ["inbound|9080||"])
    (host,) = config.virtual_hosts
    assert host.name == "inbound|http|9080" and host.routes[0].route.cluster == "inbound|9080||"
    (other,) = translate_routes(snap, proxy(ip="10.0.0.2"), ["inbound|9080||"])
    assert other.name == "inbound|9080||" and not other.virtual_hosts
