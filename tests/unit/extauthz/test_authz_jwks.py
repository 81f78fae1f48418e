"""JwksCache (TTL, retry backoff, single flight, background refresh driven by the caller's clock),
TokenCache (bounded, honours exp) and JWKS parsing."""

from __future__ import annotations

import asyncio
import json

import pytest
from authz_support import SigningKey, jwks_text

from pilotfish.extauthz.jwks import JwksCache, TokenCache, parse_jwks

KEY = SigningKey("ec", "k1")
T0 = 1000.0


class Issuer:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, uri: str) -> str:
        self.calls.append(uri)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        return jwks_text(KEY)


def test_keys_are_fetched_once_then_served_until_ttl():
    issuer = Issuer()
    cache = JwksCache(issuer, ttl=100)

    async def scenario() -> None:
        assert (await cache.keys("u", T0)) is not None
        await cache.keys("u", T0 + 99)
        assert len(issuer.calls) == 1
        await cache.keys("u", T0 + 100)
        assert len(issuer.calls) == 2

    asyncio.run(scenario())


def test_failure_backs_off_and_keeps_last_good():
    issuer = Issuer()
    cache = JwksCache(issuer, ttl=100, retry_after=60)

    async def scenario() -> None:
        await cache.keys("u", T0)
        issuer.fail = True
        assert (await cache.keys("u", T0 + 200)) is not None  # failed, last good kept
        assert (await cache.keys("u", T0 + 259)) is not None
        assert len(issuer.calls) == 2  # no retry inside retry_after
        await cache.keys("u", T0 + 260)
        assert len(issuer.calls) == 3
        issuer.fail = False
        await cache.keys("u", T0 + 400)
        assert not cache.is_due("u", T0 + 401)

    asyncio.run(scenario())


def test_never_fetched_and_down_is_none():
    issuer = Issuer()
    issuer.fail = True
    cache = JwksCache(issuer)
    assert asyncio.run(cache.keys("u", T0)) is None
    assert cache.current("u") is None


def test_concurrent_callers_share_one_fetch():
    issuer = Issuer()
    cache = JwksCache(issuer)

    async def scenario() -> None:
        issuer.gate = asyncio.Event()
        waiters = [asyncio.ensure_future(cache.keys("u", T0)) for _ in range(10)]
        await asyncio.sleep(0)
        issuer.gate.set()
        results = await asyncio.gather(*waiters)
        assert all(r is not None for r in results)

    asyncio.run(scenario())
    assert len(issuer.calls) == 1


def test_background_refresh_fetches_only_due_uris():
    issuer = Issuer()
    cache = JwksCache(issuer, ttl=100)

    async def scenario() -> None:
        await cache.keys("a", T0)
        await cache.keys("b", T0 + 50)
        assert cache.due(T0 + 120) == ("a",)
        await cache.refresh(T0 + 120)
        assert issuer.calls == ["a", "b", "a"]
        assert cache.due(T0 + 121) == ()

    asyncio.run(scenario())


def test_kid_refetch_is_rate_limited_per_uri():
    issuer = Issuer()
    cache = JwksCache(issuer, kid_refetch_interval=30)

    async def scenario() -> None:
        assert await cache.refetch_for_unknown_kid("a", T0)
        assert not await cache.refetch_for_unknown_kid("a", T0 + 29)
        assert await cache.refetch_for_unknown_kid("b", T0 + 29)
        assert await cache.refetch_for_unknown_kid("a", T0 + 30)

    asyncio.run(scenario())
    assert issuer.calls == ["a", "b", "a"]


def test_token_cache_honours_expiry_and_bound():
    cache: TokenCache[str] = TokenCache(max_entries=2, max_token_size=10)
    cache.put("p", "t1", "v1", expires_at=T0)
    assert cache.get("p", "t1", T0) == "v1"
    assert cache.get("p", "t1", T0 + 1) is None and len(cache) == 0
    cache.put("p", "a", "A", None)
    cache.put("p", "b", "B", None)
    cache.get("p", "a", T0)  # a is now most recent
    cache.put("p", "c", "C", None)
    assert cache.get("p", "b", T0) is None and cache.get("p", "a", T0) == "A"
    cache.put("p", "x" * 11, "big", None)
    assert cache.get("p", "x" * 11, T0) is None
    assert cache.get("other-provider", "a", T0) is None


def test_token_cache_prune():
    cache: TokenCache[str] = TokenCache()
    cache.put("p", "old", "v", expires_at=T0)
    cache.put("p", "new", "v", expires_at=T0 + 100)
    cache.prune(T0 + 1)
    assert len(cache) == 1


def test_parse_jwks_skips_unusable_keys():
    text = json.dumps({"keys": [{"kty": "RSA", "n": "!!"}, {"kty": "weird"}, "x", KEY.jwk]})
    assert parse_jwks(text).kids() == {"k1"}
    assert parse_jwks(json.dumps(KEY.jwk)).kids() == {"k1"}  # one bare JWK


@pytest.mark.parametrize(
    "text", ["not json", '{"keys": {}}', '{"keys": []}', '{"keys": [{"kty": "RSA"}]}', "[]"]
)
def test_parse_jwks_rejects_non_jwks(text):
    with pytest.raises(ValueError):
        parse_jwks(text)
