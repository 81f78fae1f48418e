"""The per-route policies of an HTTP rule: retries, timeouts, fault injection, CORS, mirroring and
header operations — each the way istiod builds it.

Istio ``pilot/pkg/networking/core/route/retry/retry.go`` (``DefaultPolicy``, ``ConvertPolicy``,
``parseRetryOn``): without ``retries`` a route gets the mesh default (2 attempts on
``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes``, the
previous-hosts predicate unless the route hashes consistently, 5 host-selection attempts);
``attempts: 0`` turns retries off; integers in ``retryOn`` become ``retriable_status_codes``.

Istio ``pilot/pkg/networking/core/route/route.go``: ``setTimeout`` (0s when unset, and
``max_grpc_timeout`` follows it), ``TranslateFault`` (fixed delay only; HTTP or gRPC abort;
``percentage`` as a fraction of a million, the deprecated integer ``percent`` of a hundred),
``TranslateCORSPolicy``, ``MirrorPercent``/``MirrorPercentByPolicy`` (100% unless a percentage
is given; an explicit 0 disables the mirror), ``TranslateRequestMirrorPolicyCluster`` and
``TranslateHeadersOperations`` (``set`` overwrites, ``add`` appends, each sorted by name; the
authority is never a header but a host rewrite; pseudo-headers and Host are never touched).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2

from pilotfish.config.networking.common import Percent
from pilotfish.config.networking.virtual_service import (
    HTTP_STATUS_CODES,
    CorsPolicy,
    HeaderOperations,
    Headers,
    HTTPFaultInjection,
    HTTPMirrorPolicy,
    HTTPRetry,
    HTTPRoute,
)
from pilotfish.xds.translate.route_match import string_matcher

RetryPolicy: TypeAlias = route_components_pb2.RetryPolicy
RetryHostPredicate: TypeAlias = route_components_pb2.RetryPolicy.RetryHostPredicate
RetryPriority: TypeAlias = route_components_pb2.RetryPolicy.RetryPriority
RequestMirrorPolicy: TypeAlias = route_components_pb2.RouteAction.RequestMirrorPolicy
RouteAction: TypeAlias = route_components_pb2.RouteAction
HeaderValueOption: TypeAlias = base_pb2.HeaderValueOption
FractionalPercent: TypeAlias = percent_pb2.FractionalPercent

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5
RETRIABLE_STATUS_CODES = "retriable-status-codes"
PREVIOUS_HOSTS_PREDICATE = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"
PREVIOUS_PRIORITIES_UPDATE_FREQUENCY = 2
FULL_PERCENT = 100
CORS_UNMATCHED_PREFLIGHTS_IGNORE = "IGNORE"

# grpc.SupportedGRPCStatus: the gRPC status an abort may name → its code.
GRPC_STATUS_CODES: Mapping[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

# Header operation → Envoy's append action (translateAppendHeaders).
APPEND_ACTIONS: Mapping[str, int] = {
    "set": HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    "add": HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
}


def duration(value: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out


def packed(message: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


# ---- retries (retry.go) ------------------------------------------------------------------------


def default_retry_policy(consistent_hash: bool) -> RetryPolicy:
    """Istio ``DefaultPolicy`` (``DefaultConsistentHashPolicy`` drops the previous-hosts predicate:
    a hashed request must retry on the same host)."""
    policy = RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        host_selection_retry_max_attempts=HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    )
    policy.num_retries.value = DEFAULT_RETRY_ATTEMPTS
    if not consistent_hash:
        policy.retry_host_predicate.append(previous_hosts_predicate())
    return policy


def previous_hosts_predicate() -> RetryHostPredicate:
    predicate = RetryHostPredicate(name=PREVIOUS_HOSTS_PREDICATE)
    predicate.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
    return predicate


def retry_policy(retries: HTTPRetry | None, consistent_hash: bool) -> RetryPolicy | None:
    """Istio ``ConvertPolicy``: the default, overridden by what the VirtualService sets; ``None``
    (no retries) when it sets ``attempts: 0``."""
    policy = default_retry_policy(consistent_hash)
    if retries is None:
        return policy
    if retries.attempts <= 0:
        return None
    policy.num_retries.value = retries.attempts
    if retries.retry_on:
        apply_retry_on(policy, retries.retry_on)
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    if retries.retry_ignore_previous_hosts is not None:
        del policy.retry_host_predicate[:]
        if retries.retry_ignore_previous_hosts:
            policy.retry_host_predicate.append(previous_hosts_predicate())
    if retries.retry_remote_localities:
        policy.retry_priority.CopyFrom(previous_priorities())
    if retries.backoff is not None:
        policy.retry_back_off.base_interval.CopyFrom(duration(retries.backoff))
    return policy


def apply_retry_on(policy: RetryPolicy, retry_on: str) -> None:
    """``retryOn`` names plus status codes; codes imply ``retriable-status-codes``."""
    names, codes = parse_retry_on(retry_on)
    if codes and RETRIABLE_STATUS_CODES not in names:
        names += "," + RETRIABLE_STATUS_CODES
    policy.retry_on = names
    policy.retriable_status_codes.extend(codes)


def parse_retry_on(retry_on: str) -> tuple[str, list[int]]:
    """Istio ``parseRetryOn``: known HTTP status codes apart, everything else joined by commas."""
    names: list[str] = []
    codes: list[int] = []
    for part in (p.strip() for p in retry_on.split(",")):
        if part.isascii() and part.isdigit() and int(part) in HTTP_STATUS_CODES:
            codes.append(int(part))
        elif part:
            names.append(part)
    return ",".join(names), codes


def previous_priorities() -> RetryPriority:
    """Istio ``retryRemoteLocalities``: retry in other priorities (localities) first."""
    priority = RetryPriority(name=PREVIOUS_PRIORITIES)
    config = previous_priorities_config_pb2.PreviousPrioritiesConfig(
        update_frequency=PREVIOUS_PRIORITIES_UPDATE_FREQUENCY
    )
    priority.typed_config.Pack(config)
    return priority


# ---- timeouts (setTimeout) ---------------------------------------------------------------------


def set_timeout(action: RouteAction, timeout: timedelta | None) -> None:
    """Istio ``setTimeout``: the rule's timeout, else 0s (none); gRPC's header timeout follows."""
    value = duration(timeout or timedelta(0))
    action.timeout.CopyFrom(value)
    action.max_grpc_timeout.CopyFrom(value)


# ---- percentages ----------------------------------------------------------------------------------


def percent_fraction(percent: Percent) -> FractionalPercent:
    """Istio ``translatePercentToFractionalPercent``: a percentage in millionths (truncated)."""
    return FractionalPercent(numerator=int(percent.value * 10000), denominator=FractionalPercent.MILLION)


def integer_fraction(percent: int) -> FractionalPercent:
    """Istio ``translateIntegerToFractionalPercent``."""
    return FractionalPercent(numerator=percent, denominator=FractionalPercent.HUNDRED)


# ---- fault injection (TranslateFault) -------------------------------------------------------------


def fault_filter_config(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault | None:
    """Istio ``TranslateFault``; ``None`` when neither a fixed delay nor an abort can be built."""
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and delay.fixed_delay is not None:
        out.delay.fixed_delay.CopyFrom(duration(delay.fixed_delay))
        if delay.percentage is not None:
            chance = percent_fraction(delay.percentage)
        else:
            chance = integer_fraction(delay.percent)
        out.delay.percentage.CopyFrom(chance)
    abort = fault_abort(fault)
    if abort is not None:
        out.abort.CopyFrom(abort)
    return out if out.HasField("delay") or out.HasField("abort") else None


def fault_abort(fault: HTTPFaultInjection) -> fault_pb2.FaultAbort | None:
    abort = fault.abort
    if abort is None:
        return None
    out = fault_pb2.FaultAbort()
    if abort.http_status is not None:
        out.http_status = abort.http_status
    elif abort.grpc_status is not None and abort.grpc_status in GRPC_STATUS_CODES:
        out.grpc_status = GRPC_STATUS_CODES[abort.grpc_status]
    else:
        return None
    if abort.percentage is not None:
        out.percentage.CopyFrom(percent_fraction(abort.percentage))
    return out


# ---- CORS (TranslateCORSPolicy) -------------------------------------------------------------------


def cors_filter_config(policy: CorsPolicy) -> cors_pb2.CorsPolicy:
    """Istio ``TranslateCORSPolicy``: origins as string matchers (``allowOrigins``, else the
    deprecated exact ``allowOrigin``), the filter enabled for every request, lists joined by
    commas, maxAge in whole seconds; preflights that match no origin are forwarded unless
    ``unmatchedPreflights: IGNORE``."""
    out = cors_pb2.CorsPolicy(
        allow_methods=",".join(policy.allow_methods),
        allow_headers=",".join(policy.allow_headers),
        expose_headers=",".join(policy.expose_headers),
    )
    out.forward_not_matching_preflights.value = (
        policy.unmatched_preflights != CORS_UNMATCHED_PREFLIGHTS_IGNORE
    )
    if policy.allow_origins:
        matchers = (string_matcher(origin) for origin in policy.allow_origins)
        out.allow_origin_string_match.extend(m for m in matchers if m is not None)
    else:
        out.allow_origin_string_match.extend(string_matcher_exact(origin) for origin in policy.allow_origin)
    out.filter_enabled.default_value.CopyFrom(integer_fraction(FULL_PERCENT))
    if policy.allow_credentials is not None:
        out.allow_credentials.value = policy.allow_credentials
    if policy.max_age is not None:
        out.max_age = str(int(policy.max_age.total_seconds()))
    return out


def string_matcher_exact(value: str) -> string_pb2.StringMatcher:
    """Istio ``util.StringToExactMatch`` for one origin."""
    return string_pb2.StringMatcher(exact=value)


# ---- mirroring ------------------------------------------------------------------------------------


def mirror_fraction(route: HTTPRoute) -> base_pb2.RuntimeFractionalPercent | None:
    """Istio ``MirrorPercent`` for the single ``mirror``: ``mirrorPercentage``, else the deprecated
    integer percent, else 100%; an explicit 0 means no mirroring (``None``)."""
    if route.mirror_percentage is not None:
        if route.mirror_percentage.value <= 0:
            return None
        return base_pb2.RuntimeFractionalPercent(default_value=percent_fraction(route.mirror_percentage))
    legacy = route.deprecated_mirror_percent
    if legacy is not None:
        return (
            base_pb2.RuntimeFractionalPercent(default_value=integer_fraction(legacy)) if legacy > 0 else None
        )
    return base_pb2.RuntimeFractionalPercent(default_value=integer_fraction(FULL_PERCENT))


def mirror_policy_fraction(mirror: HTTPMirrorPolicy) -> base_pb2.RuntimeFractionalPercent | None:
    """Istio ``MirrorPercentByPolicy`` for one of ``mirrors``."""
    if mirror.percentage is None:
        return base_pb2.RuntimeFractionalPercent(default_value=integer_fraction(FULL_PERCENT))
    if mirror.percentage.value <= 0:
        return None
    return base_pb2.RuntimeFractionalPercent(default_value=percent_fraction(mirror.percentage))


def request_mirror_policy(cluster: str, fraction: base_pb2.RuntimeFractionalPercent) -> RequestMirrorPolicy:
    """Istio ``TranslateRequestMirrorPolicyCluster``: mirrored requests are never trace-sampled."""
    policy = RequestMirrorPolicy(cluster=cluster, runtime_fraction=fraction)
    policy.trace_sampled.value = False
    return policy


# ---- header operations (TranslateHeadersOperations) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderOperationsOut:
    """What a ``Headers`` block becomes on a route or a weighted cluster."""

    request_add: tuple[HeaderValueOption, ...] = ()
    response_add: tuple[HeaderValueOption, ...] = ()
    request_remove: tuple[str, ...] = ()
    response_remove: tuple[str, ...] = ()
    authority: str = ""


def is_internal_header(name: str) -> bool:
    """Istio ``isInternalHeader``: pseudo-headers and Host cannot be set or removed."""
    return name.startswith(":") or name.lower() == "host"


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def header_values(values: Mapping[str, str], operation: str) -> tuple[list[HeaderValueOption], str]:
    """Istio ``translateAppendHeaders``: the options sorted by name, and the authority (last wins)."""
    authority = ""
    options: list[HeaderValueOption] = []
    for name in sorted(values):
        if is_authority_header(name):
            authority = values[name]
        if is_internal_header(name):
            continue
        header = base_pb2.HeaderValue(key=name, value=values[name])
        options.append(HeaderValueOption(header=header, append_action=APPEND_ACTIONS[operation]))
    return options, authority


def header_operations(headers: Headers) -> HeaderOperationsOut:
    """Istio ``TranslateHeadersOperations``: ``set`` before ``add``; an authority in ``set`` wins
    over one in ``add``; response authority values are dropped."""
    request = headers.request or HeaderOperations()
    response = headers.response or HeaderOperations()
    request_set, set_authority = header_values(request.set, "set")
    request_add, add_authority = header_values(request.add, "add")
    response_set, _ = header_values(response.set, "set")
    response_add, _ = header_values(response.add, "add")
    return HeaderOperationsOut(
        request_add=(*request_set, *request_add),
        response_add=(*response_set, *response_add),
        request_remove=tuple(n for n in request.remove if not is_internal_header(n)),
        response_remove=tuple(n for n in response.remove if not is_internal_header(n)),
        authority=set_authority or add_authority,
    )
