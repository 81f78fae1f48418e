"""Decision → CheckResponse: every field Envoy reads."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from google.rpc import code_pb2

from pilotfish.extauthz.evaluate import RBAC_DENIED, Decision
from pilotfish.extauthz.response import check_response

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def headers(options):
    return [(o.header.key, o.header.value, o.append_action) for o in options]


def test_allow_sets_and_removes_upstream_headers():
    decision = Decision(
        True,
        200,
        "allowed",
        headers_to_set=(("x-jwt-payload", "eyJzdWIiOiJhIn0"), ("x-sub", "alice")),
        headers_to_remove=("authorization",),
    )
    response = check_response(decision)
    assert response.status.code == code_pb2.OK
    assert response.WhichOneof("http_response") == "ok_response"
    ok = response.ok_response
    assert headers(ok.headers) == [
        ("x-jwt-payload", "eyJzdWIiOiJhIn0", OVERWRITE),
        ("x-sub", "alice", OVERWRITE),
    ]
    assert list(ok.headers_to_remove) == ["authorization"]
    assert not ok.response_headers_to_add


def test_rbac_deny_is_403_permission_denied():
    decision = Decision(False, 403, "denied by DENY policy foo/deny rule 0", "foo/deny", 0, body=RBAC_DENIED)
    response = check_response(decision)
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.status.message == "denied by DENY policy foo/deny rule 0"
    assert response.WhichOneof("http_response") == "denied_response"
    denied = response.denied_response
    assert denied.status.code == 403
    assert denied.body == "RBAC: access denied"
    assert not denied.headers


def test_jwt_failure_is_401_unauthenticated_with_challenge():
    challenge = 'Bearer realm="http://h/p", error="invalid_token"'
    decision = Decision(
        False,
        401,
        "JWT: Jwt verification fails",
        body="Jwt verification fails",
        response_headers=(("www-authenticate", challenge),),
    )
    response = check_response(decision)
    assert response.status.code == code_pb2.UNAUTHENTICATED
    denied = response.denied_response
    assert denied.status.code == 401
    assert denied.body == "Jwt verification fails"
    assert headers(denied.headers) == [("www-authenticate", challenge, OVERWRITE)]


def test_audience_failure_is_403_permission_denied():
    response = check_response(Decision(False, 403, "JWT: Audiences in Jwt are not allowed", body="x"))
    assert (response.status.code, response.denied_response.status.code) == (code_pb2.PERMISSION_DENIED, 403)


def test_a_deny_never_carries_a_success_status():
    response = check_response(Decision(False, 200, "inconsistent"))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 403
