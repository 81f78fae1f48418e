"""Which DestinationRule applies, as Istio's push_context.go destinationRule and
sidecar.go SidecarScope.DestinationRule decide it."""

from __future__ import annotations

import pytest
from translate_builders import destination_rule, snapshot

from pilotfish.xds.translate.destination_rules import (
    destination_rule_for,
    index_destination_rules,
    more_specific,
    resolve_host,
    select_rule,
)

RATINGS = "ratings.prod.svc.cluster.local"
ROOT = "istio-system"


def chosen(docs, proxy_ns, host=RATINGS, service_ns="prod", labels=None):
    snap = snapshot(*docs)
    index = index_destination_rules(snap.of_kind("DestinationRule"), ROOT)
    rule = destination_rule_for(index, proxy_ns, labels or {}, host, service_ns)
    return None if rule is None else f"{rule.namespace}/{rule.name}"


def dr(name, namespace, host=RATINGS, extra=""):
    return destination_rule(name, namespace, f"host: {host}\n{extra}")


@pytest.mark.parametrize(
    ("host", "namespace", "resolved"),
    [
        ("reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.prod.svc.cluster.local", "other", "reviews.prod.svc.cluster.local"),
        ("reviews.prod", "other", "reviews.prod"),
        ("*", "prod", "*"),
        ("*.example.com", "prod", "*.example.com"),
        ("10.1.2.3", "prod", "10.1.2.3"),
        ("::1", "prod", "::1"),
    ],
)
def test_short_names_resolve_in_the_rules_namespace(host, namespace, resolved):
    assert resolve_host(host, namespace) == resolved


def test_short_host_applies_to_the_service_of_its_own_namespace_only():
    docs = [dr("short", "prod", host="ratings"), dr("elsewhere", "other", host="ratings")]
    assert chosen(docs, "prod") == "prod/short"
    assert chosen(docs, "client") == "prod/short"
    assert chosen(docs, "other") == "prod/short"  # other/ratings means ratings.other.svc...
    assert (
        chosen(docs, "other", host="ratings.other.svc.cluster.local", service_ns="other") == "other/elsewhere"
    )


PRECEDENCE = [dr("in-client", "client"), dr("in-prod", "prod"), dr("in-root", ROOT)]


@pytest.mark.parametrize(
    ("docs", "proxy_ns", "expected"),
    [
        (PRECEDENCE, "client", "client/in-client"),  # 1. the proxy's namespace
        (PRECEDENCE, "prod", "prod/in-prod"),
        (PRECEDENCE, "third", "prod/in-prod"),  # 2. the service's namespace
        (PRECEDENCE[2:], "third", f"{ROOT}/in-root"),  # 3. the root namespace
        (PRECEDENCE, ROOT, "prod/in-prod"),  # a root-namespace proxy looks at the service first
        ([], "client", None),
    ],
)
def test_namespace_precedence(docs, proxy_ns, expected):
    assert chosen(docs, proxy_ns) == expected


def test_export_to_hides_a_rule_from_other_namespaces():
    private = dr("private", "prod", extra="exportTo: ['.']")
    to_client = dr("to-client", "prod", extra="exportTo: [client]")
    root = dr("in-root", ROOT)
    assert chosen([private, root], "prod") == "prod/private"
    assert chosen([private, root], "client") == f"{ROOT}/in-root"
    assert chosen([to_client, root], "client") == "prod/to-client"
    assert chosen([to_client, root], "third") == f"{ROOT}/in-root"
    assert chosen([dr("public", "prod", extra="exportTo: ['*']")], "third") == "prod/public"


def test_private_root_rules_apply_only_to_root_namespace_proxies():
    docs = [dr("root-private", ROOT, extra="exportTo: ['.']")]
    assert chosen(docs, ROOT) == f"{ROOT}/root-private"
    assert chosen(docs, "client") is None


WILDCARDS = [
    dr("any", "prod", host="'*'"),
    dr("dot-com", "prod", host="'*.com'"),
    dr("example", "prod", host="'*.example.com'"),
    dr("exact", "prod", host="api.example.com"),
]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", "prod/exact"),
        ("www.example.com", "prod/example"),
        ("a.b.example.com", "prod/example"),
        ("example.com", "prod/dot-com"),
        ("foo.org", "prod/any"),
        ("*.example.com", "prod/example"),  # a wildcard service host: exact wildcard first
        ("*.foo.example.com", "prod/example"),
        ("*.org", "prod/any"),
    ],
)
def test_most_specific_host_wins(host, expected):
    assert chosen(WILDCARDS, "prod", host=host) == expected


def test_more_specific_orders_exact_before_wildcard_before_shorter():
    assert more_specific("a.example.com", "*.example.com")
    assert more_specific("*.a.example.com", "*.example.com")
    assert not more_specific("*", "*.com")


SELECTOR = "workloadSelector: {matchLabels: {app: productpage}}"


def test_workload_selector_rule_applies_only_to_selected_proxies():
    docs = [dr("selected", "client", extra=SELECTOR), dr("everyone", "client")]
    assert chosen(docs, "client", labels={"app": "productpage", "version": "v1"}) == "client/selected"
    assert chosen(docs, "client", labels={"app": "reviews"}) == "client/everyone"
    assert chosen(docs[:1], "client", labels={"app": "reviews"}) is None


def test_workload_selector_rules_are_never_exported():
    docs = [dr("selected", "prod", extra=SELECTOR)]  # no exportTo: still private (setDestinationRules)
    assert chosen(docs, "prod", labels={"app": "productpage"}) == "prod/selected"
    assert chosen(docs, "client", labels={"app": "productpage"}) is None


def test_rules_for_one_host_in_one_namespace_merge():
    first = dr(
        "a-first",
        "prod",
        extra="""
trafficPolicy: {loadBalancer: {simple: RANDOM}}
subsets:
- {name: v1, labels: {version: v1}}
""",
    )
    second = dr(
        "b-second",
        "prod",
        extra="""
trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
subsets:
- {name: v1, labels: {version: other}}
- {name: v2, labels: {version: v2}}
""",
    )
    snap = snapshot(second, first)
    index = index_destination_rules(snap.of_kind("DestinationRule"), ROOT)
    rule = destination_rule_for(index, "client", {}, RATINGS, "prod")
    assert rule is not None
    assert rule.sources == ("prod/a-first", "prod/b-second")
    assert [(s.name, dict(s.labels)) for s in rule.spec.subsets] == [
        ("v1", {"version": "v1"}),
        ("v2", {"version": "v2"}),
    ]
    assert rule.spec.traffic_policy is not None and rule.spec.traffic_policy.load_balancer is not None
    assert rule.spec.traffic_policy.load_balancer.simple == "RANDOM"


def test_rules_with_different_export_to_stay_apart():
    wide = dr("a-wide", "prod", extra="subsets: [{name: v1, labels: {version: v1}}]")
    narrow = dr("b-narrow", "prod", extra="exportTo: [client]\nsubsets: [{name: v2, labels: {version: v2}}]")
    snap = snapshot(wide, narrow)
    index = index_destination_rules(snap.of_kind("DestinationRule"), ROOT)
    rule = destination_rule_for(index, "third", {}, RATINGS, "prod")
    assert rule is not None and [s.name for s in rule.spec.subsets] == ["v1"]


def test_select_rule_honours_selectors_only_in_the_proxys_namespace():
    snap = snapshot(dr("selected", "prod", extra=SELECTOR), dr("everyone", "prod"))
    index = index_destination_rules(snap.of_kind("DestinationRule"), ROOT)
    candidates = index.namespace_local["prod"].specific[RATINGS]
    labels = {"app": "productpage"}
    assert select_rule(candidates, "prod", labels).name == "selected"
    assert select_rule(candidates, "client", labels).name == "everyone"
    assert select_rule((), "prod", labels) is None
