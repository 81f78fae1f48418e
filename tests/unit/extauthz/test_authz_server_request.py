"""CheckRequest (Envoy's proto) → Attributes: every field the evaluator reads."""

from __future__ import annotations

import json

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2

from pilotfish.extauthz.request import METADATA_KEYS, BadCheckRequest, check_input, parse_labels

NOW = 1_700_000_000.0


def check_request(**context: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    attrs = request.attributes
    attrs.source.address.socket_address.address = "10.0.0.5"
    attrs.source.address.socket_address.port_value = 41000
    attrs.source.principal = "spiffe://cluster.local/ns/foo/sa/sleep"
    attrs.destination.address.socket_address.address = "10.0.0.9"
    attrs.destination.address.socket_address.port_value = 8000
    http = attrs.request.http
    http.method = "POST"
    http.path = "/api/items?page=2&access_token=t"
    http.host = "httpbin.foo:8000"
    http.headers.update({"authorization": "Bearer abc", "x-multi": "a,b", ":authority": "httpbin.foo:8000"})
    attrs.tls_session.sni = "httpbin.foo.svc.cluster.local"
    attrs.request.time.FromSeconds(1_600_000_123)
    attrs.context_extensions.update(
        context
        or {
            "namespace": "foo",
            "labels": json.dumps({"app": "httpbin", "version": "v1"}),
            "service_account": "httpbin",
            "workload": "httpbin-v1",
        }
    )
    return request


def test_every_field_is_mapped():
    entry = check_input(check_request(), NOW)
    a = entry.attributes
    assert entry.workload_name == "httpbin-v1"
    assert (a.workload.namespace, dict(a.workload.labels)) == ("foo", {"app": "httpbin", "version": "v1"})
    assert (a.workload.service_account, a.workload.ip, a.workload.port) == ("httpbin", "10.0.0.9", 8000)
    assert a.source.principal == "spiffe://cluster.local/ns/foo/sa/sleep"
    assert (a.source.ip, a.source.remote_ip) == ("10.0.0.5", "10.0.0.5")
    assert (a.request.method, a.request.host) == ("POST", "httpbin.foo:8000")
    assert a.request.path == "/api/items?page=2&access_token=t"  # the query stays (reference a.3)
    assert a.request.url_path == "/api/items"
    assert a.request.query_param("access_token") == "t"
    assert a.request.header("authorization") == "Bearer abc"
    assert a.request.headers["x-multi"] == ("a,b",)
    assert a.request.sni == "httpbin.foo.svc.cluster.local"
    assert a.now == 1_600_000_123.0  # Envoy's request.time wins over the server clock


def test_defaults_when_envoy_sends_little():
    request = external_auth_pb2.CheckRequest()
    request.attributes.context_extensions["namespace"] = "bar"
    a = check_input(request, NOW).attributes
    assert a.now == NOW
    assert a.source.principal is None  # plaintext: no peer certificate
    assert (a.source.ip, a.workload.ip, a.workload.port) == (None, None, None)
    assert (a.request.method, a.request.path, a.request.sni) == ("GET", "/", None)
    assert dict(a.workload.labels) == {} and a.workload.service_account == ""
    assert check_input(request, NOW).workload_name == ""


def test_raw_header_map_keeps_repeated_values_and_lowercases():
    request = check_request()
    request.attributes.request.http.ClearField("headers")
    header_map = request.attributes.request.http.header_map
    header_map.headers.add(key="X-Multi", raw_value=b"a")
    header_map.headers.add(key="x-multi", raw_value=b"b")
    header_map.headers.append(base_pb2.HeaderValue(key="Cookie", value="session=1"))
    a = check_input(request, NOW).attributes
    assert a.request.headers["x-multi"] == ("a", "b")
    assert a.request.header("x-multi") == "a,b"
    assert a.request.cookie("session") == "1"


def test_ipv6_and_named_addresses():
    request = check_request()
    request.attributes.source.address.socket_address.address = "::1"
    request.attributes.destination.address.socket_address.address = "localhost"
    a = check_input(request, NOW).attributes
    assert a.source.ip == "::1"
    assert a.workload.ip is None  # a name is not an IP Istio could match


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"labels": "{}"}, "no 'namespace'"),
        ({"namespace": "foo", "labels": "app=x"}, "not JSON"),
        ({"namespace": "foo", "labels": '["x"]'}, "JSON object of strings"),
        ({"namespace": "foo", "labels": '{"a": 1}'}, "JSON object of strings"),
    ],
)
def test_a_request_that_cannot_be_placed_is_rejected(context, message):
    with pytest.raises(BadCheckRequest, match=message):
        check_input(check_request(**context), NOW)


def test_labels_parse_is_memoized_and_immutable():
    first = parse_labels('{"app": "x"}')
    assert first is parse_labels('{"app": "x"}')
    with pytest.raises(TypeError):
        first["app"] = "y"  # type: ignore[index]


LISTENER_METADATA = (
    ("x-pilotfish-namespace", "bar"),
    ("x-pilotfish-labels", '{"app": "reviews"}'),
    ("x-pilotfish-service-account", "reviews"),
    ("x-pilotfish-workload", "reviews-v1"),
    ("user-agent", "envoy"),
)


def test_the_workload_may_come_from_grpc_metadata():
    request = check_request()
    request.attributes.ClearField("context_extensions")
    entry = check_input(request, NOW, LISTENER_METADATA)
    workload = entry.attributes.workload
    assert (workload.namespace, dict(workload.labels), workload.service_account) == (
        "bar",
        {"app": "reviews"},
        "reviews",
    )
    assert entry.workload_name == "reviews-v1"


def test_route_context_extensions_win_over_listener_metadata():
    request = check_request()
    del request.attributes.context_extensions["service_account"]
    entry = check_input(request, NOW, LISTENER_METADATA)
    workload = entry.attributes.workload
    assert (workload.namespace, workload.labels["app"], entry.workload_name) == (
        "foo",
        "httpbin",
        "httpbin-v1",
    )
    assert workload.service_account == "reviews"  # not set by the route: the listener's value


def test_metadata_keys_match_what_the_xds_side_sends():
    from pilotfish.xds.translate.authz import WORKLOAD_KEYS  # here: a broken xds module fails one test

    assert {METADATA_KEYS[header]: key for key, header in WORKLOAD_KEYS.items()} == {
        key: key for key in WORKLOAD_KEYS
    }
