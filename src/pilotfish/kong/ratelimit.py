"""Kong's ``rate-limiting`` plugin: fixed windows, counters local or in Redis.

Semantics (Kong ``plugins/rate-limiting/handler.lua`` and ``policies/init.lua``):

* Windows second, minute, hour, day, month, year start at calendar boundaries in UTC; a request
  counts once in every configured window. The counter key names the plugin, the identifier and
  the window start, so windows roll over by key and old keys expire.
* ``limit_by``: the consumer (else the client IP, as Kong falls back), credential (else IP), ip,
  service, header (``header_name``'s value, else IP), path (``path`` when the request path is
  that path, else IP).
* Counting: each window's counter is incremented atomically (Redis INCR, batched across
  concurrent Checks: ``RedisCounters``) and the request is allowed when no
  counter passed its limit (INCR-then-compare, so concurrent replicas sharing Redis never let more
  than ``limit`` through in one window; a request over the limit is counted too).
* Headers (unless ``hide_client_headers``): ``X-RateLimit-Limit-<Window>``,
  ``X-RateLimit-Remaining-<Window>``, and ``RateLimit-Limit``/``-Remaining``/``-Reset`` of the
  window with the least remaining (IETF draft-ietf-httpapi-ratelimit-headers, as Kong); on a
  deny ``Retry-After`` (seconds to that window's reset) and ``error_code`` (429) with
  ``{"message": error_message}``.
* ``fault_tolerant``: when the counter store cannot be reached the request passes without
  headers (true) or is answered 500 (false). Redis errors never leave a stale connection: the
  client reconnects on the next request.

Policy ``cluster`` keeps the counters in the store's database (``cluster_counters``): the
Check server is told the store URL with the bundle (``KongConfig.store_url``).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pilotfish.config.kong.plugin import RateLimitingConfig
from pilotfish.kong.engine import KongOutcome, KongRequest
from pilotfish.kong.model import PluginInstance

log = logging.getLogger(__name__)

SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def window_start(window: str, now: float) -> int:
    t = int(now)
    if window in SECONDS:
        return t - t % SECONDS[window]
    tm = time.gmtime(t)
    if window == "month":
        return calendar.timegm((tm.tm_year, tm.tm_mon, 1, 0, 0, 0))
    return calendar.timegm((tm.tm_year, 1, 1, 0, 0, 0))


def window_end(window: str, start: int) -> int:
    if window in SECONDS:
        return start + SECONDS[window]
    tm = time.gmtime(start)
    if window == "month":
        year, month = (tm.tm_year + 1, 1) if tm.tm_mon == 12 else (tm.tm_year, tm.tm_mon + 1)
        return calendar.timegm((year, month, 1, 0, 0, 0))
    return calendar.timegm((tm.tm_year + 1, 1, 1, 0, 0, 0))


def identifier(config: RateLimitingConfig, req: KongRequest, outcome: KongOutcome, credential: str) -> str:
    by = config.limit_by
    if by == "consumer" and outcome.consumer is not None:
        return outcome.consumer.id
    if by == "credential" and credential:
        return credential
    if by == "service" and req.service:
        return req.service
    if by == "header":
        value = req.request.header(config.header_name.lower())
        if value:
            return value
    if by == "path" and req.request.url_path == config.path:
        return config.path
    return req.client_ip


class CounterStoreDown(Exception):
    """The counters cannot be reached (Redis down, timeout)."""


class Counters(Protocol):
    async def incr(self, keys: Sequence[tuple[str, int]]) -> list[int]:
        """Increment each key (with its expiry in seconds) and return the new values."""
        ...


class LocalCounters:
    """``policy: local``: counters in this process (a replica counts its own traffic)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self.max_keys = max_keys

    async def incr(self, keys: Sequence[tuple[str, int]]) -> list[int]:
        now = time.monotonic()
        if len(self._counts) > self.max_keys:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        out = []
        for key, ttl in keys:
            count, until = self._counts.get(key, (0, 0.0))
            count = count + 1 if until > now else 1
            self._counts[key] = (count, until if until > now else now + ttl)
            out.append(count)
        return out


# Every key of a batch in one command: INCR, and EXPIRE when the key is new (a window's first
# request sets its lifetime). A script runs atomically in Redis, so counts are exact.
INCR_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[i]) end
  out[i] = n
end
return out
"""


class RedisCounters:
    """``policy: redis``: INCR (+ EXPIRE for a new key) of every window key, in one Lua script.

    Increments of concurrent Checks are batched: while one call is in flight, the requests that
    arrive queue up and go out together in the next (one round trip, one command to pack and
    one reply to parse for the whole batch). A lone request still goes out at once, so batching
    adds no delay; under load it divides the per-request cost of the Redis client. The script
    runs atomically in Redis, so batching changes no count."""

    def __init__(self, host: str, port: int, database: int, timeout_ms: int, password: str = "") -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._client: Any = aioredis.Redis(
            # No retries: a Check has a 1 s budget; fault_tolerant decides what an outage means.
            retry=Retry(NoBackoff(), 0),
            host=host,
            port=port,
            db=database,
            password=password or None,
            socket_timeout=timeout_ms / 1000,
            socket_connect_timeout=timeout_ms / 1000,
        )
        self._script = self._client.register_script(INCR_SCRIPT)  # EVALSHA, EVAL on NOSCRIPT
        self._pending: list[tuple[Sequence[tuple[str, int]], asyncio.Future[list[int]]]] = []
        self._flushing = False

    async def incr(self, keys: Sequence[tuple[str, int]]) -> list[int]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, future))
        if not self._flushing:
            self._flushing = True
            asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        import redis.exceptions

        try:
            while self._pending:
                batch, self._pending = self._pending, []
                names = [key for keys, _ in batch for key, _ in keys]
                ttls = [ttl for keys, _ in batch for _, ttl in keys]
                try:
                    results = await self._script(keys=names, args=ttls)
                except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(CounterStoreDown(str(exc)))
                    continue
                at = 0
                for keys, future in batch:
                    counts = [int(v) for v in results[at : at + len(keys)]]
                    at += len(keys)
                    if not future.done():
                        future.set_result(counts)
        finally:
            self._flushing = False

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class Usage:
    window: str
    limit: int
    count: int
    reset: int  # seconds until the window ends

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


class RateLimiter:
    """The ``Limiter`` of ``engine.Engine``: picks the counters for a plugin's policy."""

    def __init__(self) -> None:
        self.local = LocalCounters()
        self._redis: dict[tuple[str, int, int, int, str], RedisCounters] = {}
        self._cluster: Any = None

    def counters(self, config: RateLimitingConfig, store_url: str = "") -> Counters:
        if config.policy == "cluster":
            if not store_url:
                raise CounterStoreDown("policy cluster needs serve --store")
            if self._cluster is None or self._cluster.url != store_url:
                from pilotfish.kong.cluster_counters import ClusterCounters

                self._cluster = ClusterCounters(store_url)
            return self._cluster  # type: ignore[no-any-return]
        if config.policy == "redis":
            where = (
                config.redis_host,
                config.redis_port,
                config.redis_database,
                config.redis_timeout,
                config.redis_password,
            )
            found = self._redis.get(where)
            if found is None:
                found = self._redis[where] = RedisCounters(*where[:2], where[2], where[3], where[4])
            return found
        return self.local

    async def close(self) -> None:
        for client in self._redis.values():
            await client.close()
        self._redis.clear()
        if self._cluster is not None:
            await self._cluster.close()

    async def apply(
        self,
        plugin: PluginInstance,
        config: RateLimitingConfig,
        req: KongRequest,
        outcome: KongOutcome,
        store_url: str = "",
    ) -> None:
        outcome.stateful = True
        credential = dict(outcome.headers_to_set).get("x-credential-identifier", "")
        ident = identifier(config, req, outcome, credential)
        windows = config.limits()
        starts = [window_start(w, req.now) for w, _ in windows]
        ends = [window_end(w, s) for (w, _), s in zip(windows, starts, strict=True)]
        keys = [
            (f"ratelimit:{plugin.id}:{ident}:{w}:{s}", e - s + 1)
            for (w, _), s, e in zip(windows, starts, ends, strict=True)
        ]
        try:
            counts = await self.counters(config, store_url).incr(keys)
        except CounterStoreDown as exc:
            if config.fault_tolerant:
                log.warning(
                    "rate-limiting %s: counters unreachable, letting traffic through: %s", plugin.ref, exc
                )
                return
            log.error("rate-limiting %s: counters unreachable, failing closed: %s", plugin.ref, exc)
            outcome.deny(500, "An unexpected error occurred", "rate-limiting")
            return
        usage = [
            Usage(w, limit, count, max(0, int(e - req.now)) or 1)
            for (w, limit), count, e in zip(windows, counts, ends, strict=True)
        ]
        exceeded = [u for u in usage if u.count > u.limit]
        headers: list[tuple[str, str]] = []
        if not config.hide_client_headers:
            tightest = min(usage, key=lambda u: (u.remaining, -u.reset))
            headers = [
                ("ratelimit-limit", str(tightest.limit)),
                ("ratelimit-remaining", str(tightest.remaining)),
                ("ratelimit-reset", str(tightest.reset)),
            ]
            for u in usage:
                headers.append((f"x-ratelimit-limit-{u.window}", str(u.limit)))
                headers.append((f"x-ratelimit-remaining-{u.window}", str(u.remaining)))
        outcome.response_headers.extend(headers)
        if exceeded:
            retry = max(u.reset for u in exceeded)
            outcome.deny(
                config.error_code, config.error_message, "rate-limiting", ("retry-after", str(retry))
            )
