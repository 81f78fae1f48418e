"""Issue "Self-contained and self-healing": the Check server's background JWKS refresh
(``server.refresh_loop``, as each worker runs it) survives its peer going away. While the JWKS
server is gone (connection refused) the last good keys keep deciding Checks and a missing token
is still denied; when the server returns on the same port with rotated keys, the refresh picks
them up by itself — no Check with the new key needed to trigger it. Real HTTP, real fetcher;
the service's clock is driven by the test so the cache's TTL and retry backoff pass at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from authz_server_support import bundle, check_request, doc, require_jwt
from google.rpc import code_pb2
from harness.jwks import ISSUER, Jwks

from pilotfish.extauthz.jwks_fetch import jwks_fetcher
from pilotfish.extauthz.server import CheckService, refresh_loop

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def until(predicate, within: float, message: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.01)


def test_refresh_keeps_the_last_good_keys_through_an_outage_and_resumes_when_the_server_returns() -> None:
    jwks = Jwks()
    jwks.add_key("k1")
    jwks.start()
    uri = f"http://127.0.0.1:{jwks.port}/jwks.json"
    authn = doc("RequestAuthentication", "jwt", {"jwtRules": [{"issuer": ISSUER, "jwksUri": uri}]})
    clock = Clock()
    service = CheckService(bundle(require_jwt(), authn), fetch=jwks_fetcher(timeout=2), clock=clock)

    def kids() -> frozenset[str]:
        keys = service.jwks.current(uri)
        return keys.kids() if keys else frozenset()

    async def decide(token: str | None) -> int:
        response = await service.check(check_request(token=token))
        return int(response.status.code)

    async def scenario() -> None:
        refresher = asyncio.create_task(refresh_loop(service, interval=0.02))
        try:
            await until(lambda: kids() == {"k1"}, 10, "first fetch")
            jwks.stop()  # the issuer goes away: connections are refused
            clock.now += service.jwks.ttl + 1  # the keys are stale: the refresh tries, and fails
            await until(lambda: service.jwks.due(clock.now) == (), 10, "a failed refresh attempt")
            assert kids() == {"k1"}, "the last good keys are kept"
            assert await decide(jwks.token("k1")) == code_pb2.OK
            assert await decide(None) == code_pb2.PERMISSION_DENIED, (
                "an outage never turns a deny into an allow"
            )

            jwks.keys.clear()
            jwks.add_key("k2")  # rotated while the server was away
            jwks.start()  # same port
            fetches = jwks.fetches
            clock.now += service.jwks.retry_after + 1  # past the retry backoff
            await until(lambda: kids() == {"k2"}, 10, "the refresh resumed and found the rotated keys")
            assert jwks.fetches > fetches and not refresher.done()
            assert await decide(jwks.token("k2")) == code_pb2.OK
        finally:
            refresher.cancel()
            await service.close()

    try:
        asyncio.run(scenario())
    finally:
        jwks.stop()
