"""route_policies: retries (retry.go), timeouts, faults, CORS, mirrors and header operations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.v3 import percent_pb2

from pilotfish.config.networking.common import Destination, Percent
from pilotfish.config.networking.virtual_service import (
    CorsPolicy,
    FaultAbort,
    FaultDelay,
    HeaderOperations,
    Headers,
    HTTPFaultInjection,
    HTTPMirrorPolicy,
    HTTPRetry,
    HTTPRoute,
    StringMatch,
)
from pilotfish.xds.translate.route_policies import (
    DEFAULT_RETRY_ON,
    PREVIOUS_HOSTS_PREDICATE,
    PREVIOUS_PRIORITIES,
    cors_filter_config,
    fault_filter_config,
    header_operations,
    mirror_fraction,
    mirror_policy_fraction,
    parse_retry_on,
    percent_fraction,
    retry_policy,
    set_timeout,
)

MILLION = percent_pb2.FractionalPercent.MILLION
HUNDRED = percent_pb2.FractionalPercent.HUNDRED
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def predicates(policy) -> list[str]:
    return [p.name for p in policy.retry_host_predicate]


# ---- retries ---------------------------------------------------------------------------------------


def test_without_retries_a_route_gets_the_mesh_default():
    policy = retry_policy(None, consistent_hash=False)
    assert policy.retry_on == DEFAULT_RETRY_ON
    assert policy.num_retries.value == 2
    assert policy.host_selection_retry_max_attempts == 5
    assert predicates(policy) == [PREVIOUS_HOSTS_PREDICATE]


def test_a_consistent_hash_keeps_retries_on_the_same_host():
    assert predicates(retry_policy(None, consistent_hash=True)) == []
    assert predicates(retry_policy(HTTPRetry(attempts=3), consistent_hash=True)) == []


@pytest.mark.parametrize("attempts", [0, -1])
def test_zero_attempts_turn_retries_off(attempts):
    assert retry_policy(HTTPRetry(attempts=attempts), consistent_hash=False) is None


def test_attempts_and_per_try_timeout_override_the_default():
    policy = retry_policy(HTTPRetry(attempts=5, per_try_timeout=timedelta(milliseconds=250)), False)
    assert policy.num_retries.value == 5
    assert policy.per_try_timeout.ToTimedelta() == timedelta(milliseconds=250)
    assert policy.retry_on == DEFAULT_RETRY_ON and predicates(policy) == [PREVIOUS_HOSTS_PREDICATE]


@pytest.mark.parametrize(
    ("retry_on", "names", "codes"),
    [
        ("5xx", "5xx", []),
        ("5xx, 503 ,reset", "5xx,reset,retriable-status-codes", [503]),
        ("503,429", ",retriable-status-codes", [503, 429]),
        ("retriable-status-codes,500", "retriable-status-codes", [500]),
        ("999,gateway-error", "999,gateway-error", []),
        (",,connect-failure,", "connect-failure", []),
    ],
)
def test_status_codes_in_retry_on_become_retriable_status_codes(retry_on, names, codes):
    policy = retry_policy(HTTPRetry(attempts=1, retry_on=retry_on), False)
    assert policy.retry_on == names
    assert list(policy.retriable_status_codes) == codes


def test_parse_retry_on_keeps_only_known_http_status_codes():
    assert parse_retry_on("200,299,499,500,511") == ("299,499", [200, 500, 511])


@pytest.mark.parametrize(("ignore", "expected"), [(True, [PREVIOUS_HOSTS_PREDICATE]), (False, [])])
def test_retry_ignore_previous_hosts_sets_the_predicate_either_way(ignore, expected):
    assert (
        predicates(retry_policy(HTTPRetry(attempts=1, retry_ignore_previous_hosts=ignore), True)) == expected
    )


def test_remote_localities_and_backoff():
    policy = retry_policy(
        HTTPRetry(attempts=2, retry_remote_localities=True, backoff=timedelta(milliseconds=30)), False
    )
    assert policy.retry_priority.name == PREVIOUS_PRIORITIES
    assert policy.retry_back_off.base_interval.ToTimedelta() == timedelta(milliseconds=30)
    assert not retry_policy(HTTPRetry(attempts=2, retry_remote_localities=False), False).HasField(
        "retry_priority"
    )


# ---- timeouts and percentages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "expected"), [(None, timedelta(0)), (timedelta(seconds=3), timedelta(seconds=3))]
)
def test_timeout_defaults_to_none_and_grpc_follows(timeout, expected):
    action = route_components_pb2.RouteAction()
    set_timeout(action, timeout)
    assert action.timeout.ToTimedelta() == expected
    assert action.max_grpc_timeout.ToTimedelta() == expected


@pytest.mark.parametrize(
    ("value", "numerator"), [(50, 500000), (33.33, 333300), (0.57, 5699), (0.0001, 1), (100, 1000000)]
)
def test_percentages_are_millionths_truncated_like_go(value, numerator):
    assert percent_fraction(Percent(value)) == percent_pb2.FractionalPercent(
        numerator=numerator, denominator=MILLION
    )


# ---- faults ---------------------------------------------------------------------------------------


def test_a_delay_uses_its_percentage_or_else_the_integer_percent():
    exact = fault_filter_config(
        HTTPFaultInjection(delay=FaultDelay(fixed_delay=timedelta(seconds=2), percentage=Percent(10)))
    )
    assert exact.delay.fixed_delay.ToTimedelta() == timedelta(seconds=2)
    assert exact.delay.percentage == percent_pb2.FractionalPercent(numerator=100000, denominator=MILLION)
    legacy = fault_filter_config(
        HTTPFaultInjection(delay=FaultDelay(fixed_delay=timedelta(seconds=1), percent=7))
    )
    assert legacy.delay.percentage == percent_pb2.FractionalPercent(numerator=7, denominator=HUNDRED)
    unset = fault_filter_config(HTTPFaultInjection(delay=FaultDelay(fixed_delay=timedelta(seconds=1))))
    assert unset.delay.percentage.numerator == 0


@pytest.mark.parametrize(("status", "code"), [("OK", 0), ("UNAVAILABLE", 14), ("UNAUTHENTICATED", 16)])
def test_a_grpc_abort_names_its_code(status, code):
    fault = fault_filter_config(
        HTTPFaultInjection(abort=FaultAbort(grpc_status=status, percentage=Percent(1)))
    )
    assert fault.abort.grpc_status == code
    assert fault.abort.percentage.numerator == 10000


def test_an_http_abort_without_percentage_sets_none():
    fault = fault_filter_config(HTTPFaultInjection(abort=FaultAbort(http_status=503)))
    assert fault.abort.http_status == 503 and not fault.abort.HasField("percentage")


def test_a_fault_with_nothing_envoy_can_inject_is_left_out():
    exponential = HTTPFaultInjection(delay=FaultDelay(exponential_delay=timedelta(seconds=1)))
    assert fault_filter_config(exponential) is None
    assert fault_filter_config(HTTPFaultInjection(abort=FaultAbort(http2_error="REFUSED"))) is None


# ---- CORS -----------------------------------------------------------------------------------------


def test_cors_translates_every_field():
    policy = CorsPolicy(
        allow_origins=(StringMatch(exact="https://a"), StringMatch(regex="https://.*")),
        allow_origin=("https://ignored",),
        allow_methods=("GET", "POST"),
        allow_headers=("a", "b"),
        expose_headers=("c",),
        max_age=timedelta(minutes=2, seconds=0.5),
        allow_credentials=True,
    )
    out = cors_filter_config(policy)
    assert [m.exact or m.safe_regex.regex for m in out.allow_origin_string_match] == [
        "https://a",
        "https://.*",
    ]
    assert (out.allow_methods, out.allow_headers, out.expose_headers) == ("GET,POST", "a,b", "c")
    assert out.max_age == "120" and out.allow_credentials.value is True
    assert out.filter_enabled.default_value == percent_pb2.FractionalPercent(numerator=100)
    assert out.forward_not_matching_preflights.value is True


def test_cors_legacy_origins_and_unmatched_preflights():
    out = cors_filter_config(CorsPolicy(allow_origin=("https://x",), unmatched_preflights="IGNORE"))
    assert [m.exact for m in out.allow_origin_string_match] == ["https://x"]
    assert out.forward_not_matching_preflights.value is False
    assert not out.HasField("allow_credentials") and out.max_age == ""


# ---- mirrors --------------------------------------------------------------------------------------

MIRROR = Destination(host="shadow")


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (HTTPRoute(mirror=MIRROR), percent_pb2.FractionalPercent(numerator=100)),
        (
            HTTPRoute(mirror=MIRROR, mirror_percentage=Percent(2.5)),
            percent_pb2.FractionalPercent(numerator=25000, denominator=MILLION),
        ),
        (HTTPRoute(mirror=MIRROR, mirror_percentage=Percent(0)), None),
        (HTTPRoute(mirror=MIRROR, mirror_percent=30), percent_pb2.FractionalPercent(numerator=30)),
        (HTTPRoute(mirror=MIRROR, mirrorPercent=0), None),
    ],
)
def test_mirror_percent_defaults_to_all_and_zero_disables(route, expected):
    fraction = mirror_fraction(route)
    assert (fraction.default_value if fraction is not None else None) == expected


def test_mirrors_entries_have_their_own_percentage():
    assert mirror_policy_fraction(HTTPMirrorPolicy(MIRROR)).default_value.numerator == 100
    assert mirror_policy_fraction(HTTPMirrorPolicy(MIRROR, Percent(0))) is None
    assert mirror_policy_fraction(HTTPMirrorPolicy(MIRROR, Percent(1))).default_value.numerator == 10000


# ---- header operations ----------------------------------------------------------------------------


def test_set_comes_before_add_each_sorted_by_name():
    ops = header_operations(
        Headers(request=HeaderOperations(set={"b": "2", "a": "1"}, add={"d": "4", "c": "3"}))
    )
    assert [(o.header.key, o.append_action) for o in ops.request_add] == [
        ("a", OVERWRITE),
        ("b", OVERWRITE),
        ("c", APPEND),
        ("d", APPEND),
    ]


def test_the_authority_is_a_rewrite_not_a_header_and_set_beats_add():
    ops = header_operations(
        Headers(
            request=HeaderOperations(set={":authority": "from-set"}, add={"Host": "from-add", ":path": "/x"})
        )
    )
    assert ops.request_add == () and ops.authority == "from-set"
    assert header_operations(Headers(request=HeaderOperations(add={"host": "added"}))).authority == "added"


def test_response_operations_and_removals_skip_internal_headers():
    ops = header_operations(
        Headers(
            request=HeaderOperations(remove=("x-a", ":path", "Host")),
            response=HeaderOperations(
                set={":authority": "ignored", "x-r": "1"}, remove=("server", ":status")
            ),
        )
    )
    assert ops.request_remove == ("x-a",) and ops.response_remove == ("server",)
    assert [o.header.key for o in ops.response_add] == ["x-r"] and ops.authority == ""
