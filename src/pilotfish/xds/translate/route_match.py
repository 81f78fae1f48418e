"""An ``HTTPMatchRequest`` → an Envoy ``RouteMatch``, exactly as istiod translates it.

Istio ``pilot/pkg/networking/core/route/route.go``: ``TranslateRouteMatch`` (headers and
withoutHeaders sorted by name, then ``:method``, ``:authority``, ``:scheme``; the uri as path,
prefix or safe_regex; ``case_sensitive`` always set), ``translateHeaderMatch`` and
``translateQueryParamMatch`` (an empty match or the regex ``*`` means "present"),
``translateMetadataMatch`` (``@request.auth.claims.*`` headers become JWT-claim metadata
matchers), ``IsCatchAllRoute``; ``pilot/pkg/networking/util/util.go`` ``ConvertToEnvoyMatch``;
``pkg/jwt/routing.go`` ``ToRoutingClaim``; ``pkg/config/security``/``authz/matcher``
``MetadataListMatcher`` (the extended-JWT form that matches a string claim or a list claim).

JWT-claim matchers read the payload that Envoy's ``jwt_authn`` filter writes; a proxy without that
filter never matches them, so such a route fails closed rather than open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import metadata_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from pilotfish.config.networking.virtual_service import HTTPMatchRequest, StringMatch

RouteMatch: TypeAlias = route_components_pb2.RouteMatch
HeaderMatcher: TypeAlias = route_components_pb2.HeaderMatcher
QueryParameterMatcher: TypeAlias = route_components_pb2.QueryParameterMatcher
StringMatcher: TypeAlias = string_pb2.StringMatcher

CATCH_ALL_PREFIX = "/"
CATCH_ALL_REGEX = ".*"
PRESENT_REGEX = "*"  # not RE2: Istio reads it as "the header is present" (istio/istio#20629)
JWT_CLAIM_HEADER = "@request.auth.claims"
JWT_FILTER = "envoy.filters.http.jwt_authn"  # Istio filters.EnvoyJwtFilterName
JWT_PAYLOAD = "payload"  # Istio filters.EnvoyJwtFilterPayload

# StringMatch kind → the Envoy StringMatcher built from its value (util.ConvertToEnvoyMatch).
STRING_MATCHERS: Mapping[str, Callable[[str], StringMatcher]] = {
    "exact": lambda value: StringMatcher(exact=value),
    "prefix": lambda value: StringMatcher(prefix=value),
    "regex": lambda value: StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value)),
}

# uri StringMatch kind → how it sets the RouteMatch path specifier.
PATH_SPECIFIERS: Mapping[str, Callable[[RouteMatch, str], None]] = {
    "exact": lambda match, value: setattr(match, "path", value),
    "prefix": lambda match, value: setattr(match, "prefix", value),
    "regex": lambda match, value: match.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=value)),
}

# HTTPMatchRequest fields matched as pseudo-headers, in the order Istio appends them.
PSEUDO_HEADERS: tuple[tuple[str, str], ...] = (
    ("method", ":method"),
    ("authority", ":authority"),
    ("scheme", ":scheme"),
)


def match_kind(match: StringMatch | None) -> tuple[str, str] | None:
    """The one kind set on a StringMatch and its value; ``None`` when none is."""
    if match is None:
        return None
    for kind in STRING_MATCHERS:
        value = getattr(match, kind)
        if value is not None:
            return kind, value
    return None


def string_matcher(match: StringMatch | None) -> StringMatcher | None:
    """Istio ``util.ConvertToEnvoyMatch``."""
    kind = match_kind(match)
    return None if kind is None else STRING_MATCHERS[kind[0]](kind[1])


def is_present_match(match: StringMatch | None) -> bool:
    """Istio ``canBeConvertedToPresentMatch``: no kind at all, or the regex ``*``."""
    kind = match_kind(match)
    return kind is None or kind == ("regex", PRESENT_REGEX)


def header_matcher(name: str, match: StringMatch | None) -> HeaderMatcher:
    """Istio ``translateHeaderMatch``."""
    if is_present_match(match):
        return HeaderMatcher(name=name, present_match=True)
    out = HeaderMatcher(name=name)
    matcher = string_matcher(match)
    if matcher is not None:
        out.string_match.CopyFrom(matcher)
    return out


def query_parameter_matcher(name: str, match: StringMatch | None) -> QueryParameterMatcher:
    """Istio ``translateQueryParamMatch``."""
    if is_present_match(match):
        return QueryParameterMatcher(name=name, present_match=True)
    out = QueryParameterMatcher(name=name)
    matcher = string_matcher(match)
    if matcher is not None:
        out.string_match.CopyFrom(matcher)
    return out


def routing_claim(header: str) -> tuple[str, ...] | None:
    """Istio ``jwt.ToRoutingClaim``: the claim path of ``@request.auth.claims.a.b`` or
    ``@request.auth.claims[a][b]``; ``None`` for an ordinary header."""
    if not header.lower().startswith(JWT_CLAIM_HEADER):
        return None
    rest = header[len(JWT_CLAIM_HEADER) :]
    if rest.startswith(".") and len(rest) > 1:
        return tuple(rest[1:].split("."))
    if rest.startswith("[") and rest.endswith("]") and len(rest) > 2:
        return tuple(rest[1:-1].split("]["))
    return None


def jwt_claim_matcher(claims: Iterable[str], match: StringMatch | None) -> metadata_pb2.MetadataMatcher:
    """Istio ``authz.MetadataMatcherForJWTClaims`` (extended JWT): the claim at ``payload.<claims>``
    equals the string, or is a list one of whose items does."""
    value = value_pb2.ValueMatcher(string_match=string_matcher(match) or StringMatcher())
    one_of = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=value))
    path = [metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in (JWT_PAYLOAD, *claims)]
    either = value_pb2.OrMatcher(value_matchers=[one_of, value])
    return metadata_pb2.MetadataMatcher(
        filter=JWT_FILTER, path=path, value=value_pb2.ValueMatcher(or_match=either)
    )


def _add_header_matches(out: RouteMatch, headers: Mapping[str, StringMatch], invert: bool) -> None:
    """Headers (or withoutHeaders when ``invert``): JWT claims as metadata matchers, the rest as
    header matchers; an inverted value match treats a missing header as empty."""
    for name, match in headers.items():
        claims = routing_claim(name)
        if claims is not None:
            metadata = jwt_claim_matcher(claims, match)
            metadata.invert = invert
            out.dynamic_metadata.append(metadata)
            continue
        header = header_matcher(name, match)
        if invert:
            header.invert_match = True
            header.treat_missing_header_as_empty = not is_present_match(match)
        out.headers.append(header)


def route_match(match: HTTPMatchRequest | None) -> RouteMatch:
    """Istio ``TranslateRouteMatch``; ``None`` (a rule without match) is the catch-all ``/``."""
    out = RouteMatch(prefix=CATCH_ALL_PREFIX)
    if match is None:
        return out
    _add_header_matches(out, match.headers, invert=False)
    _add_header_matches(out, match.without_headers, invert=True)
    out.headers.sort(key=lambda header: header.name)
    uri = match_kind(match.uri)
    if uri is not None:
        PATH_SPECIFIERS[uri[0]](out, uri[1])
    out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=not match.ignore_uri_case))
    for field, pseudo in PSEUDO_HEADERS:
        value = getattr(match, field)
        if value is not None:
            out.headers.append(header_matcher(pseudo, value))
    out.query_parameters.extend(query_parameter_matcher(k, v) for k, v in match.query_params.items())
    return out


def is_catch_all(match: RouteMatch) -> bool:
    """Istio ``IsCatchAllRoute``: the path matches everything and nothing else is matched."""
    specifier = match.WhichOneof("path_specifier")
    everything = (
        (specifier == "prefix" and match.prefix == CATCH_ALL_PREFIX)
        or (specifier == "path_separated_prefix" and match.path_separated_prefix == CATCH_ALL_PREFIX)
        or (specifier == "safe_regex" and match.safe_regex.regex == CATCH_ALL_REGEX)
    )
    return everything and not match.headers and not match.query_parameters and not match.dynamic_metadata
