"""Sidecar scoping as the listeners use it: which Sidecar applies to a proxy, and which services
an egress listener's ``namespace/host`` entries import (``sidecar_scope``, shared with routes)."""

from __future__ import annotations

import pytest
from listeners_builders import client, sidecar
from translate_builders import service_entry, snapshot

from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate.endpoints import visible_services
from pilotfish.xds.translate.sidecar_scope import (
    egress_listeners,
    egress_services,
    scoped_services,
    sidecar_for,
)

SELECTING = sidecar(
    "selecting", "prod", "workloadSelector: {labels: {app: reviews}}\negress: [{hosts: ['./*']}]"
)
NAMESPACE_WIDE = sidecar("namespace-wide", "prod", "egress: [{hosts: ['prod/*']}]")
ROOT = sidecar("default", "istio-system", "egress: [{hosts: ['*/*']}]")


def chosen(snap, **proxy_options) -> str | None:
    found = sidecar_for(snap, client(**proxy_options))
    return None if found is None else f"{found.namespace}/{found.name}"


def test_a_selecting_sidecar_beats_the_namespace_one_which_beats_the_root_one():
    snap = snapshot(SELECTING, NAMESPACE_WIDE, ROOT)
    assert chosen(snap, labels={"app": "reviews", "version": "v1"}) == "prod/selecting"
    assert chosen(snap, labels={"app": "ratings"}) == "prod/namespace-wide"
    assert chosen(snap, namespace="other") == "istio-system/default"
    assert chosen(snapshot(SELECTING), labels={"app": "ratings"}) is None


def test_a_sidecar_in_another_namespace_or_for_a_gateway_does_not_apply():
    elsewhere = sidecar(
        "s", "other", "workloadSelector: {labels: {app: reviews}}\negress: [{hosts: ['*/*']}]"
    )
    snap = snapshot(elsewhere, NAMESPACE_WIDE)
    assert chosen(snap, labels={"app": "reviews"}) == "prod/namespace-wide"
    assert chosen(snap, kind=ProxyType.ROUTER) is None
    assert chosen(snap, namespace="third") is None


def test_without_egress_the_catch_all_applies():
    ingress_only = sidecar("s", "prod", "ingress: [{port: {number: 9080, protocol: HTTP, name: http}}]")
    (listener,) = egress_listeners(sidecar_for(snapshot(ingress_only), client()))
    assert listener.hosts == ("*/*",) and listener.port is None
    assert egress_listeners(None)[0].hosts == ("*/*",)


_SERVICE_DOCS = (
    service_entry("reviews.prod.svc.cluster.local"),
    service_entry("ratings.prod.svc.cluster.local"),
    service_entry("api.example.com", namespace="edge"),
    service_entry("db.data.svc.cluster.local", namespace="data", extra="  exportTo: ['.']"),
    service_entry("cache.data.svc.cluster.local", namespace="data"),
)
SERVICES = snapshot(*_SERVICE_DOCS)


@pytest.mark.parametrize(
    ("hosts", "proxy_namespace", "expected"),
    [
        (["*/*"], "prod", ["cache.data", "api.example.com", "ratings.prod", "reviews.prod"]),
        (["./*"], "prod", ["ratings.prod", "reviews.prod"]),
        (["./*"], "edge", ["api.example.com"]),
        (["data/*"], "prod", ["cache.data"]),  # db is exported to its own namespace only
        (["*/reviews.prod.svc.cluster.local"], "edge", ["reviews.prod"]),
        (["edge/*.example.com"], "prod", ["api.example.com"]),
        (["~/*"], "prod", []),
    ],
)
def test_egress_hosts_import_by_namespace_and_host_within_export_to(hosts, proxy_namespace, expected):
    visible = visible_services(SERVICES, client(namespace=proxy_namespace))
    found = egress_services(visible, hosts, proxy_namespace)
    assert sorted(s.hostname.removesuffix(".svc.cluster.local") for s in found) == sorted(expected)


def test_an_entry_for_a_services_own_namespace_overrides_the_wildcard_namespace():
    visible = visible_services(SERVICES, client())
    found = egress_services(visible, ["*/*", "data/nothing.example.com"], "prod")
    assert "cache.data.svc.cluster.local" not in [s.hostname for s in found]


def test_scoped_services_is_the_union_of_every_egress_listener():
    body = """
egress:
- port: {number: 9080, protocol: HTTP, name: http}
  hosts: ['./reviews.prod.svc.cluster.local']
- hosts: ['edge/*']
"""
    snap = snapshot(*_SERVICE_DOCS, sidecar("s", "prod", body))
    assert sorted(s.hostname for s in scoped_services(snap, client())) == [
        "api.example.com",
        "reviews.prod.svc.cluster.local",
    ]
