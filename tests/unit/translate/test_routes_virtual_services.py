"""virtual_services and delegates: short names, the VirtualService index, delegate merging."""

from __future__ import annotations

from dataclasses import replace

import pytest
from routes_builders import applied_vs, virtual_service
from translate_builders import snapshot

from pilotfish.config.networking.virtual_service import HTTPMatchRequest, StringMatch
from pilotfish.xds.translate.delegates import has_conflict, merge_match, string_match_conflict
from pilotfish.xds.translate.virtual_services import (
    index_virtual_services,
    merge_delegates,
    resolve_gateway_name,
    virtual_service_index,
    virtual_services_for_gateway,
    visibility,
)

ROUTE = "http: [{route: [{destination: {host: reviews}}]}]"


def vs(name: str, namespace: str, extra: str = "", hosts: str = "[reviews]") -> str:
    return virtual_service(name, namespace, f"hosts: {hosts}\n{extra}\n{ROUTE}")


def names(services) -> list[str]:
    return [f"{s.namespace}/{s.name}" for s in services]


# ---- short names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gw", "prod/gw"),
        ("./gw", "prod/gw"),
        ("edge/gw", "edge/gw"),
        ("gw.edge.svc.cluster.local", "edge/gw"),
        ("gw.edge", "edge/gw"),
        ("mesh", "mesh"),
    ],
)
def test_gateway_names_resolve_to_namespace_slash_name(name, expected):
    assert resolve_gateway_name(name, "prod") == expected


def test_short_names_resolve_in_the_virtual_services_namespace():
    service = applied_vs(
        """
        hosts: [reviews, api.example.com, "*.internal"]
        gateways: [gw, mesh]
        http:
        - match: [{gateways: [other/gw, gw2]}]
          mirror: {host: shadow}
          route: [{destination: {host: ratings}}]
        - mirrors: [{destination: {host: audit.ops}}]
          route: [{destination: {host: ratings}}]
        """,
        namespace="team",
    )
    spec = service.spec
    assert spec.hosts == ("reviews.team.svc.cluster.local", "api.example.com", "*.internal")
    assert spec.gateways == ("team/gw", "mesh")
    rule = spec.http[0]
    assert rule.match[0].gateways == ("other/gw", "team/gw2")
    assert rule.route[0].destination.host == "ratings.team.svc.cluster.local"
    assert rule.mirror.host == "shadow.team.svc.cluster.local"
    assert spec.http[1].mirrors[0].destination.host == "audit.ops"


def test_config_path_names_the_resource_like_istio_metadata():
    assert applied_vs(f"hosts: [reviews]\n{ROUTE}", "r", "prod").config_path == (
        "/apis/networking.istio.io/v1/namespaces/prod/virtual-service/r"
    )


# ---- the index ------------------------------------------------------------------------------------


def test_visibility_follows_export_to():
    snap = snapshot(
        vs("public", "a"),
        vs("star", "a", "exportTo: ['*']"),
        vs("private", "a", "exportTo: ['.']"),
        vs("to-b", "a", "exportTo: [b]"),
        vs("self-and-c", "a", "exportTo: ['.', c]"),
    )
    index = virtual_service_index(snap)
    assert names(virtual_services_for_gateway(index, "a", "mesh")) == [
        "a/private",
        "a/self-and-c",
        "a/public",
        "a/star",
    ]
    assert names(virtual_services_for_gateway(index, "b", "mesh")) == ["a/to-b", "a/public", "a/star"]
    assert names(virtual_services_for_gateway(index, "c", "mesh")) == ["a/self-and-c", "a/public", "a/star"]


def test_export_to_nobody_hides_a_virtual_service_everywhere():
    service = applied_vs(f"hosts: [reviews]\n{ROUTE}", "hidden", "a")
    hidden = replace(service, spec=replace(service.spec, export_to=("~",)))
    assert visibility(hidden) == (False, frozenset())
    assert visibility(replace(service, spec=replace(service.spec, export_to=(".", "b")))) == (
        False,
        frozenset({"a", "b"}),
    )


def test_the_index_is_by_gateway_and_names_sort_before_namespaces():
    snap = snapshot(
        vs("b", "x", "gateways: [gw]"),
        vs("a", "z"),
        vs("a", "y", "gateways: [mesh, x/gw]"),
    )
    index = virtual_service_index(snap)
    assert names(virtual_services_for_gateway(index, "x", "mesh")) == ["y/a", "z/a"]
    assert names(virtual_services_for_gateway(index, "x", "x/gw")) == ["y/a", "x/b"]
    assert virtual_services_for_gateway(index, "x", "gw") == ()


def test_the_index_is_built_once_per_snapshot():
    snap = snapshot(vs("a", "prod"))
    assert virtual_service_index(snap) is virtual_service_index(snap)


# ---- delegates ------------------------------------------------------------------------------------

ROOT = virtual_service(
    "root",
    "prod",
    """
    hosts: [bookinfo.example.com]
    http:
    - name: reviews
      match: [{uri: {prefix: /reviews}, headers: {x-root: {exact: r}}}]
      timeout: 3s
      headers: {request: {set: {x-from: root}}}
      delegate: {name: leaf, namespace: team}
    - name: missing
      match: [{uri: {prefix: /missing}}]
      delegate: {name: nothing}
    - name: last
      route: [{destination: {host: web}}]
    """,
)
LEAF = virtual_service(
    "leaf",
    "team",
    """
    http:
    - name: v2
      match: [{uri: {prefix: /reviews/v2}, headers: {x-leaf: {exact: l}}}]
      timeout: 1s
      route: [{destination: {host: reviews}}]
    - match: [{uri: {prefix: /ratings}}]
      route: [{destination: {host: reviews}}]
    - name: rest
      route: [{destination: {host: reviews}}]
    """,
)


def merged_root(*documents: str):
    (root,) = [
        s for s in index_virtual_services(snapshot(*documents).of_kind("VirtualService")).public["mesh"]
    ]
    return root


def test_a_delegate_replaces_the_root_route_with_its_fitting_routes():
    root = merged_root(ROOT, LEAF)
    assert [r.name for r in root.spec.http] == ["reviews-v2", "reviews-rest", "last"]
    v2, rest, _ = root.spec.http
    assert v2.timeout.total_seconds() == 1 and rest.timeout.total_seconds() == 3
    assert v2.match[0].uri.prefix == "/reviews/v2" and rest.match[0].uri.prefix == "/reviews"
    assert set(v2.match[0].headers) == {"x-root", "x-leaf"}
    assert v2.headers.request.set == {"x-from": "root"}
    assert v2.route[0].destination.host == "reviews.team.svc.cluster.local"
    assert all(r.delegate is None for r in root.spec.http)


def test_delegates_are_not_indexed_and_a_private_delegate_is_not_used():
    private_leaf = LEAF.replace("spec:\n", "spec:\n  exportTo: ['.']\n", 1)
    index = index_virtual_services(snapshot(ROOT, private_leaf).of_kind("VirtualService"))
    (root,) = index.public["mesh"]
    assert [r.name for r in root.spec.http] == ["last"]
    assert not index.private


def test_merge_delegates_keeps_plain_virtual_services_and_sorts_the_result():
    services = [applied_vs(f"hosts: [b]\n{ROUTE}", "b"), applied_vs(f"hosts: [a]\n{ROUTE}", "a")]
    assert [s.name for s in merge_delegates(services)] == ["a", "b"]


@pytest.mark.parametrize(
    ("root", "leaf", "conflict"),
    [
        (None, StringMatch(exact="/a"), False),
        (StringMatch(exact="/a"), StringMatch(exact="/a"), False),
        (StringMatch(exact="/a"), StringMatch(exact="/b"), True),
        (StringMatch(exact="/a"), StringMatch(prefix="/a"), True),
        (StringMatch(prefix="/a"), StringMatch(prefix="/a/b"), False),
        (StringMatch(prefix="/a/b"), StringMatch(prefix="/a"), True),
        (StringMatch(prefix="/a"), StringMatch(exact="/a/x"), False),
        (StringMatch(prefix="/a"), StringMatch(exact="/b"), True),
        (StringMatch(regex="/a.*"), StringMatch(exact="/a"), True),
        (StringMatch(prefix="/a"), StringMatch(regex="/a.*"), True),
        (StringMatch(regex="/a.*"), StringMatch(), True),
        (StringMatch(prefix="/a"), StringMatch(), True),
    ],
)
def test_string_match_conflicts_like_istio(root, leaf, conflict):
    assert string_match_conflict(root, leaf) is conflict


@pytest.mark.parametrize(
    ("root", "leaf", "conflict"),
    [
        (HTTPMatchRequest(ignore_uri_case=True), HTTPMatchRequest(), True),
        (HTTPMatchRequest(port=80), HTTPMatchRequest(port=81), True),
        (HTTPMatchRequest(port=80), HTTPMatchRequest(), False),
        (HTTPMatchRequest(source_namespace="a"), HTTPMatchRequest(), True),
        (HTTPMatchRequest(source_labels={"app": "a"}), HTTPMatchRequest(source_labels={"app": "b"}), True),
        (HTTPMatchRequest(source_labels={"app": "a"}), HTTPMatchRequest(source_labels={"v": "1"}), False),
        (HTTPMatchRequest(gateways=("a/g",)), HTTPMatchRequest(gateways=("a/h",)), True),
        (HTTPMatchRequest(gateways=("a/g", "a/h")), HTTPMatchRequest(gateways=("a/h",)), False),
        (
            HTTPMatchRequest(headers={"x": StringMatch(exact="1")}),
            HTTPMatchRequest(headers={"x": StringMatch(exact="2")}),
            True,
        ),
    ],
)
def test_match_conflicts_like_istio(root, leaf, conflict):
    assert has_conflict(root, leaf) is conflict


def test_a_merged_match_is_the_leaf_with_the_roots_gaps_filled():
    root = HTTPMatchRequest(
        name="r", uri=StringMatch(prefix="/a"), method=StringMatch(exact="GET"), port=80, gateways=("x/g",)
    )
    leaf = HTTPMatchRequest(name="l", uri=StringMatch(prefix="/a/b"), headers={"h": StringMatch(exact="1")})
    merged = merge_match(root, leaf)
    assert merged.name == "r-l" and merged.uri.prefix == "/a/b" and merged.method.exact == "GET"
    assert merged.port == 80 and merged.gateways == ("x/g",) and set(merged.headers) == {"h"}
