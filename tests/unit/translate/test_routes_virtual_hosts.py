"""virtual_hosts: the domains a sidecar's virtual host answers to (Istio generateVirtualHostDomains)."""

from __future__ import annotations

import pytest
from routes_builders import service

from pilotfish.registry.model import Service
from pilotfish.xds.translate.virtual_hosts import (
    alt_virtual_hosts,
    dedupe_domains,
    empty_route_configuration,
    ipv6_compliant,
    service_domains,
)

REVIEWS = "reviews.prod.svc.cluster.local"


@pytest.mark.parametrize(
    ("hostname", "proxy_domain", "expected"),
    [
        (REVIEWS, "prod.svc.cluster.local", [f"{REVIEWS}.", "reviews", "reviews.prod.svc", "reviews.prod"]),
        (REVIEWS, "other.svc.cluster.local", [f"{REVIEWS}.", "reviews.prod", "reviews.prod.svc"]),
        ("api.example.com", "prod.svc.cluster.local", ["api.example.com."]),
        ("svc.cluster.local", "prod.svc.cluster.local", ["svc.cluster.local."]),
        ("foo.local.campus.net", "local.campus.net", ["foo.local.campus.net.", "foo"]),
        (
            "foo.local.campus.net",
            "remote.campus.net",
            ["foo.local.campus.net.", "foo.local", "foo.local.campus"],
        ),
        ("foo.example.org", "campus.net", ["foo.example.org."]),
        ("10.0.0.1", "prod.svc.cluster.local", []),
    ],
)
def test_alternative_names_follow_the_proxys_dns_domain(hostname, proxy_domain, expected):
    assert alt_virtual_hosts(hostname, proxy_domain) == expected


def test_service_domains_add_the_hostname_and_addresses():
    svc = Service(
        REVIEWS,
        "prod",
        service(REVIEWS).ports,
        addresses=("10.0.0.9/32", "10.1.0.0/16", "0.0.0.0", "fd00::1"),
    )
    domains, alt = service_domains(svc, "prod.svc.cluster.local")
    assert domains == [REVIEWS, *alt, "10.0.0.9", "10.1.0.0/16", "[fd00::1]"]


def test_a_domain_is_claimed_once_and_a_short_form_never_shadows_another_services_name():
    claimed: set[str] = set()
    first = dedupe_domains(["a.com", "b"], claimed, alt_hosts=["b"], known_fqdns=set())
    second = dedupe_domains(
        ["A.com", "b", "c.com", "short"], claimed, alt_hosts=["short"], known_fqdns={"short"}
    )
    assert (first, second) == (["a.com", "b"], ["c.com"])


def test_ipv6_addresses_are_bracketed_once():
    assert (ipv6_compliant("fd00::1"), ipv6_compliant("[fd00::1]"), ipv6_compliant("h")) == (
        "[fd00::1]",
        "[fd00::1]",
        "h",
    )


def test_an_empty_configuration_has_no_virtual_hosts_and_does_not_validate_clusters():
    out = empty_route_configuration("x")
    assert out.name == "x" and not out.virtual_hosts and out.validate_clusters.value is False
