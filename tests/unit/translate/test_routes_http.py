"""http_routes: one VirtualService's http rules → Envoy Routes (Istio TranslateRoute and friends)."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2
from routes_builders import applied_vs, options, route_names, service
from translate_builders import proxy

from pilotfish.config.networking.common import Destination, PortSelector
from pilotfish.config.networking.destination_rule import ConsistentHashLB
from pilotfish.config.networking.virtual_service import HTTPBody, HTTPDirectResponse, HTTPRedirect
from pilotfish.xds.translate.http_routes import (
    build_http_routes,
    destination_cluster,
    direct_response_action,
    redirect_action,
)
from pilotfish.xds.translate.route_policies import PREVIOUS_HOSTS_PREDICATE

RedirectAction = route_components_pb2.RedirectAction
REVIEWS = "reviews.prod.svc.cluster.local"


def routes(body: str, **option_args):
    return build_http_routes(applied_vs(body), options(**option_args))


# ---- which rules make routes ----------------------------------------------------------------------


def test_one_route_per_match_and_nothing_after_a_catch_all():
    out = routes(
        """
        hosts: [reviews]
        http:
        - name: a
          match: [{name: one, uri: {prefix: /one}}, {uri: {prefix: /}}, {name: never, uri: {prefix: /x}}]
          route: [{destination: {host: reviews}}]
        - name: b
          route: [{destination: {host: reviews}}]
        """
    )
    assert route_names(out) == ["a.one", "a"]


def test_a_rule_without_match_ends_the_list():
    out = routes(
        """
        hosts: [reviews]
        http:
        - {name: first, route: [{destination: {host: reviews}}]}
        - {name: second, match: [{uri: {prefix: /b}}], route: [{destination: {host: reviews}}]}
        """
    )
    assert route_names(out) == ["first"]


BY_SOURCE = """
hosts: [reviews]
http:
- name: port
  match: [{port: 9080, uri: {prefix: /p}}, {port: 8080, uri: {prefix: /q}}]
  route: [{destination: {host: reviews}}]
- name: labels
  match: [{sourceLabels: {app: a}, uri: {prefix: /l}}]
  route: [{destination: {host: reviews}}]
- name: namespace
  match: [{sourceNamespace: prod, sourceLabels: {app: a}, uri: {prefix: /n}}]
  route: [{destination: {host: reviews}}]
- name: gateway
  match: [{gateways: [prod/gw], uri: {prefix: /g}}]
  route: [{destination: {host: reviews}}]
"""


@pytest.mark.parametrize(
    ("client", "port", "gateways", "expected"),
    [
        (proxy("prod", {"app": "a"}), 9080, ("mesh",), ["port", "labels", "namespace"]),
        (proxy("prod", {"app": "b"}), 9080, ("mesh",), ["port"]),
        (proxy("other", {"app": "a"}), 9080, ("mesh",), ["port", "labels"]),
        (proxy("prod", {"app": "a"}), 8080, ("mesh",), ["port", "labels", "namespace"]),
        (proxy("prod", {"app": "a"}), 80, ("prod/gw",), ["labels", "namespace", "gateway"]),
    ],
)
def test_matches_are_kept_by_port_source_and_gateway(client, port, gateways, expected):
    out = routes(BY_SOURCE, client=client, port=port, gateways=gateways)
    assert route_names(out) == expected
    if port == 8080:
        assert out[0].match.prefix == "/q"


# ---- destinations ---------------------------------------------------------------------------------

SINGLE = service(REVIEWS, 9443)
MULTI = service(REVIEWS, 9080, 9443)


@pytest.mark.parametrize(
    ("destination", "known", "expected"),
    [
        (Destination(host=REVIEWS), None, f"outbound|9080||{REVIEWS}"),
        (Destination(host=REVIEWS, subset="v1"), SINGLE, f"outbound|9443|v1|{REVIEWS}"),
        (Destination(host=REVIEWS), MULTI, f"outbound|9080||{REVIEWS}"),
        (Destination(host=REVIEWS, port=PortSelector(7070)), SINGLE, f"outbound|7070||{REVIEWS}"),
        (Destination(host=""), None, "UnknownService"),
    ],
)
def test_destination_cluster_port_is_explicit_else_the_only_port_else_the_listeners(
    destination, known, expected
):
    assert destination_cluster(destination, known, 9080) == expected


def test_weights_of_zero_are_dropped_and_headers_go_on_the_weighted_cluster():
    (route,) = routes(
        """
        hosts: [reviews]
        http:
        - route:
          - destination: {host: reviews, subset: v1}
            weight: 70
            headers: {request: {set: {x-v: "1", host: v1.internal}}, response: {remove: [x-r]}}
          - {destination: {host: reviews, subset: v2}, weight: 30}
          - {destination: {host: reviews, subset: v3}, weight: 0}
        """
    )
    first, second = route.route.weighted_clusters.clusters
    assert (first.name, first.weight.value, second.weight.value) == (f"outbound|9080|v1|{REVIEWS}", 70, 30)
    assert [o.header.key for o in first.request_headers_to_add] == ["x-v"]
    assert first.host_rewrite_literal == "v1.internal" and list(first.response_headers_to_remove) == ["x-r"]
    assert not route.request_headers_to_add
    assert route.decorator.operation == "vs:9080/*"


def test_one_destinations_headers_join_the_routes_and_its_authority_yields_to_a_rewrite():
    body = """
    hosts: [reviews]
    http:
    - headers: {request: {set: {x-rule: r}}}
      rewrite: {authority: from-rewrite}
      route:
      - destination: {host: reviews}
        headers: {request: {set: {x-dest: d, ":authority": from-destination}}}
    """
    (route,) = routes(body)
    assert [o.header.key for o in route.request_headers_to_add] == ["x-rule", "x-dest"]
    assert route.route.host_rewrite_literal == "from-rewrite"
    (plain,) = routes(body.replace("rewrite: {authority: from-rewrite}", "timeout: 1s"))
    assert plain.route.host_rewrite_literal == "from-destination"


def test_a_consistent_hash_adds_hash_policies_and_keeps_retries_on_the_host():
    body = """
    hosts: [reviews]
    http:
    - match: [{uri: {prefix: /one}}]
      route: [{destination: {host: reviews}}]
    - route:
      - {destination: {host: reviews}, weight: 1}
      - {destination: {host: ratings}, weight: 1}
    """
    hashed = {REVIEWS: ConsistentHashLB(http_header_name="x-user")}
    one, split = routes(body, hashed=hashed)
    assert [h.header.header_name for h in one.route.hash_policy] == ["x-user"]
    assert not one.route.retry_policy.retry_host_predicate
    assert [h.header.header_name for h in split.route.hash_policy] == ["x-user"]
    assert [p.name for p in split.route.retry_policy.retry_host_predicate] == [PREVIOUS_HOSTS_PREDICATE]


def test_routes_carry_the_virtual_service_metadata_stat_prefix_and_decorator():
    (route,) = routes(
        """
        hosts: [reviews]
        http:
        - match: [{uri: {exact: /status}, statPrefix: status}]
          route: [{destination: {host: reviews}}]
        """,
        services=[service(REVIEWS, 9080)],
    )
    assert route.metadata.filter_metadata["istio"]["config"].endswith("/namespaces/prod/virtual-service/vs")
    assert route.stat_prefix == "status"
    assert route.decorator.operation == f"{REVIEWS}:9080/status"


# ---- redirects and direct responses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0, RedirectAction.MOVED_PERMANENTLY),
        (301, RedirectAction.MOVED_PERMANENTLY),
        (302, RedirectAction.FOUND),
        (303, RedirectAction.SEE_OTHER),
        (307, RedirectAction.TEMPORARY_REDIRECT),
        (308, RedirectAction.PERMANENT_REDIRECT),
        (300, None),
        (304, None),
    ],
)
def test_redirect_codes(code, expected):
    action = redirect_action(HTTPRedirect(uri="/x", redirect_code=code), 80, False)
    assert (action.response_code if action is not None else None) == expected


@pytest.mark.parametrize(
    ("redirect", "listener_port", "is_tls", "port"),
    [
        (HTTPRedirect(port=8443), 80, False, 8443),
        (HTTPRedirect(port=80), 8080, False, 0),
        (HTTPRedirect(port=443), 8080, True, 0),
        (HTTPRedirect(port=443, scheme="https"), 8080, False, 0),
        (HTTPRedirect(port=80, scheme="https"), 8080, False, 80),
        (HTTPRedirect(derive_port="FROM_REQUEST_PORT"), 8080, False, 8080),
        (HTTPRedirect(derive_port="FROM_REQUEST_PORT"), 80, False, 0),
        (HTTPRedirect(derive_port="FROM_PROTOCOL_DEFAULT"), 8080, False, 0),
        (HTTPRedirect(uri="/x"), 8080, False, 0),
    ],
)
def test_redirect_port_leaves_out_the_schemes_default(redirect, listener_port, is_tls, port):
    assert redirect_action(redirect, listener_port, is_tls).port_redirect == port


def test_redirect_path_or_prefix_and_host_and_scheme():
    full = redirect_action(HTTPRedirect(uri="/new", authority="h", scheme="https"), 80, False)
    assert (full.path_redirect, full.host_redirect, full.scheme_redirect) == ("/new", "h", "https")
    prefix = redirect_action(HTTPRedirect(prefix_rewrite="/p/"), 80, False)
    assert prefix.WhichOneof("path_rewrite_specifier") == "prefix_rewrite" and prefix.prefix_rewrite == "/p/"


def test_a_redirect_envoy_cannot_express_leaves_the_route_out():
    out = routes(
        """
        hosts: [reviews]
        http:
        - {name: multiple, match: [{uri: {exact: /m}}], redirect: {uri: /c, redirectCode: 300}}
        - {name: fine, match: [{uri: {exact: /f}}], redirect: {uri: /c, redirectCode: 301}}
        """
    )
    assert route_names(out) == ["fine"]


def test_direct_response_bodies():
    assert direct_response_action(HTTPDirectResponse(204)).HasField("body") is False
    text = direct_response_action(HTTPDirectResponse(200, HTTPBody(string="hi")))
    assert text.body.inline_string == "hi"
    raw = direct_response_action(HTTPDirectResponse(200, HTTPBody(bytes="AAEC")))
    assert raw.body.inline_bytes == b"\x00\x01\x02"


def test_redirect_and_direct_response_routes_keep_header_operations_and_filters():
    redirect, direct = routes(
        """
        hosts: [reviews]
        http:
        - match: [{uri: {exact: /r}}]
          redirect: {uri: /x}
          headers: {response: {set: {x-r: "1"}}}
          corsPolicy: {allowOrigins: [{exact: "https://a"}]}
        - directResponse: {status: 503}
          corsPolicy: {allowOrigins: [{exact: "https://b"}]}
        """
    )
    assert (
        redirect.WhichOneof("action") == "redirect"
        and redirect.response_headers_to_add[0].header.key == "x-r"
    )
    assert set(redirect.typed_per_filter_config) == {"envoy.filters.http.cors"}
    assert direct.WhichOneof("action") == "direct_response" and direct.direct_response.status == 503
    assert set(direct.typed_per_filter_config) == {"envoy.filters.http.cors"}
    assert redirect.decorator.operation == "vs:9080/r"
