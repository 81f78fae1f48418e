"""VirtualService (networking.istio.io): how requests to a host are matched and routed.

Fields: istio/api ``networking/v1alpha3/virtual_service.proto`` (identical in v1alpha3, v1beta1
and v1). Rules: istio/istio ``pkg/config/validation/validation.go`` (``ValidateVirtualService``,
``validateTLSRoute``, ``validateTCPRoute``, ``validateHTTPRouteDestinations``,
``validateCORSPolicy``, ``validateHTTPFaultInjection``, ``validateHTTPRetry``,
``validateHTTPRedirect``, ``validateHTTPDirectResponse``, ``validateHTTPRewrite``,
``validateGatewayNames``), ``virtualservice.go`` (``validateHTTPRoute``,
``validateHTTPRouteConflict``, ``validateHTTPRouteMatchRequest``) and the CRD's CEL rules.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Int32, Message, Path, UInt32, field
from pilotfish.config.networking.common import Destination, Percent, validate_destination, validate_export_to
from pilotfish.config.resource import Finding, Resource

MESH_GATEWAY = "mesh"
JWT_CLAIM_PREFIX = "@request.auth.claims."


# ---- model ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringMatch(Message):
    """Exactly one of exact, prefix or regex (RE2); none set means "present" for headers."""

    ONEOFS = (("exact", "prefix", "regex"),)

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


@dataclass(frozen=True, slots=True)
class HeaderOperations(Message):
    set: Mapping[str, str] = field(default_factory=dict)
    add: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Headers(Message):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True, slots=True)
class HTTPMatchRequest(Message):
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=dict)
    port: UInt32 = 0
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    query_params: Mapping[str, StringMatch] = field(default_factory=dict)
    ignore_uri_case: bool = False
    without_headers: Mapping[str, StringMatch] = field(default_factory=dict)
    source_namespace: str = ""
    stat_prefix: str = ""


@dataclass(frozen=True, slots=True)
class HTTPRouteDestination(Message):
    destination: Destination = field(required=True)
    weight: Int32 = 0
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class RouteDestination(Message):
    destination: Destination = field(required=True)
    weight: Int32 = 0


@dataclass(frozen=True, slots=True)
class HTTPRedirect(Message):
    ONEOFS = (("port", "derivePort"),)

    uri: str = ""
    authority: str = ""
    port: UInt32 | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str = ""
    redirect_code: UInt32 = 0
    prefix_rewrite: str = ""  # replaces the matched prefix (with a prefix uri match)


@dataclass(frozen=True, slots=True)
class HTTPBody(Message):
    ONEOFS = (("string", "bytes"),)

    string: str | None = None
    bytes: str | None = None  # base64, as protobuf JSON writes bytes


@dataclass(frozen=True, slots=True)
class HTTPDirectResponse(Message):
    status: UInt32 = field(required=True)
    body: HTTPBody | None = None


@dataclass(frozen=True, slots=True)
class Delegate(Message):
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class RegexRewrite(Message):
    match: str = ""
    rewrite: str = ""


@dataclass(frozen=True, slots=True)
class HTTPRewrite(Message):
    uri: str = ""
    authority: str = ""
    uri_regex_rewrite: RegexRewrite | None = None


@dataclass(frozen=True, slots=True)
class HTTPRetry(Message):
    attempts: Int32 = 0
    per_try_timeout: timedelta | None = None
    retry_on: str = ""
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: timedelta | None = None


@dataclass(frozen=True, slots=True)
class CorsPolicy(Message):
    allow_origin: tuple[str, ...] = ()  # deprecated exact origins
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: timedelta | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] = "UNSPECIFIED"


@dataclass(frozen=True, slots=True)
class FaultDelay(Message):
    ONEOFS = (("fixedDelay", "exponentialDelay"),)

    fixed_delay: timedelta | None = None
    exponential_delay: timedelta | None = None
    percentage: Percent | None = None
    percent: Int32 = 0  # deprecated integer percentage


@dataclass(frozen=True, slots=True)
class FaultAbort(Message):
    ONEOFS = (("httpStatus", "grpcStatus", "http2Error"),)

    http_status: Int32 | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None


@dataclass(frozen=True, slots=True)
class HTTPFaultInjection(Message):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True)
class HTTPMirrorPolicy(Message):
    destination: Destination = field(required=True)
    percentage: Percent | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute(Message):
    # The CRD knows the deprecated mirror percent under two JSON names, "mirror_percent" and
    # "mirrorPercent"; each is its own attribute here so either spelling decodes, never both.
    ONEOFS = (("mirror_percent", "mirrorPercent"),)

    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: timedelta | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    mirror_percent: UInt32 | None = field(default=None, json="mirror_percent")
    mirrorPercent: UInt32 | None = None  # noqa: N815 - the JSON name is the attribute name
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    @property
    def deprecated_mirror_percent(self) -> int | None:
        """The deprecated integer mirror percent, whichever JSON name set it."""
        return self.mirror_percent if self.mirror_percent is not None else self.mirrorPercent


@dataclass(frozen=True, slots=True)
class TLSMatchAttributes(Message):
    sni_hosts: tuple[str, ...] = field(required=True)
    destination_subnets: tuple[str, ...] = ()
    port: UInt32 = 0
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str = ""


@dataclass(frozen=True, slots=True)
class TLSRoute(Message):
    match: tuple[TLSMatchAttributes, ...] = field(required=True)
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class L4MatchAttributes(Message):
    destination_subnets: tuple[str, ...] = ()
    port: UInt32 = 0
    source_subnet: str = ""
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str = ""


@dataclass(frozen=True, slots=True)
class TCPRoute(Message):
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualServiceSpec(Message):
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    export_to: tuple[str, ...] = ()

    @property
    def is_delegate(self) -> bool:
        """A VirtualService without hosts is a delegate, only reachable from another's ``delegate``."""
        return not self.hosts

    @property
    def applies_to_gateway(self) -> bool:
        """Bound to gateways and not to the mesh (Istio ``isGateway``)."""
        return bool(self.gateways) and MESH_GATEWAY not in self.gateways


# ---- tables --------------------------------------------------------------------------------------

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})

# Envoy x-envoy-retry-on and x-envoy-retry-grpc-on policies (Istio ``supportedRetryOnPolicies``).
RETRY_ON_POLICIES = frozenset(
    (
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    )
)

# HTTP status codes with a registered reason phrase (Go ``http.StatusText``), valid in retryOn.
HTTP_STATUS_CODES = frozenset(
    {100, 101, 102, 103, *range(200, 209), 226, *range(300, 306), 307, 308, *range(400, 419)}
    | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451, *range(500, 509), 510, 511}
)

GRPC_STATUSES = frozenset(
    (
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    )
)

# What an HTTP route does: Istio forbids these pairs together (``validateHTTPRouteConflict``).
ROUTE_CONFLICTS: tuple[tuple[str, str], ...] = (
    ("redirect", "route"),
    ("redirect", "fault"),
    ("redirect", "rewrite"),
    ("redirect", "directResponse"),
    ("directResponse", "route"),
    ("directResponse", "fault"),
    ("directResponse", "rewrite"),
    ("mirror", "mirrors"),
)

DIRECT_RESPONSE_MAX = 1024 * 1024
DIRECT_RESPONSE_WARN = 100 * 1024


# ---- small checks --------------------------------------------------------------------------------


def http_status(status: int) -> str | None:
    """Envoy takes abort and direct-response statuses in [200, 600)."""
    return None if 200 <= status <= 599 else f"HTTP status {status} is not in range 200-599"


def percentage(value: Percent | None) -> str | None:
    """Istio ``validatePercentage``: 0, or within [0.0001, 100]."""
    if value is None:
        return None
    v = value.value
    if v < 0 or v > 100 or 0 < v < 0.0001:
        return f"percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


def gateway_name(name: str) -> tuple[str | None, str | None]:
    """Istio ``validateGatewayNames`` for one name → (error, warning)."""
    namespace, slash, gateway = name.partition("/")
    if not slash:
        warning = None
        if "." in name:
            parts = name.split(".")
            warning = (
                f"using legacy gatewayName format {name!r}; prefer <namespace>/<name>: {parts[1]}/{parts[0]}"
            )
        return checks.fqdn(name), warning
    if not namespace or not gateway:
        return "config namespace and gateway name cannot be empty", None
    if checks.dns1123_label(namespace):
        return f"invalid value for namespace: {namespace!r}", None
    if checks.dns1123_label(gateway):
        return f"invalid value for gateway name: {gateway!r}", None
    return None, None


def gateway_names(names: Iterable[str], path: Path) -> Iterator[Finding]:
    for i, name in enumerate(names):
        error, warning = gateway_name(name)
        if error:
            yield Finding((*path, i), error)
        if warning:
            yield Finding((*path, i), warning, "warning")


def string_match(
    match: StringMatch | None, path: Path, *, empty_prefix_ok: bool = False
) -> Iterator[Finding]:
    """Istio ``validateStringMatch``: a non-empty prefix (URIs may match the empty prefix) and a
    non-empty RE2 regex."""
    if match is None:
        return
    if match.prefix == "" and not empty_prefix_ok:
        yield Finding((*path, "prefix"), "prefix string match should not be empty")
    if match.regex is not None:
        problem = (
            "regex string match should not be empty" if not match.regex else checks.re2_regex(match.regex)
        )
        yield from checks.findings(((*path, "regex"), problem))


def header_match_name(name: str) -> str | None:
    """A header name, or the ``@request.auth.claims.NAME`` JWT-claim form."""
    if name.startswith(JWT_CLAIM_PREFIX) and len(name) > len(JWT_CLAIM_PREFIX):
        return None
    return checks.http_header_name(name)


def durations(pairs: Iterable[tuple[Path, timedelta | None]]) -> Iterator[Finding]:
    for path, value in pairs:
        if value is not None:
            yield from checks.findings((path, checks.duration(value)))


# ---- header manipulation -------------------------------------------------------------------------


def _is_authority(name: str) -> bool:
    return name.lower() in (":authority", "host")


def _request_set_name(name: str) -> str | None:
    """Istio ``ValidateHTTPHeaderWithAuthorityOperationName``: the authority may be set."""
    if not name:
        return "header name cannot be empty"
    if (name.startswith(":") or name.lower() == "host") and not _is_authority(name):
        return f"invalid header {name!r}: header cannot have ':' prefix"
    return None


def _operation_name(name: str) -> str | None:
    """Istio ``ValidateHTTPHeaderOperationName``: no Host, no pseudo-headers."""
    if not name:
        return "header name cannot be empty"
    if name.lower() == "host":
        return f"invalid header {name!r}: cannot set Host header"
    if name.startswith(":"):
        return f"invalid header {name!r}: header cannot have ':' prefix"
    return None


def _header_operations(ops: HeaderOperations | None, path: Path, *, request: bool) -> Iterator[Finding]:
    if ops is None:
        return
    name_check = _request_set_name if request else _operation_name
    for op in ("set", "add"):
        for name, value in getattr(ops, op).items():
            where = (*path, op, name)
            yield from checks.findings((where, name_check(name)), (where, checks.http_header_value(value)))
    for i, name in enumerate(ops.remove):
        yield from checks.findings(((*path, "remove", i), _operation_name(name)))


def validate_headers(headers: Headers | None, path: Path) -> Iterator[Finding]:
    if headers is None:
        return
    yield from _header_operations(headers.request, (*path, "request"), request=True)
    yield from _header_operations(headers.response, (*path, "response"), request=False)


def _authority_rewrites(route: HTTPRoute, path: Path) -> Iterator[Finding]:
    """Istio ``validateAuthorityRewrite``: the authority is rewritten in one place only."""
    request = route.headers.request if route.headers else None
    sources = [route.rewrite.authority] if route.rewrite and route.rewrite.authority else []
    for op in ("set", "add"):
        values = getattr(request, op) if request else {}
        sources += [v for k, v in values.items() if _is_authority(k)]
    if len(sources) > 1:
        yield Finding((*path, "headers"), f"authority header cannot be set multiple times: {sources}")


# ---- HTTP routes ---------------------------------------------------------------------------------


def _present(route: HTTPRoute) -> set[str]:
    values = {
        "redirect": route.redirect,
        "route": route.route or None,
        "fault": route.fault,
        "rewrite": route.rewrite,
        "directResponse": route.direct_response,
        "mirror": route.mirror,
        "mirrors": route.mirrors or None,
    }
    return {name for name, value in values.items() if value is not None}


def route_conflicts(route: HTTPRoute, path: Path, *, in_delegate: bool) -> Iterator[Finding]:
    """Istio ``validateHTTPRouteConflict``."""
    present = _present(route)
    if route.delegate is not None and not in_delegate:
        for name in ("redirect", "route"):
            if name in present:
                yield Finding((*path, name), f"root HTTP route with delegate must not specify {name}")
        return
    if in_delegate and route.delegate is not None:
        yield Finding((*path, "delegate"), "delegate HTTP route cannot contain delegate")
    for first, second in ROUTE_CONFLICTS:
        if first in present and second in present:
            yield Finding((*path, second), f"HTTP route cannot contain both {first} and {second}")
    if not present & {"redirect", "directResponse", "route"}:
        yield Finding(path, "HTTP route, redirect or directResponse is required (or delegate)")


def _match_request(match: HTTPMatchRequest, path: Path) -> Iterator[Finding]:
    """Istio ``validateHTTPRouteMatchRequest`` for one match."""
    for name, header in match.headers.items():
        yield from checks.findings(((*path, "headers", name), header_match_name(name)))
        yield from string_match(header, (*path, "headers", name))
    for name, header in match.without_headers.items():
        yield from checks.findings(((*path, "withoutHeaders", name), header_match_name(name)))
        if header.regex != "*":  # "*" means "header present", not a regex
            yield from string_match(header, (*path, "withoutHeaders", name))
    yield from string_match(match.uri, (*path, "uri"), empty_prefix_ok=True)
    for name in ("scheme", "method", "authority"):
        yield from string_match(getattr(match, name), (*path, name))
    for name, param in match.query_params.items():
        yield from string_match(param, (*path, "queryParams", name))
    if match.port:
        yield from checks.findings(((*path, "port"), checks.port_number(match.port)))
    yield from checks.labels(match.source_labels, (*path, "sourceLabels"))
    yield from gateway_names(match.gateways, (*path, "gateways"))
    if match.source_namespace and checks.dns1123_label(match.source_namespace):
        yield Finding(
            (*path, "sourceNamespace"), f"sourceNamespace match {match.source_namespace!r} is invalid"
        )


def _cors(policy: CorsPolicy | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateCORSPolicy``."""
    if policy is None:
        return
    for i, origin in enumerate(policy.allow_origins):
        where = (*path, "allowOrigins", i)
        if not (origin.exact or origin.prefix or origin.regex):
            yield Finding(where, "an allowOrigins entry needs a non-empty exact, prefix or regex")
        else:
            yield from string_match(origin, where)
    for i, method in enumerate(policy.allow_methods):
        if method not in HTTP_METHODS:
            yield Finding((*path, "allowMethods", i), f"{method!r} is not a supported HTTP method")
    for field_name in ("allowHeaders", "exposeHeaders"):
        values = policy.allow_headers if field_name == "allowHeaders" else policy.expose_headers
        for i, name in enumerate(values):
            problem = None if name == "*" else checks.http_header_name(name)
            yield from checks.findings(((*path, field_name, i), problem))
    if policy.max_age is not None:
        yield from durations((((*path, "maxAge"), policy.max_age),))
        if policy.max_age % timedelta(seconds=1):
            yield Finding((*path, "maxAge"), "max_age duration is accurate only to seconds precision")


def _abort(abort: FaultAbort, path: Path) -> Iterator[Finding]:
    yield from checks.findings(((*path, "percentage"), percentage(abort.percentage)))
    if abort.http_status is not None:
        yield from checks.findings(((*path, "httpStatus"), http_status(abort.http_status)))
    elif abort.grpc_status is not None:
        if abort.grpc_status not in GRPC_STATUSES:
            yield Finding((*path, "grpcStatus"), f"gRPC status {abort.grpc_status!r} is not supported")
    elif abort.http2_error is not None:
        yield Finding((*path, "http2Error"), "HTTP/2 abort fault injection is not supported yet")
    else:
        yield Finding(path, "abort needs httpStatus or grpcStatus")


def _delay(delay: FaultDelay, path: Path) -> Iterator[Finding]:
    yield from checks.findings(((*path, "percentage"), percentage(delay.percentage)))
    if not 0 <= delay.percent <= 100:
        yield Finding((*path, "percent"), f"percentage {delay.percent} is not in range 0..100")
    if delay.exponential_delay is not None:
        yield Finding((*path, "exponentialDelay"), "exponentialDelay is not supported yet")
    elif delay.fixed_delay is None:
        yield Finding(path, "delay needs fixedDelay")
    yield from durations((((*path, "fixedDelay"), delay.fixed_delay),))


def _fault(fault: HTTPFaultInjection | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateHTTPFaultInjection``."""
    if fault is None:
        return
    if fault.abort is None and fault.delay is None:
        yield Finding(path, "HTTP fault injection must have an abort and/or a delay")
    if fault.abort is not None:
        yield from _abort(fault.abort, (*path, "abort"))
    if fault.delay is not None:
        yield from _delay(fault.delay, (*path, "delay"))


def _mirrors(route: HTTPRoute, path: Path) -> Iterator[Finding]:
    legacy = route.deprecated_mirror_percent
    if legacy is not None:
        name = "mirror_percent" if route.mirror_percent is not None else "mirrorPercent"
        if legacy > 100:
            yield Finding((*path, name), f"mirror percent must have a max value of 100 (it has {legacy})")
        yield Finding((*path, name), 'deprecated setting "mirrorPercent"; use "mirrorPercentage"', "warning")
    if route.mirror_percentage is not None and not 0 <= route.mirror_percentage.value <= 100:
        yield Finding((*path, "mirrorPercentage"), "mirror percentage must be within 0..100")
    if route.mirror is not None:
        yield from validate_destination(route.mirror, (*path, "mirror"))
    for i, mirror in enumerate(route.mirrors):
        yield from validate_destination(mirror.destination, (*path, "mirrors", i, "destination"))
        if mirror.percentage is not None and not 0 <= mirror.percentage.value <= 100:
            yield Finding((*path, "mirrors", i, "percentage"), "mirror percentage must be within 0..100")


def _redirect(redirect: HTTPRedirect | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateHTTPRedirect``."""
    if redirect is None:
        return
    if not any((redirect.uri, redirect.authority, redirect.scheme, redirect.prefix_rewrite)) and (
        redirect.port is None and redirect.derive_port is None
    ):
        yield Finding(path, "redirect must specify uri, authority, scheme, or port")
    if redirect.redirect_code and not 300 <= redirect.redirect_code <= 399:
        yield Finding(
            (*path, "redirectCode"), f"{redirect.redirect_code} is not a valid redirect code, must be 3xx"
        )
    if redirect.scheme not in ("", "http", "https"):
        yield Finding((*path, "scheme"), 'invalid redirect scheme, must be "http" or "https"')
    if redirect.port is not None:
        yield from checks.findings(((*path, "port"), checks.port_number(redirect.port)))


def _body_size(body: HTTPBody) -> int | str:
    if body.bytes is None:
        return len((body.string or "").encode())
    try:
        return len(base64.b64decode(body.bytes, validate=True))
    except ValueError:  # binascii.Error, or non-ASCII text
        return "bytes must be base64-encoded"


def _direct_response(response: HTTPDirectResponse | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateHTTPDirectResponse``."""
    if response is None:
        return
    yield from checks.findings(((*path, "status"), http_status(response.status)))
    if response.body is None:
        return
    size = _body_size(response.body)
    if isinstance(size, str):
        yield Finding((*path, "body", "bytes"), size)
    elif size > DIRECT_RESPONSE_MAX:
        yield Finding((*path, "body"), "large direct responses must be less than 1MB")
    elif size > DIRECT_RESPONSE_WARN:
        yield Finding(
            (*path, "body"), "large direct responses may impact control plane performance", "warning"
        )


def _retries(retries: HTTPRetry | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateHTTPRetry``."""
    if retries is None:
        return
    if retries.attempts < 0:
        yield Finding((*path, "attempts"), "attempts cannot be negative")
    configured = (
        retries.per_try_timeout is not None or retries.retry_on or retries.retry_remote_localities is not None
    )
    if retries.attempts == 0 and configured:
        yield Finding(
            (*path, "attempts"), "http retry policy configured when attempts are set to 0 (disabled)"
        )
    yield from durations(
        (((*path, "perTryTimeout"), retries.per_try_timeout), ((*path, "backoff"), retries.backoff))
    )
    for policy in filter(None, retries.retry_on.split(",")):
        code = int(policy) if policy.isascii() and policy.isdigit() else -1
        if code not in HTTP_STATUS_CODES and policy not in RETRY_ON_POLICIES:
            yield Finding((*path, "retryOn"), f"{policy!r} is not a valid retryOn policy")


def _rewrite(rewrite: HTTPRewrite | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateHTTPRewrite``."""
    if rewrite is None:
        return
    regex = rewrite.uri_regex_rewrite
    if rewrite.uri and regex is not None:
        yield Finding(path, "rewrite may only contain one of uri or uriRegexRewrite")
    if not rewrite.uri and regex is None and not rewrite.authority:
        yield Finding(path, "rewrite must specify at least one of uri, uriRegexRewrite, or authority")
    if regex is not None:
        if not regex.match or not regex.rewrite:
            yield Finding((*path, "uriRegexRewrite"), "uriRegexRewrite requires both match and rewrite")
        elif problem := checks.re2_regex(regex.match):
            yield Finding((*path, "uriRegexRewrite", "match"), problem)


def weighted_destinations(
    routes: Sequence[HTTPRouteDestination | RouteDestination], path: Path
) -> Iterator[Finding]:
    """Istio ``validate(HTTP)RouteDestinations``: each destination valid, weights ≥ 0 and, with
    more than one destination, not all 0. (Istio does not require a sum of 100: Envoy's weighted
    clusters take any total, so 1:3 means 25%/75%.)"""
    for i, dest in enumerate(routes):
        yield from validate_destination(dest.destination, (*path, i, "destination"))
        if dest.weight < 0:
            yield Finding((*path, i, "weight"), f"weight {dest.weight} < 0")
        if isinstance(dest, HTTPRouteDestination):
            yield from validate_headers(dest.headers, (*path, i, "headers"))
    if len(routes) > 1 and sum(d.weight for d in routes) == 0:
        yield Finding(path, "total destination weight = 0")


def validate_http_route(route: HTTPRoute, path: Path, *, in_delegate: bool) -> Iterator[Finding]:
    """Istio ``validateHTTPRoute``."""
    yield from route_conflicts(route, path, in_delegate=in_delegate)
    for i, match in enumerate(route.match):
        yield from _match_request(match, (*path, "match", i))
    yield from validate_headers(route.headers, (*path, "headers"))
    yield from _cors(route.cors_policy, (*path, "corsPolicy"))
    yield from _fault(route.fault, (*path, "fault"))
    yield from _mirrors(route, path)
    yield from _redirect(route.redirect, (*path, "redirect"))
    yield from _direct_response(route.direct_response, (*path, "directResponse"))
    yield from _retries(route.retries, (*path, "retries"))
    yield from _rewrite(route.rewrite, (*path, "rewrite"))
    yield from _authority_rewrites(route, path)
    yield from weighted_destinations(route.route, (*path, "route"))
    yield from durations((((*path, "timeout"), route.timeout),))
    if route.delegate is not None and not route.delegate.name:
        yield Finding((*path, "delegate", "name"), "delegate needs the name of a VirtualService")


# ---- TLS and TCP routes --------------------------------------------------------------------------


def _l4_match(match: TLSMatchAttributes | L4MatchAttributes, path: Path) -> Iterator[Finding]:
    for i, subnet in enumerate(match.destination_subnets):
        yield from checks.findings(((*path, "destinationSubnets", i), checks.ip_subnet(subnet)))
    if match.port:
        yield from checks.findings(((*path, "port"), checks.port_number(match.port)))
    yield from checks.labels(match.source_labels, (*path, "sourceLabels"))
    yield from gateway_names(match.gateways, (*path, "gateways"))


def _sni_host(sni: str, spec: VirtualServiceSpec, path: Path) -> Iterator[Finding]:
    """Istio ``validateSniHost``: a domain that is a subset of one of the VirtualService's hosts."""
    if checks.wildcard_domain(sni) is not None:
        if checks.is_ip(sni):
            yield Finding(path, f"using an IP address ({sni!r}) as SNI goes against the SNI spec", "warning")
        else:
            yield Finding(path, checks.wildcard_domain(sni) or "")
        return
    if not any(checks.host_subset_of(sni, host) for host in spec.hosts):
        yield Finding(
            path, f"SNI host {sni!r} is not a compatible subset of any of the virtual service hosts"
        )


def _tls_route(route: TLSRoute, spec: VirtualServiceSpec, path: Path) -> Iterator[Finding]:
    if not route.match:
        yield Finding((*path, "match"), "TLS route must have at least one match condition")
    for i, match in enumerate(route.match):
        where = (*path, "match", i)
        if not match.sni_hosts:
            yield Finding((*where, "sniHosts"), "TLS match must have at least one SNI host")
        for j, sni in enumerate(match.sni_hosts):
            yield from _sni_host(sni, spec, (*where, "sniHosts", j))
        yield from _l4_match(match, where)
    if not route.route:
        yield Finding((*path, "route"), "TLS route is required")
    yield from weighted_destinations(route.route, (*path, "route"))


def _tcp_route(route: TCPRoute, path: Path) -> Iterator[Finding]:
    for i, match in enumerate(route.match):
        yield from _l4_match(match, (*path, "match", i))
        if match.source_subnet:
            yield from checks.findings(
                ((*path, "match", i, "sourceSubnet"), checks.ip_subnet(match.source_subnet))
            )
    if not route.route:
        yield Finding((*path, "route"), "TCP route is required")
    yield from weighted_destinations(route.route, (*path, "route"))


# ---- the resource --------------------------------------------------------------------------------


def _hosts(spec: VirtualServiceSpec) -> Iterator[Finding]:
    """Hosts are domains (or IPs); ``*`` only for gateways; no two hosts overlap."""
    valid = True
    for i, host in enumerate(spec.hosts):
        problem = checks.wildcard_domain(host)
        if problem and not checks.is_ip(host):
            valid = False
            yield Finding(("hosts", i), problem)
        elif host == "*" and not spec.applies_to_gateway:
            valid = False
            yield Finding(
                ("hosts", i), "wildcard host * is not allowed for virtual services bound to the mesh"
            )
    if not valid:
        return
    for i, a in enumerate(spec.hosts):
        for j in range(i + 1, len(spec.hosts)):
            if checks.host_matches(a, spec.hosts[j]):
                yield Finding(("hosts", j), f"duplicate hosts in virtual service: {a} & {spec.hosts[j]}")


def _delegate_shape(spec: VirtualServiceSpec) -> Iterator[Finding]:
    """A VirtualService without hosts is a delegate: HTTP routes only, no gateways."""
    if not spec.is_delegate:
        return
    for name in ("gateways", "tls", "tcp"):
        if getattr(spec, name):
            yield Finding((name,), f"a VirtualService without hosts is a delegate and must have no {name}")


def _jwt_claim_routes(spec: VirtualServiceSpec) -> Iterator[Finding]:
    """JWT-claim header matches work only on gateways (the claims come from the gateway's JWT filter)."""
    if spec.applies_to_gateway:
        return
    for i, route in enumerate(spec.http):
        for j, match in enumerate(route.match):
            for field_name, headers in (
                ("headers", match.headers),
                ("withoutHeaders", match.without_headers),
            ):
                for key in headers:
                    if key.startswith(JWT_CLAIM_PREFIX):
                        where = ("http", i, "match", j, field_name, key)
                        yield Finding(where, "JWT claim based routing is only supported for gateways")


def _unreachable(routes: tuple[Any, ...], section: str) -> Iterator[Finding]:
    """Warnings for rules no request can reach (Istio ``analyzeUnreachable*Rules``, exact duplicates)."""
    seen: dict[Any, int] = {}
    catch_all = -1
    for i, route in enumerate(routes):
        if not route.match:
            if catch_all >= 0:
                yield Finding(
                    (section, i), "rule not used: only the last rule can have no matches", "warning"
                )
            catch_all = i
            continue
        duplicates = 0
        for j, match in enumerate(route.match):
            key = replace(match, name="") if isinstance(match, HTTPMatchRequest) else match
            key = repr(key)
            if key in seen:
                duplicates += 1
                yield Finding(
                    (section, i, "match", j), f"match is not used (duplicate of rule {seen[key]})", "warning"
                )
            else:
                seen[key] = i
        if duplicates == len(route.match):
            yield Finding((section, i), "rule not used: all matches used by prior rules", "warning")


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: VirtualServiceSpec = resource.spec
    yield from _delegate_shape(spec)
    yield from gateway_names(spec.gateways, ("gateways",))
    yield from _jwt_claim_routes(spec)
    yield from _hosts(spec)
    if not (spec.http or spec.tcp or spec.tls):
        yield Finding((), "http, tcp or tls must be provided in virtual service")
    for i, route in enumerate(spec.http):
        yield from validate_http_route(route, ("http", i), in_delegate=spec.is_delegate)
    for i, tls in enumerate(spec.tls):
        yield from _tls_route(tls, spec, ("tls", i))
    for i, tcp in enumerate(spec.tcp):
        yield from _tcp_route(tcp, ("tcp", i))
    yield from validate_export_to(resource.namespace, spec.export_to, ("exportTo",))
    for section in ("http", "tcp", "tls"):
        yield from _unreachable(getattr(spec, section), section)
