"""jwks_fetch against a real local aiohttp JWKS server on port 0, and `authz check` using it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from pilotfish.errors import PeerError
from pilotfish.extauthz.check import run_check
from pilotfish.extauthz.jwks import JwksCache, parse_jwks
from pilotfish.extauthz.jwks_fetch import fetch_jwks, jwks_fetcher

pytestmark = pytest.mark.integration

PRIVATE = ec.generate_private_key(ec.SECP256R1())
JWKS = json.dumps(
    {"keys": [{**ECAlgorithm.to_jwk(PRIVATE.public_key(), as_dict=True), "kid": "k1", "alg": "ES256"}]}
)


class Server:
    """An aiohttp app on 127.0.0.1:0 in its own thread and loop."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.down = False
        self.loop = asyncio.new_event_loop()
        self.base = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def app(self) -> web.Application:
        async def jwks(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            if self.down:
                return web.Response(status=503, text="down")
            return web.Response(text=JWKS, content_type="application/json")

        async def discovery(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            return web.json_response({"issuer": self.base, "jwks_uri": f"{self.base}/jwks"})

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(2)
            return web.Response(text=JWKS)

        async def huge(request: web.Request) -> web.Response:
            return web.Response(text="x" * ((1 << 20) + 10))

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound("/jwks")

        app = web.Application()
        app.router.add_get("/jwks", jwks)
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/slow", slow)
        app.router.add_get("/huge", huge)
        app.router.add_get("/redirect", redirect)
        return app

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app())
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        host, port = self.runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.start()
    yield s
    s.stop()


def test_fetch_jwks(server):
    assert parse_jwks(asyncio.run(fetch_jwks(f"{server.base}/jwks"))).kids() == {"k1"}


def test_openid_discovery(server):
    text = asyncio.run(fetch_jwks(f"{server.base}/.well-known/openid-configuration"))
    assert parse_jwks(text).kids() == {"k1"}
    assert server.hits == ["/.well-known/openid-configuration", "/jwks"]


@pytest.mark.parametrize("path", ["/missing", "/huge", "/redirect"])
def test_bad_responses_raise_peer_error(server, path):
    with pytest.raises(PeerError):
        asyncio.run(fetch_jwks(f"{server.base}{path}"))


def test_timeout_raises_peer_error(server):
    with pytest.raises(PeerError, match="TimeoutError"):
        asyncio.run(jwks_fetcher(timeout=0.2)(f"{server.base}/slow"))


@pytest.mark.parametrize("uri", ["http://169.254.169.254/latest", "ftp://x/jwks", "http://[fe80::1]/jwks"])
def test_refused_targets(uri):
    with pytest.raises(PeerError):
        asyncio.run(fetch_jwks(uri))


def test_cache_with_real_fetcher_keeps_keys_through_an_outage(server):
    async def scenario() -> None:
        cache = JwksCache(fetch_jwks, ttl=10, retry_after=1)
        assert (await cache.keys(f"{server.base}/jwks", 0)) is not None
        server.down = True
        keys = await cache.keys(f"{server.base}/jwks", 100)
        assert keys is not None and keys.kids() == {"k1"}

    asyncio.run(scenario())
    assert server.hits == ["/jwks", "/jwks"]


def _doc(kind: str, spec: dict[str, Any], name: str) -> str:
    meta = {"name": name, "namespace": "foo"}
    return yaml.safe_dump(
        {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}
    )


def test_authz_check_fetches_jwks_for_real(server, tmp_path: Path):
    issuer = "https://issuer.example.com"
    config = tmp_path / "config"
    config.mkdir()
    (config / "p.yaml").write_text(
        _doc(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": issuer, "jwksUri": f"{server.base}/jwks"}]},
            "jwt",
        )
        + "---\n"
        + _doc(
            "AuthorizationPolicy",
            {"rules": [{"from": [{"source": {"requestPrincipals": [f"{issuer}/alice"]}}]}]},
            "p",
        )
    )
    token = pyjwt.encode(
        {"iss": issuer, "sub": "alice", "exp": 2_000_000_000},
        PRIVATE,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    request = tmp_path / "r.json"
    request.write_text(
        json.dumps(
            {
                "workload": {"namespace": "foo", "labels": {}},
                "source": {},
                "request": {"path": "/", "host": "h", "headers": {"authorization": f"Bearer {token}"}},
                "now": 1_900_000_000,
            }
        )
    )
    out = run_check(config, None, request)
    assert (out["decision"], out["policy"], out["rule"]) == ("allow", "foo/p", 0)
    server.down = True
    out = run_check(config, None, request)  # a fresh cache and no keys: 401, never allow
    assert (out["decision"], out["status"]) == ("deny", 401)
