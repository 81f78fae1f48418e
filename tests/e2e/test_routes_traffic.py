"""Issue "Routing", done-when, for the routes alone: VirtualServices translated by
``translate_routes`` steer real traffic through a real Envoy to real echo servers.

The translated RouteConfigurations are inlined in a static Envoy (one listener per route
configuration, with the fault, CORS and router filters the listeners configure) whose STATIC
clusters carry Istio's cluster names (``outbound|9080|v1|reviews...``) and point at echo servers.
No listener or cluster translation is involved, so a failure here is a route failure.
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
from google.protobuf import json_format
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.ports import free_port

from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.routes import translate_routes
from pilotfish.xds.translate.virtual_hosts import RouteConfiguration

pytestmark = pytest.mark.e2e

HTTP_FILTERS = [
    {
        "name": "envoy.filters.http.fault",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"},
    },
    {
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
    },
    {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    },
]

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bookinfo, namespace: prod}
spec:
  hosts: [reviews.prod.svc.cluster.local, ratings.prod.svc.cluster.local, web.prod.svc.cluster.local,
          shadow.prod.svc.cluster.local, loopback.prod.svc.cluster.local, productpage.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /slow-ratings}}]
    timeout: 0.4s
    rewrite: {uri: /delay, authority: ratings}
    route: [{destination: {host: loopback}}]
  - match: [{uri: {prefix: /retried}}]
    retries: {attempts: 6, retryOn: 5xx}
    route: [{destination: {host: ratings, subset: flaky}}]
  - match: [{uri: {prefix: /unretried}}]
    retries: {attempts: 0}
    route: [{destination: {host: ratings, subset: flaky}}]
  - match: [{uri: {prefix: /upstream-timeout}}]
    timeout: 0.3s
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: prod}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/, authority: rewritten.internal}
    route: [{destination: {host: web}}]
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new-home, authority: www.example.com, redirectCode: 302}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /headers}}]
    headers:
      request: {set: {x-set: set-value}, add: {x-added: added-value}, remove: [x-remove-me]}
      response:
        set: {x-response-set: r1}
        add: {x-response-added: r2}
        remove: [x-envoy-upstream-service-time]
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /mirrored}}]
    mirror: {host: shadow}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins: [{exact: "https://ok.example.com"}]
      allowMethods: [GET, PUT]
      maxAge: 60s
    route: [{destination: {host: web}}]
  - match: [{uri: {regex: "/items/[0-9]+"}, method: {exact: PUT}, queryParams: {dry: {exact: "1"}}}]
    directResponse: {status: 202, body: {string: "matched"}}
  - match: [{uri: {exact: /CaseLess}, ignoreUriCase: true}]
    directResponse: {status: 200, body: {string: "any case"}}
  - route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: prod}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: prod}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {prefix: /productpage}}]
    route: [{destination: {host: productpage}}]
"""

RATINGS_SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: prod}
spec:
  host: ratings
  subsets: [{name: flaky, labels: {version: flaky}}]
"""

MAX_UINT32 = 2**32 - 1
REVIEWS = "reviews.prod.svc.cluster.local"
RATINGS = "ratings.prod.svc.cluster.local"
WEB = "web.prod.svc.cluster.local"


def mesh_snapshot() -> MeshSnapshot:
    result = load_text(textwrap.dedent(MESH) + "\n---\n" + textwrap.dedent(RATINGS_SUBSETS))
    assert not result.errors, [str(p) for p in result.errors]
    return MeshSnapshot.build(result.resources)


def proxy(kind: ProxyType, labels: Mapping[str, str]) -> Proxy:
    return Proxy(
        id=f"{kind.value}~127.0.0.1~client.prod~prod.svc.cluster.local",
        type=kind,
        ip="127.0.0.1",
        name="client",
        namespace="prod",
        dns_domain="prod.svc.cluster.local",
        labels=dict(labels),
    )


def referenced_clusters(config: RouteConfiguration) -> Iterator[str]:
    for host in config.virtual_hosts:
        for route in host.routes:
            action = route.route
            if action.cluster:
                yield action.cluster
            yield from (weighted.name for weighted in action.weighted_clusters.clusters)
            yield from (mirror.cluster for mirror in action.request_mirror_policies)


def static_cluster(name: str, port: int) -> dict[str, Any]:
    """A cluster as the cluster translation would build it for one endpoint: STATIC here, and with
    Istio's circuit-breaker defaults (no limit on concurrent retries; Envoy's own default is 3)."""
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "circuit_breakers": {"thresholds": [{"max_retries": MAX_UINT32}]},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }


def http_listener(name: str, config: RouteConfiguration, port_placeholder: str) -> dict[str, Any]:
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": name,
        "route_config": json_format.MessageToDict(config, preserving_proto_field_name=True),
        "http_filters": HTTP_FILTERS,
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port_placeholder}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def bootstrap(
    configs: Iterable[tuple[str, RouteConfiguration]], upstreams: Mapping[str, int]
) -> dict[str, Any]:
    configs = list(configs)
    names = sorted({c for _, config in configs for c in referenced_clusters(config)})
    unknown = [name for name in names if name not in upstreams]
    assert not unknown, f"the routes name clusters the test has no upstream for: {unknown}"
    return {
        "node": {"id": "routes-e2e", "cluster": "routes-e2e"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{admin_port}"}}},
        "static_resources": {
            "listeners": [http_listener(name, config, f"{{{name}_port}}") for name, config in configs],
            "clusters": [static_cluster(name, upstreams[name]) for name in names],
        },
    }


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    """Echo servers behind Envoy listeners ``sidecar`` (route "9080") and ``gateway`` (route
    "http.8080"); yields (envoy, echoes by name). Module-scoped: one Envoy serves every test."""
    with ExitStack() as stack:
        echoes = {
            name: start_echo(stack, name) for name in ("v1", "v2", "v3", "ratings", "web", "shadow", "page")
        }
        echoes["flaky"] = start_echo(stack, "flaky", fail_rate=0.5, fail_status=503)
        snap = mesh_snapshot()
        (sidecar_routes,) = translate_routes(snap, proxy(ProxyType.SIDECAR, {"app": "client"}), ["9080"])
        (gateway_routes,) = translate_routes(
            snap, proxy(ProxyType.ROUTER, {"istio": "ingressgateway"}), ["http.8080"]
        )
        sidecar_port = free_port()
        upstreams = {
            f"outbound|9080|v1|{REVIEWS}": echoes["v1"].port,
            f"outbound|9080|v2|{REVIEWS}": echoes["v2"].port,
            f"outbound|9080|v3|{REVIEWS}": echoes["v3"].port,
            f"outbound|9080||{RATINGS}": echoes["ratings"].port,
            f"outbound|9080|flaky|{RATINGS}": echoes["flaky"].port,
            f"outbound|9080||{WEB}": echoes["web"].port,
            "outbound|9080||shadow.prod.svc.cluster.local": echoes["shadow"].port,
            "outbound|9080||productpage.prod.svc.cluster.local": echoes["page"].port,
            # The sidecar's own listener: a route through it is a second hop, as between two sidecars.
            "outbound|9080||loopback.prod.svc.cluster.local": sidecar_port,
            "PassthroughCluster": echoes["web"].port,
        }
        boot = bootstrap([("sidecar", sidecar_routes), ("gateway", gateway_routes)], upstreams)
        workdir = tmp_path_factory.mktemp("routes-envoy")
        envoy = EnvoyProcess(boot, ports={"sidecar_port": sidecar_port}, workdir=workdir, name="routes")
        stack.callback(envoy.stop)
        envoy.start()
        yield envoy, echoes


def start_echo(stack: ExitStack, name: str, **options: Any) -> EchoProcess:
    echo = EchoProcess(name, **options)
    stack.callback(echo.stop)
    return echo.start()


def sidecar_get(envoy, host: str, path: str, headers: Mapping[str, str] | None = None) -> http.Response:
    return http.get(envoy.url("sidecar_port", path), headers={"host": host, **(headers or {})})


def statuses(envoy, host: str, path: str, n: int) -> Counter[int]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return Counter(pool.map(lambda _: sidecar_get(envoy, host, path).status, range(n)))


# ---- match and destinations ------------------------------------------------------------------------


def test_a_header_match_sends_jason_to_v2_and_everyone_else_to_v1(routed):
    envoy, _ = routed
    assert http.echo_name(sidecar_get(envoy, "reviews", "/", {"end-user": "jason"})) == "v2"
    assert http.echo_name(sidecar_get(envoy, "reviews:9080", "/", {"end-user": "someone"})) == "v1"
    assert http.echo_name(sidecar_get(envoy, REVIEWS, "/")) == "v1"


def test_an_80_20_split_lands_within_five_percent(routed):
    envoy, _ = routed
    counts = http.count_by_name(
        envoy.url("sidecar_port", "/split"), 1000, headers={"host": "reviews"}, concurrency=8
    )
    assert sum(counts.values()) == 1000 and set(counts) == {"v1", "v3"}
    assert abs(counts["v1"] / 1000 - 0.8) <= 0.05, counts


def test_uri_regex_method_query_and_case_insensitive_matches(routed):
    envoy, _ = routed
    url = envoy.url("sidecar_port", "/items/42?dry=1")
    assert http.request("PUT", url, headers={"host": "web"}).body == "matched"
    assert http.echo_name(http.request("GET", url, headers={"host": "web"})) == "web"
    assert (
        http.echo_name(http.request("PUT", envoy.url("sidecar_port", "/items/42"), {"host": "web"})) == "web"
    )
    assert sidecar_get(envoy, "web", "/caseless").body == "any case"


def test_an_unknown_host_takes_the_passthrough_virtual_host(routed):
    envoy, _ = routed
    assert http.echo_name(sidecar_get(envoy, "unknown.example.com", "/")) == "web"


# ---- faults, timeouts, retries ------------------------------------------------------------------


def test_an_abort_at_50_percent_fails_half_of_400_requests(routed):
    envoy, echoes = routed
    before = echoes["ratings"].stats()["requests"]
    counts = statuses(envoy, "ratings", "/abort", 400)
    assert set(counts) == {200, 503}
    assert abs(counts[503] / 400 - 0.5) <= 0.07, counts
    assert echoes["ratings"].stats()["requests"] - before == counts[200], (
        "aborted requests never reach the app"
    )


def test_a_fixed_delay_holds_the_request(routed):
    envoy, _ = routed
    started = time.monotonic()
    response = sidecar_get(envoy, "ratings", "/delay")
    assert response.status == 200 and time.monotonic() - started >= 0.9


def test_a_delay_behind_a_shorter_route_timeout_gives_504(routed):
    """The issue's case: the caller's route times out (0.4 s) while the callee's route delays (1 s)."""
    envoy, _ = routed
    started = time.monotonic()
    response = sidecar_get(envoy, "ratings", "/slow-ratings")
    assert response.status == 504, response
    assert time.monotonic() - started < 0.9


def test_a_route_timeout_cuts_a_slow_upstream(routed):
    envoy, _ = routed
    assert sidecar_get(envoy, "ratings", "/upstream-timeout", {"x-echo-delay": "1"}).status == 504
    assert sidecar_get(envoy, "ratings", "/upstream-timeout").status == 200


def test_retries_turn_a_50_percent_failing_upstream_into_95_percent_success(routed):
    envoy, _ = routed
    retried = statuses(envoy, "ratings", "/retried", 200)
    unretried = statuses(envoy, "ratings", "/unretried", 200)
    assert retried[200] / 200 >= 0.95, retried
    assert unretried[200] / 200 <= 0.7, unretried


# ---- rewrite, redirect, direct response, headers, mirror, CORS -----------------------------------------


def test_rewrite_changes_the_path_and_authority_the_app_sees(routed):
    envoy, _ = routed
    request = sidecar_get(envoy, "web", "/old/page?q=1").json()["request"]
    assert request["path"] == "/new/page" and request["query"] == "q=1"
    assert request["headers"]["host"] == "rewritten.internal"


def test_redirect_and_direct_response_are_answered_by_envoy(routed):
    envoy, echoes = routed
    before = echoes["web"].stats()["requests"]
    moved = sidecar_get(envoy, "web", "/moved")
    assert moved.status == 302 and moved.headers["location"] == "http://www.example.com/new-home"
    teapot = sidecar_get(envoy, "web", "/teapot")
    assert teapot.status == 418 and teapot.body == "short and stout"
    assert echoes["web"].stats()["requests"] == before


def test_request_and_response_headers_are_set_added_and_removed(routed):
    envoy, _ = routed
    response = sidecar_get(envoy, "web", "/headers", {"x-set": "client", "x-remove-me": "secret"})
    seen = response.json()["request"]["headers"]
    assert seen["x-set"] == "set-value" and seen["x-added"] == "added-value"
    assert "x-remove-me" not in seen
    assert response.headers["x-response-set"] == "r1" and response.headers["x-response-added"] == "r2"
    assert "x-envoy-upstream-service-time" not in response.headers


def test_mirror_sends_a_copy_to_the_shadow(routed):
    envoy, echoes = routed
    before = echoes["shadow"].stats()["requests"]
    assert http.echo_name(sidecar_get(envoy, "web", "/mirrored")) == "web"
    wait_until(lambda: echoes["shadow"].stats()["requests"] == before + 1)


def test_cors_answers_an_allowed_preflight_and_ignores_another_origin(routed):
    envoy, _ = routed
    preflight = {"host": "web", "access-control-request-method": "PUT"}
    url = envoy.url("sidecar_port", "/cors")
    allowed = http.request("OPTIONS", url, headers={**preflight, "origin": "https://ok.example.com"})
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ok.example.com"
    assert allowed.headers["access-control-allow-methods"] == "GET,PUT"
    assert allowed.headers["access-control-max-age"] == "60"
    other = http.request("OPTIONS", url, headers={**preflight, "origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers


# ---- the gateway ----------------------------------------------------------------------------------


def test_the_gateway_routes_its_host_and_answers_404_to_others(routed):
    envoy, _ = routed
    page = http.get(envoy.url("gateway_port", "/productpage"), headers={"host": "bookinfo.example.com"})
    assert http.echo_name(page) == "page"
    assert (
        http.get(envoy.url("gateway_port", "/productpage"), headers={"host": "other.example.com"}).status
        == 404
    )
    assert (
        http.get(envoy.url("gateway_port", "/elsewhere"), headers={"host": "bookinfo.example.com"}).status
        == 404
    )


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
