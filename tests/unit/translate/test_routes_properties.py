"""Properties of route translation over generated VirtualServices (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from routes_builders import options

from pilotfish.config.networking.common import Destination
from pilotfish.config.networking.virtual_service import (
    HTTP_STATUS_CODES,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    StringMatch,
    VirtualServiceSpec,
)
from pilotfish.xds.translate.http_routes import build_http_routes
from pilotfish.xds.translate.route_match import is_catch_all
from pilotfish.xds.translate.route_policies import RETRIABLE_STATUS_CODES, retry_policy
from pilotfish.xds.translate.virtual_hosts import dedupe_domains
from pilotfish.xds.translate.virtual_services import AppliedVirtualService

NAMES = st.text("abc-", min_size=0, max_size=4)
PATHS = st.sampled_from(["/", "/a", "/a/b", "/b"])
STRING_MATCHES = st.one_of(
    st.builds(StringMatch, exact=PATHS),
    st.builds(StringMatch, prefix=PATHS),
    st.builds(StringMatch, regex=st.sampled_from([".*", "/a.*", "/[0-9]+"])),
)
MATCHES = st.builds(
    HTTPMatchRequest,
    name=NAMES,
    uri=st.none() | STRING_MATCHES,
    headers=st.dictionaries(
        st.sampled_from(["x-a", "x-b"]), STRING_MATCHES | st.just(StringMatch()), max_size=2
    ),
    port=st.sampled_from([0, 0, 9080, 8080]),
    source_labels=st.dictionaries(st.just("app"), st.sampled_from(["client", "other"]), max_size=1),
)
DESTINATIONS = st.lists(
    st.builds(
        HTTPRouteDestination,
        destination=st.builds(Destination, host=st.sampled_from(["a.example.com", "b.example.com"])),
        weight=st.integers(0, 100),
    ),
    min_size=1,
    max_size=3,
)
RULES = st.builds(
    HTTPRoute, name=NAMES, match=st.lists(MATCHES, max_size=3).map(tuple), route=DESTINATIONS.map(tuple)
)
SERVICES = st.lists(RULES, min_size=1, max_size=5).map(
    lambda rules: AppliedVirtualService(
        "vs", "prod", "networking.istio.io/v1", VirtualServiceSpec(hosts=("a",), http=tuple(rules))
    )
)


@settings(max_examples=300, deadline=None)
@given(SERVICES)
def test_only_the_last_route_can_be_a_catch_all(service):
    routes = build_http_routes(service, options(client=None))
    catch_alls = [i for i, route in enumerate(routes) if is_catch_all(route.match)]
    assert catch_alls in ([], [len(routes) - 1])


@settings(max_examples=300, deadline=None)
@given(SERVICES)
def test_routes_follow_the_rules_in_order_and_never_outnumber_the_matches(service):
    routes = build_http_routes(service, options())
    expected_names = [
        f"{rule.name}.{match.name}" if match is not None and match.name else rule.name
        for rule in service.spec.http
        for match in rule.match or (None,)
    ]
    names = [route.name for route in routes]
    position = 0
    for name in names:  # names appear as a subsequence of the rules' (rule, match) order
        position = expected_names.index(name, position) + 1
    assert len(routes) <= len(expected_names)


@settings(max_examples=300, deadline=None)
@given(SERVICES)
def test_weighted_routes_carry_only_positive_weights(service):
    for route in build_http_routes(service, options()):
        weights = [c.weight.value for c in route.route.weighted_clusters.clusters]
        assert all(weight > 0 for weight in weights)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        HTTPRetry,
        attempts=st.integers(-2, 10),
        retry_on=st.lists(st.sampled_from(["5xx", "reset", "503", "429", "200", "999", " "]), max_size=4).map(
            ",".join
        ),
    ),
    st.booleans(),
)
def test_retry_policies_split_names_from_status_codes(retries, consistent_hash):
    policy = retry_policy(retries, consistent_hash)
    if retries.attempts <= 0:
        assert policy is None
        return
    assert policy.num_retries.value == retries.attempts
    assert set(policy.retriable_status_codes) <= HTTP_STATUS_CODES
    names = [n for n in policy.retry_on.split(",") if n]
    assert not any(n.isdigit() and int(n) in HTTP_STATUS_CODES for n in names)
    assert not policy.retriable_status_codes or RETRIABLE_STATUS_CODES in names


@given(st.lists(st.lists(st.sampled_from(["a", "A", "b", "c.com", "C.com"]), max_size=4), max_size=4))
def test_a_domain_is_never_claimed_twice(groups):
    claimed: set[str] = set()
    kept = [d.lower() for group in groups for d in dedupe_domains(group, claimed, [], set())]
    assert len(kept) == len(set(kept))
