"""route_match: HTTPMatchRequest → RouteMatch, as Istio's TranslateRouteMatch builds it."""

from __future__ import annotations

import pytest
from envoy.type.matcher.v3 import string_pb2

from pilotfish.config.networking.virtual_service import HTTPMatchRequest, StringMatch
from pilotfish.xds.translate.route_match import (
    JWT_FILTER,
    RouteMatch,
    header_matcher,
    is_catch_all,
    is_present_match,
    query_parameter_matcher,
    route_match,
    routing_claim,
    string_matcher,
)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (StringMatch(exact="a"), string_pb2.StringMatcher(exact="a")),
        (StringMatch(prefix="b"), string_pb2.StringMatcher(prefix="b")),
        (StringMatch(regex="c+"), string_pb2.StringMatcher(safe_regex={"regex": "c+"})),
        (StringMatch(exact=""), string_pb2.StringMatcher(exact="")),
        (StringMatch(), None),
        (None, None),
    ],
)
def test_each_string_match_kind_has_one_envoy_matcher(match, expected):
    assert string_matcher(match) == expected


@pytest.mark.parametrize(
    ("match", "present"),
    [(None, True), (StringMatch(), True), (StringMatch(regex="*"), True), (StringMatch(regex=".*"), False)],
)
def test_no_kind_or_the_regex_star_means_present(match, present):
    assert is_present_match(match) is present
    assert header_matcher("x", match).present_match is present
    assert query_parameter_matcher("q", match).present_match is present


def test_headers_are_sorted_by_name_with_pseudo_headers_last_in_istio_order():
    match = HTTPMatchRequest(
        headers={"x-b": StringMatch(exact="b"), "x-a": StringMatch(prefix="a")},
        without_headers={"x-c": StringMatch()},
        scheme=StringMatch(exact="https"),
        authority=StringMatch(exact="api"),
        method=StringMatch(exact="GET"),
    )
    names = [h.name for h in route_match(match).headers]
    assert names == ["x-a", "x-b", "x-c", ":method", ":authority", ":scheme"]


def test_without_headers_invert_and_treat_a_missing_header_as_empty_only_for_values():
    match = HTTPMatchRequest(without_headers={"x-absent": StringMatch(), "x-not": StringMatch(exact="v")})
    absent, not_v = route_match(match).headers
    assert absent.invert_match and absent.present_match and not absent.treat_missing_header_as_empty
    assert not_v.invert_match and not_v.treat_missing_header_as_empty and not_v.string_match.exact == "v"


@pytest.mark.parametrize(
    ("uri", "field", "value"),
    [
        (StringMatch(exact="/a"), "path", "/a"),
        (StringMatch(prefix="/b"), "prefix", "/b"),
        (StringMatch(regex="/c.*"), "safe_regex", "/c.*"),
        (None, "prefix", "/"),
    ],
)
def test_the_uri_sets_the_path_specifier(uri, field, value):
    out = route_match(HTTPMatchRequest(uri=uri))
    assert out.WhichOneof("path_specifier") == field
    assert (out.safe_regex.regex if field == "safe_regex" else getattr(out, field)) == value


@pytest.mark.parametrize("ignore", [True, False])
def test_case_sensitivity_is_always_set_from_ignore_uri_case(ignore):
    out = route_match(HTTPMatchRequest(uri=StringMatch(prefix="/x"), ignore_uri_case=ignore))
    assert out.HasField("case_sensitive") and out.case_sensitive.value is not ignore


def test_no_match_is_the_bare_catch_all():
    out = route_match(None)
    assert out == RouteMatch(prefix="/")
    assert not out.HasField("case_sensitive")


def test_query_parameters_keep_their_order():
    params = {"z": StringMatch(exact="1"), "a": StringMatch()}
    z, a = route_match(HTTPMatchRequest(query_params=params)).query_parameters
    assert (z.name, z.string_match.exact, a.name, a.present_match) == ("z", "1", "a", True)


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        ("@request.auth.claims.group", ("group",)),
        ("@request.auth.claims.a.b", ("a", "b")),
        ("@request.auth.claims[a][b.c]", ("a", "b.c")),
        ("@Request.Auth.Claims.x", ("x",)),
        ("@request.auth.claims", None),
        ("@request.auth.claims.", None),
        ("@request.auth.claims[]", None),
        ("x-claims", None),
    ],
)
def test_routing_claims_follow_istio_to_routing_claim(header, claims):
    assert routing_claim(header) == claims


def test_a_jwt_claim_header_becomes_a_jwt_authn_metadata_matcher():
    match = HTTPMatchRequest(
        headers={"@request.auth.claims.tier.level": StringMatch(prefix="gold")},
        without_headers={"@request.auth.claims.banned": StringMatch(exact="true")},
    )
    out = route_match(match)
    assert not out.headers
    matcher, negated = out.dynamic_metadata
    assert matcher.filter == JWT_FILTER and not matcher.invert
    assert [segment.key for segment in matcher.path] == ["payload", "tier", "level"]
    as_list, as_string = matcher.value.or_match.value_matchers
    assert as_list.list_match.one_of.string_match.prefix == "gold"
    assert as_string.string_match.prefix == "gold"
    assert negated.invert and [s.key for s in negated.path] == ["payload", "banned"]


@pytest.mark.parametrize(
    ("match", "catch_all"),
    [
        (RouteMatch(prefix="/"), True),
        (RouteMatch(safe_regex={"regex": ".*"}), True),
        (RouteMatch(path_separated_prefix="/"), True),
        (RouteMatch(prefix="/a"), False),
        (RouteMatch(path="/"), False),
        (RouteMatch(prefix="/", headers=[{"name": "x", "present_match": True}]), False),
        (RouteMatch(prefix="/", query_parameters=[{"name": "q", "present_match": True}]), False),
        (RouteMatch(prefix="/", dynamic_metadata=[{"filter": "f"}]), False),
    ],
)
def test_catch_all_means_every_path_and_nothing_else(match, catch_all):
    assert is_catch_all(match) is catch_all
