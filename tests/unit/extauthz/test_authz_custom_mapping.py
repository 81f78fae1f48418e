"""The CUSTOM provider mapping without a network: Envoy's ext_authz HTTP/gRPC rules, header
mutations as the later steps see them, and how a provider's answer merges with ours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from authz_support import load, policy_doc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import wrappers_pb2
from google.rpc import code_pb2, status_pb2

from pilotfish.config.mesh import (
    EnvoyExtAuthzGrpcProvider,
    EnvoyExtAuthzHttpProvider,
    ExtensionProvider,
    MeshConfig,
    RequestBody,
)
from pilotfish.extauthz.attributes import Attributes, HttpRequest, Peer, Workload, normalize_headers
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.custom import (
    ADD,
    ADD_IF_ABSENT,
    OVERWRITE_IF_EXISTS,
    SET,
    HttpMapping,
    ProviderError,
    allowed_with,
    denied_with,
    failure,
    forwarded,
    grpc_answer,
    header_matcher,
    options,
    request_view,
    target,
)
from pilotfish.extauthz.evaluate import PolicyMatch

HTTP = EnvoyExtAuthzHttpProvider(service="ext.foo.svc.cluster.local", port=8000)
OK = status_pb2.Status(code=code_pb2.OK)


def test_target_strips_the_namespace_and_brackets_ipv6():
    assert target("foo/ext.foo.svc.cluster.local", 9000) == "ext.foo.svc.cluster.local:9000"
    assert target("10.0.0.1", 80) == "10.0.0.1:80"
    assert target("::1", 80) == "[::1]:80"


def test_header_patterns_are_prefix_suffix_or_exact_and_ignore_case():
    matches = header_matcher(["X-Auth-*", "*-ID", "Cookie"])
    assert [matches(n) for n in ("x-auth-user", "request-id", "cookie", "COOKIE")] == [True] * 4
    assert [matches(n) for n in ("x-other", "id-request", "cookies")] == [False] * 3
    assert not header_matcher([])("anything")


def http_request(path: str = "/p?q=1", **headers: str) -> HttpRequest:
    return HttpRequest(method="PUT", path=path, host="h:1", headers=normalize_headers(headers))


def test_the_http_request_has_envoys_default_headers_and_no_body_unless_asked():
    mapping = HttpMapping(
        EnvoyExtAuthzHttpProvider(
            service="ns/ext", port=81, path_prefix="/auth", include_additional_headers_in_check={"X-Env": "1"}
        )
    )
    check = external_auth_pb2.CheckRequest()
    check.attributes.request.http.body = "payload"
    call = mapping.check(
        check, http_request(**{":path": "/p", "authorization": "t", "x-env": "client", "x": "y"})
    )
    assert (call.method, str(call.url), call.body) == ("PUT", "http://ext:81/auth/p?q=1", b"")
    assert sorted(call.headers) == [
        ("authorization", "t"),
        ("content-length", "0"),
        ("host", "h:1"),
        ("x-env", "1"),
    ]
    with_body = HttpMapping(
        EnvoyExtAuthzHttpProvider(service="ext", port=81, include_request_body_in_check=RequestBody())
    )
    call = with_body.check(check, http_request())
    assert call.body == b"payload" and ("content-length", "7") in call.headers


def test_only_200_allows_and_5xx_is_a_failure():
    mapping = HttpMapping(HTTP)
    with pytest.raises(ProviderError):
        mapping.answer(503, [], b"")
    assert mapping.answer(204, [], b"").denied_response.status.code == 204  # Envoy: not OK, a deny
    ok = mapping.answer(200, [("X-Envoy-Auth-Headers-To-Remove", "a, B"), ("x-u", "1")], b"")
    assert ok.status.code == code_pb2.OK
    assert list(ok.ok_response.headers_to_remove) == ["a", "b"]
    assert not len(ok.ok_response.headers)  # no headersToUpstreamOnAllow: nothing copied


def test_deny_headers_are_all_but_framing_without_a_list_and_the_list_plus_location_with_one():
    reply = [
        ("Location", "/login"),
        ("Content-Length", "2"),
        ("Set-Cookie", "a"),
        ("Set-Cookie", "b"),
        ("X", "1"),
    ]
    everything = HttpMapping(HTTP).answer(302, reply, b"no")
    assert [(h.header.key, h.header.value) for h in everything.denied_response.headers] == [
        ("location", "/login"),
        ("set-cookie", "a"),
        ("set-cookie", "b"),
        ("x", "1"),
    ]
    assert (everything.denied_response.status.code, everything.denied_response.body) == (302, "no")
    listed = HttpMapping(EnvoyExtAuthzHttpProvider(service="e", port=1, headers_to_downstream_on_deny=("x",)))
    assert [h.header.key for h in listed.answer(401, reply, b"").denied_response.headers] == ["location", "x"]
    assert listed.answer(401, reply, b"").status.code == code_pb2.UNAUTHENTICATED


def option(key: str, value: str, action: int = SET, append: bool | None = None) -> base_pb2.HeaderValueOption:
    out = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value), append_action=action)
    if append is not None:
        out.append.CopyFrom(wrappers_pb2.BoolValue(value=append))
    return out


def test_request_view_applies_the_providers_mutations_like_envoy():
    before = http_request(a="1", b="1", c="1", d="1", gone="1")
    ok = external_auth_pb2.OkHttpResponse(
        headers=[
            option("A", "2"),
            option("b", "2", ADD),
            option("c", "2", ADD_IF_ABSENT),
            option("new", "2", ADD_IF_ABSENT),
            option("d", "2", OVERWRITE_IF_EXISTS),
            option("absent", "2", OVERWRITE_IF_EXISTS),
            option("legacy", "2", ADD, append=False),
            option(":path", "/evil"),
        ],
        headers_to_remove=["Gone"],
    )
    after = request_view(before, ok)
    assert dict(after.headers) == {
        "a": ("2",),
        "b": ("1", "2"),
        "c": ("1",),
        "d": ("2",),
        "new": ("2",),
        "legacy": ("2",),
    }
    assert after.header("b") == "1,2" and after.path == before.path


def test_our_later_steps_win_over_the_providers_mutations():
    provider = external_auth_pb2.CheckResponse(
        status=OK,
        ok_response=external_auth_pb2.OkHttpResponse(
            headers=[option("authorization", "Bearer p"), option("x-sub", "p"), option("x-p", "1")],
            headers_to_remove=["x-jwt", "x-q"],
            response_headers_to_add=[option("x-client", "1", ADD)],
        ),
    )
    ours = external_auth_pb2.CheckResponse(
        status=OK,
        ok_response=external_auth_pb2.OkHttpResponse(
            headers=[option("x-sub", "alice"), option("x-jwt", "payload")],
            headers_to_remove=["authorization"],
        ),
    )
    merged = allowed_with(provider, ours).ok_response
    assert [(h.header.key, h.header.value) for h in merged.headers] == [
        ("x-p", "1"),
        ("x-sub", "alice"),
        ("x-jwt", "payload"),
    ]
    assert list(merged.headers_to_remove) == ["x-q", "authorization"]
    assert [h.header.key for h in merged.response_headers_to_add] == ["x-client"]
    denied = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
        denied_response=external_auth_pb2.DeniedHttpResponse(body="RBAC: access denied"),
    )
    assert [h.header.key for h in denied_with(provider, denied).denied_response.headers] == ["x-client"]


def test_a_grpc_error_response_is_a_failure_shaped_by_the_provider():
    error = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.UNAVAILABLE),
        error_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=503), body="busy", headers=[option("retry-after", "1")]
        ),
    )
    with pytest.raises(ProviderError) as caught:
        grpc_answer(error)
    closed = failure(EnvoyExtAuthzGrpcProvider(status_on_error="500"), caught.value)
    assert (closed.result, closed.allow) == ("failed_closed", False)
    assert (closed.response.denied_response.status.code, closed.response.denied_response.body) == (
        503,
        "busy",
    )
    plain = failure(EnvoyExtAuthzGrpcProvider(status_on_error="500"), ProviderError("refused"))
    assert plain.response.denied_response.status.code == 500
    assert (
        failure(EnvoyExtAuthzGrpcProvider(), ProviderError("refused")).response.denied_response.status.code
        == 403
    )
    opened = failure(EnvoyExtAuthzGrpcProvider(fail_open=True), ProviderError("refused"))
    assert (opened.result, opened.allow, opened.response.status.code) == ("failed_open", True, code_pb2.OK)
    denial = closed.denial("ext", PolicyMatch("foo/c", 0))
    assert (denial.allow, denial.status, denial.policy) == (False, 503, "foo/c")
    assert denial.reason.startswith("CUSTOM: provider ext failed")
    deny = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED))
    assert grpc_answer(deny) is deny  # a plain deny goes to Envoy as the provider wrote it


def test_the_forwarded_check_request_drops_pilotfish_keys_and_the_body_unless_asked():
    request = external_auth_pb2.CheckRequest()
    request.attributes.context_extensions.update({"namespace": "foo", "labels": "{}", "route": "r"})
    request.attributes.request.http.body = "payload"
    plain = forwarded(request, EnvoyExtAuthzGrpcProvider())
    assert (
        dict(plain.attributes.context_extensions) == {"route": "r"}
        and plain.attributes.request.http.body == ""
    )
    assert (
        forwarded(
            request, EnvoyExtAuthzGrpcProvider(include_request_body_in_check=RequestBody())
        ).attributes.request.http.body
        == "payload"
    )
    assert request.attributes.context_extensions["namespace"] == "foo"  # the original is untouched


MESH = MeshConfig(
    extension_providers=(
        ExtensionProvider(
            name="ext",
            envoy_ext_authz_grpc=EnvoyExtAuthzGrpcProvider(
                service="ext", port=9000, timeout=timedelta(seconds=1)
            ),
        ),
    )
)


def custom(provider: str, name: str = "c") -> str:
    spec = {
        "action": "CUSTOM",
        "provider": {"name": provider},
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}],
    }
    return policy_doc(spec, name=name)


def attrs(path: str) -> Attributes:
    return Attributes(Workload("foo", {"app": "httpbin"}), Peer(), HttpRequest(path=path), now=0.0)


def test_the_custom_step_names_a_usable_provider_only_for_a_matching_enforced_rule():
    b = AuthzBundle.build(load(custom("ext")), MESH)
    assert b.custom_step(attrs("/admin")) == ("ext", PolicyMatch("foo/c", 0))
    assert b.custom_step(attrs("/other")) is None
    assert b.ext_authz_provider("ext") == MESH.extension_providers[0].envoy_ext_authz_grpc
    assert AuthzBundle.build(load(custom("missing")), MESH).custom_step(attrs("/admin")) is None
    assert options([("k", "v")], ADD)[0].append_action == ADD
