"""CUSTOM policies through the Check server over real gRPC, against real ext_authz providers on
127.0.0.1: a gRPC Authorization servicer and an aiohttp HTTP server, both allowing a request with
``x-ext-authz: allow`` and denying anything else with 403 and a body (Istio's sample ext-authz)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiohttp import web
from authz_server_support import WORKLOAD, RsaKey, bundle, doc, request_authn, require_jwt
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from harness.ports import free_port

from pilotfish.config.mesh import MeshConfig, parse_mesh_config
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.server import CheckService, start_server
from pilotfish.extauthz.tally import CheckTally

pytestmark = pytest.mark.integration

KEY = RsaKey()
DENY_BODY = "denied by ext_authz for testing"
RESULT = "x-ext-authz-check-result"
SET = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


@dataclass
class Providers:
    """The two providers, what they were asked, and how to reach them."""

    grpc_port: int = 0
    http_port: int = 0
    grpc_calls: list[external_auth_pb2.CheckRequest] = field(default_factory=list)
    http_calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends the "slow" answers


class Authorization(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, peers: Providers) -> None:
        self.peers = peers

    async def Check(self, request, context):  # noqa: N802 - the gRPC method name
        self.peers.grpc_calls.append(request)
        http = request.attributes.request.http
        if http.path.startswith("/custom/slow"):
            await self.peers.release.wait()
        if http.headers.get("x-ext-authz") == "allow":
            ok = external_auth_pb2.OkHttpResponse(headers=[option(RESULT, "allowed")])
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)
        denied = external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=403), body=DENY_BODY, headers=[option(RESULT, "denied")]
        )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED), denied_response=denied
        )


def option(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value), append_action=SET)


def http_handler(peers: Providers):
    async def handle(request: web.Request) -> web.Response:
        peers.http_calls.append((request.method, request.path_qs, dict(request.headers)))
        if request.path.startswith("/check/custom/slow"):
            await peers.release.wait()
        if request.headers.get("x-ext-authz") != "allow":
            return web.Response(status=403, text=DENY_BODY, headers={RESULT: "denied", "x-other": "hidden"})
        headers = {RESULT: "allowed", "x-not-copied": "1", "set-cookie": "session=for-this-client-only"}
        if request.headers.get("x-inject-token"):
            headers["authorization"] = f"Bearer {KEY.token(sub='injected')}"
        return web.Response(status=200, headers=headers)

    return handle


@asynccontextmanager
async def providers() -> AsyncIterator[Providers]:
    peers = Providers()
    server = grpc.aio.server()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Authorization(peers), server)
    peers.grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", http_handler(peers))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    peers.http_port = runner.addresses[0][1]
    try:
        yield peers
    finally:
        peers.release.set()
        await server.stop(None)
        await runner.cleanup()


@asynccontextmanager
async def check_server(
    b: AuthzBundle, hooks: CheckTally | None = None
) -> AsyncIterator[tuple[Any, CheckService]]:
    service = CheckService(b, hooks=hooks)
    server, port = await start_server(service, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield external_auth_pb2_grpc.AuthorizationStub(channel), service
    finally:
        await server.stop(None)
        await service.close()


def mesh(
    peers: Providers, grpc_options: Mapping[str, Any] = {}, http_options: Mapping[str, Any] = {}
) -> MeshConfig:
    http = {
        "service": "127.0.0.1",
        "port": peers.http_port,
        "pathPrefix": "/check",
        "includeRequestHeadersInCheck": ["X-Ext-Authz", "x-inject-*"],
        "includeAdditionalHeadersInCheck": {"x-added": "yes"},
        "headersToUpstreamOnAllow": [RESULT, "authorization"],
        "headersToDownstreamOnDeny": [RESULT],
        "headersToDownstreamOnAllow": ["x-ext-authz-*"],
    }
    return parse_mesh_config(
        {
            "extensionProviders": [
                {
                    "name": "grpc-ext",
                    "envoyExtAuthzGrpc": {"service": "127.0.0.1", "port": peers.grpc_port, **grpc_options},
                },
                {"name": "http-ext", "envoyExtAuthzHttp": {**http, **http_options}},
            ]
        }
    )


def custom(provider: str) -> str:
    spec = {
        "action": "CUSTOM",
        "provider": {"name": provider},
        "rules": [{"to": [{"operation": {"paths": ["/custom/*"]}}]}],
    }
    return doc("AuthorizationPolicy", "ext", spec)


def with_mesh(b: AuthzBundle, m: MeshConfig) -> AuthzBundle:
    return AuthzBundle.build(b.resources, m)


def check(
    path: str = "/custom/a", headers: Mapping[str, str] = {}, method: str = "GET"
) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = method, path, "httpbin.foo:8000"
    http.headers.update({":method": method, ":path": path, ":authority": http.host, **headers})
    request.attributes.context_extensions.update(WORKLOAD)
    return request


def set_headers(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    return {h.header.key: h.header.value for h in response.ok_response.headers}


def denied_headers(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    return {h.header.key.lower(): h.header.value for h in response.denied_response.headers}


def run(scenario) -> None:
    asyncio.run(scenario())


def test_grpc_provider_is_asked_only_when_a_custom_rule_matches():
    async def scenario() -> None:
        async with providers() as peers:
            tally = CheckTally()
            async with check_server(with_mesh(bundle(custom("grpc-ext")), mesh(peers)), tally) as (stub, _):
                allowed = await stub.Check(check(headers={"x-ext-authz": "allow"}))
                assert allowed.status.code == code_pb2.OK
                assert set_headers(allowed) == {RESULT: "allowed"}
                denied = await stub.Check(check(headers={"x-ext-authz": "deny"}))
                assert denied.status.code == code_pb2.PERMISSION_DENIED
                assert (denied.denied_response.status.code, denied.denied_response.body) == (403, DENY_BODY)
                assert denied_headers(denied) == {RESULT: "denied"}
                assert len(peers.grpc_calls) == 2
                assert (await stub.Check(check(path="/other"))).status.code == code_pb2.OK
                assert len(peers.grpc_calls) == 2  # no CUSTOM rule matched: the provider is not asked
        forwarded = peers.grpc_calls[0].attributes
        assert forwarded.request.http.headers["x-ext-authz"] == "allow"
        assert forwarded.request.http.path == "/custom/a"
        assert "namespace" not in forwarded.context_extensions  # pilotfish's own keys stay here
        assert tally.custom_providers == {("grpc-ext", "allow"): 1, ("grpc-ext", "deny"): 1}
        assert ["grpc-ext", "deny", 1] in tally.snapshot()["custom_providers"]
        assert tally.checks[("deny", "custom", "foo/ext")] == 1

    run(scenario)


LOCALHOST = {"service": "localhost"}  # a host name, resolved by the system resolver


def test_http_provider_gets_envoys_request_and_its_answer_is_mapped():
    async def scenario() -> None:
        async with (
            providers() as peers,
            check_server(with_mesh(bundle(custom("http-ext")), mesh(peers, {}, LOCALHOST))) as (stub, _),
        ):
            headers = {"x-ext-authz": "allow", "x-secret": "s", "authorization": "Basic eA=="}
            allowed = await stub.Check(check("/custom/a?q=1", headers, method="POST"))
            assert allowed.status.code == code_pb2.OK
            assert set_headers(allowed) == {RESULT: "allowed"}  # headersToUpstreamOnAllow only
            downstream = {h.header.key: h.header.value for h in allowed.ok_response.response_headers_to_add}
            assert downstream == {RESULT: "allowed"}  # headersToDownstreamOnAllow: x-ext-authz-*
            denied = await stub.Check(check(headers={"x-ext-authz": "no"}))
            assert (denied.denied_response.status.code, denied.denied_response.body) == (403, DENY_BODY)
            assert denied_headers(denied) == {RESULT: "denied"}  # not x-other, server, date...
            assert (await stub.Check(check(path="/other"))).status.code == code_pb2.OK
        assert len(peers.http_calls) == 2
        method, path, sent = peers.http_calls[0]
        assert (method, path) == ("POST", "/check/custom/a?q=1")
        sent = {k.lower(): v for k, v in sent.items()}
        assert sent["x-ext-authz"] == "allow" and sent["authorization"] == "Basic eA=="
        assert (
            sent["x-added"] == "yes" and sent["host"] == "httpbin.foo:8000" and sent["content-length"] == "0"
        )
        assert "x-secret" not in sent and "user-agent" not in sent
        assert "cookie" not in {k.lower() for k in peers.http_calls[1][2]}  # no cookie jar across clients

    run(scenario)


@pytest.mark.parametrize("provider", ["grpc-ext", "http-ext"])
@pytest.mark.parametrize(
    ("options", "code", "result"),
    [
        ({}, 403, "failed_closed"),
        ({"statusOnError": "503"}, 503, "failed_closed"),
        ({"failOpen": True}, 0, "failed_open"),
    ],
)
def test_an_unreachable_provider_denies_with_status_on_error_unless_fail_open(
    provider, options, code, result
):
    async def scenario() -> None:
        async with providers() as peers:
            peers.grpc_port = peers.http_port = free_port()  # nothing listens there
            tally = CheckTally()
            m = mesh(peers, options, options)
            async with check_server(with_mesh(bundle(custom(provider)), m), tally) as (stub, _):
                response = await stub.Check(check(headers={"x-ext-authz": "allow"}))
        if code:
            assert response.status.code != code_pb2.OK
            assert response.denied_response.status.code == code
        else:
            assert response.status.code == code_pb2.OK
            assert set_headers(response) == {}
        assert tally.custom_providers == {(provider, result): 1}

    run(scenario)


@pytest.mark.parametrize("provider", ["grpc-ext", "http-ext"])
def test_a_provider_slower_than_its_timeout_is_a_failure(provider):
    async def scenario() -> None:
        async with providers() as peers:
            m = mesh(peers, {"timeout": "0.2s"}, {"timeout": "0.2s"})
            async with check_server(with_mesh(bundle(custom(provider)), m)) as (stub, _):
                started = time.monotonic()
                response = await stub.Check(check("/custom/slow", {"x-ext-authz": "allow"}))
                assert time.monotonic() - started < 2
        assert response.denied_response.status.code == 403

    run(scenario)


JWT_AND_CUSTOM = bundle(
    custom("grpc-ext"),
    require_jwt(),
    request_authn({"jwks": KEY.jwks(), "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}),
)


def test_a_custom_deny_wins_over_a_valid_jwt_and_an_allow_lets_the_rest_decide():
    token = KEY.token()

    async def scenario() -> None:
        async with providers() as peers, check_server(with_mesh(JWT_AND_CUSTOM, mesh(peers))) as (stub, _):
            bearer = {"authorization": f"Bearer {token}"}
            denied = await stub.Check(check(headers=bearer))
            assert (denied.denied_response.status.code, denied.denied_response.body) == (403, DENY_BODY)
            both = await stub.Check(check(headers={**bearer, "x-ext-authz": "allow"}))
            assert both.status.code == code_pb2.OK
            assert set_headers(both) == {RESULT: "allowed", "x-sub": "alice"}
            assert list(both.ok_response.headers_to_remove) == ["authorization"]
            no_token = await stub.Check(check(headers={"x-ext-authz": "allow"}))
            assert no_token.denied_response.body == "RBAC: access denied"
            bad = await stub.Check(check(headers={"x-ext-authz": "allow", "authorization": "Bearer x.y.z"}))
            assert bad.denied_response.status.code == 401
            assert len(peers.grpc_calls) == 4  # asked every time, the JWT checked after it

    run(scenario)


def test_headers_the_http_provider_adds_are_what_the_jwt_step_sees():
    b = bundle(
        custom("http-ext"),
        require_jwt(),
        request_authn({"jwks": KEY.jwks(), "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}),
    )

    async def scenario() -> None:
        async with providers() as peers, check_server(with_mesh(b, mesh(peers))) as (stub, _):
            injected = await stub.Check(check(headers={"x-ext-authz": "allow", "x-inject-token": "1"}))
            assert injected.status.code == code_pb2.OK
            # the provider's authorization header was verified, then removed like any token
            assert set_headers(injected) == {RESULT: "allowed", "x-sub": "injected"}
            assert list(injected.ok_response.headers_to_remove) == ["authorization"]
            plain = await stub.Check(check(headers={"x-ext-authz": "allow"}))
            assert plain.denied_response.body == "RBAC: access denied"
            # a later step's deny still carries the provider's headersToDownstreamOnAllow
            assert denied_headers(plain) == {RESULT: "allowed"}

    run(scenario)
