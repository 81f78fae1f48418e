"""The Check server over a real gRPC channel on port 0: JWT (RS256) + AuthorizationPolicy flows."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable

import grpc
import pytest
from aiohttp import web
from authz_server_support import RsaKey, bundle, check_request, deny_path, request_authn, require_jwt
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2

from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.server import CheckService, start_server

pytestmark = pytest.mark.integration

KEY = RsaKey()


def serve(b: AuthzBundle, scenario: Callable[..., Awaitable[None]], **service_options) -> None:
    """Run ``scenario(stub, service)`` against a server on 127.0.0.1:0; always stop the server."""

    async def main() -> None:
        service = CheckService(b, **service_options)
        server, port = await start_server(service, "127.0.0.1", 0)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await scenario(external_auth_pb2_grpc.AuthorizationStub(channel), service)
        finally:
            await server.stop(None)

    asyncio.run(main())


INLINE = bundle(
    require_jwt(),
    deny_path("/admin*"),
    request_authn(
        {
            "jwks": KEY.jwks(),
            "outputPayloadToHeader": "x-jwt-payload",
            "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}],
        }
    ),
)


def test_no_token_is_403_and_a_valid_token_is_200_with_jwt_headers():
    token = KEY.token(group="dev")

    async def scenario(stub, service):
        denied = await stub.Check(check_request())
        assert denied.status.code == code_pb2.PERMISSION_DENIED
        assert (denied.denied_response.status.code, denied.denied_response.body) == (
            403,
            "RBAC: access denied",
        )
        allowed = await stub.Check(check_request(token=token))
        assert allowed.status.code == code_pb2.OK
        set_headers = {h.header.key: h.header.value for h in allowed.ok_response.headers}
        payload = token.split(".")[1]
        assert set_headers == {"x-jwt-payload": payload, "x-jwt-sub": "alice"}
        assert json.loads(base64.urlsafe_b64decode(payload + "==="))["group"] == "dev"
        assert list(allowed.ok_response.headers_to_remove) == ["authorization"]

    serve(INLINE, scenario)


@pytest.mark.parametrize(
    ("make_token", "body"),
    [
        (lambda: KEY.token(exp=1_000_000), "Jwt is expired"),
        (lambda: KEY.token(iss="https://evil.example.com"), "Jwt issuer is not configured"),
        (lambda: tamper(KEY.token()), "Jwt verification fails"),
        (lambda: RsaKey("k1").token(), "Jwt verification fails"),  # right kid, wrong key
        # A correctly signed payload nested 10,000 levels deep: a parse failure, not a crash.
        (lambda: KEY.sign_payload(deep_json(10_000)), "Jwt payload is an invalid Base64url encoded JSON"),
    ],
)
def test_bad_tokens_are_401_with_www_authenticate(make_token, body):
    async def scenario(stub, service):
        response = await stub.Check(check_request(path="/get?x=1", token=make_token()))
        assert response.status.code == code_pb2.UNAUTHENTICATED
        denied = response.denied_response
        assert (denied.status.code, denied.body) == (401, body)
        challenge = {h.header.key: h.header.value for h in denied.headers}["www-authenticate"]
        assert challenge == 'Bearer realm="http://httpbin.foo:8000/get", error="invalid_token"'

    serve(INLINE, scenario)


def deep_json(levels: int) -> bytes:
    return b'{"iss":"https://issuer.example.com","a":' + b'{"a":' * levels + b"1" + b"}" * (levels + 1)


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "admin"}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_deny_beats_allow():
    async def scenario(stub, service):
        response = await stub.Check(check_request(path="/admin/users", token=KEY.token()))
        assert response.status.code == code_pb2.PERMISSION_DENIED
        assert response.status.message == "denied by DENY policy foo/deny rule 0"
        assert response.denied_response.body == "RBAC: access denied"

    serve(INLINE, scenario)


def test_a_request_without_workload_is_a_grpc_error_not_an_allow():
    async def scenario(stub, service):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Check(check_request(context={}))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "namespace" in failure.value.details()

    serve(INLINE, scenario)


def test_the_workload_may_come_from_grpc_metadata():
    metadata = (("x-pilotfish-namespace", "foo"), ("x-pilotfish-labels", '{"app": "httpbin"}'))

    async def scenario(stub, service):
        denied = await stub.Check(check_request(context={}), metadata=metadata)
        assert denied.denied_response.body == "RBAC: access denied"
        allowed = await stub.Check(check_request(token=KEY.token(), context={}), metadata=metadata)
        assert allowed.status.code == code_pb2.OK
        elsewhere = (("x-pilotfish-namespace", "bar"),)  # no policy applies in namespace bar
        assert (await stub.Check(check_request(context={}), metadata=elsewhere)).status.code == code_pb2.OK

    serve(INLINE, scenario)


def test_an_internal_failure_is_a_grpc_error_not_an_allow():
    class Broken(AuthzBundle):
        __slots__ = ()

        async def decide_detailed(self, attributes, authenticator):
            raise RuntimeError("boom")

    async def scenario(stub, service):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Check(check_request(token=KEY.token()))
        assert failure.value.code() == grpc.StatusCode.INTERNAL

    serve(Broken(()), scenario)


def test_a_bundle_swap_takes_effect_on_the_next_check():
    async def scenario(stub, service):
        assert (await stub.Check(check_request())).status.code == code_pb2.PERMISSION_DENIED
        service.swap(bundle(deny_path("/nothing")))
        assert (await stub.Check(check_request())).status.code == code_pb2.OK

    serve(INLINE, scenario)


def test_keys_from_a_local_jwks_server():
    hits: list[str] = []

    async def jwks(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=KEY.jwks(), content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/jwks", jwks)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            b = bundle(require_jwt(), request_authn({"jwksUri": f"http://127.0.0.1:{port}/jwks"}))
            service = CheckService(b)
            server, check_port = await start_server(service, "127.0.0.1", 0)
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{check_port}") as channel:
                    stub = external_auth_pb2_grpc.AuthorizationStub(channel)
                    assert (await stub.Check(check_request(token=KEY.token()))).status.code == code_pb2.OK
                    assert (
                        await stub.Check(check_request(token=KEY.token(sub="bob")))
                    ).status.code == code_pb2.OK
                    other = RsaKey("k2").token()  # unknown kid: one rate-limited refetch, then 401
                    denied = await stub.Check(check_request(token=other))
                    assert denied.denied_response.status.code == 401
                    assert denied.denied_response.body == "Jwks doesn't have key to match kid or alg from Jwt"
            finally:
                await server.stop(None)
        finally:
            await runner.cleanup()
        assert hits == ["/jwks", "/jwks"]  # first use, then the unknown-kid refetch; cached in between

    asyncio.run(main())
