"""JSON Web Key Sets: parsing (pure), ``JwksCache`` (keys per URI) and ``TokenCache``.

Theory of operation. ``JwksCache`` holds the last good key set of every JWKS URI. The fetch is
injected (``Fetch``: an async callable from URI to response text; ``jwks_fetch.fetch_jwks`` is the
real one), and so is time: every method takes ``now`` from the caller, so a test can drive hours
of rotation without sleeping. Rules:

* A set is fresh for ``ttl`` seconds (Istio's istiod refreshes every 20 min,
  ``PILOT_JWT_PUB_KEY_REFRESH_INTERVAL``); after that the next ``keys`` call, or the caller's
  periodic ``refresh``, fetches again.
* A failed fetch keeps the last good set (served while the issuer is down) and is not retried
  before ``retry_after`` seconds (istiod retries every 1 min). A response that is not a JWKS with
  at least one usable key counts as a failure (Istio's SSRF fix rejects non-JWKS responses).
* A token whose ``kid`` is not in the set may trigger one refetch, at most once per
  ``kid_refetch_interval`` per URI (PyJWT ``PyJWKClient`` uses a 30 s cooldown; refetching on
  every unknown kid is a DoS vector, zmartzone/lua-resty-openidc#468). Envoy never refetches
  (envoyproxy/envoy#39643); we do, rate-limited.
* No keys is never an allow: ``keys`` returns ``None`` and every token for that issuer fails
  verification (401), as Istio's fail-closed ``PublicOnlyJwks`` (``jwks_resolver.go``).

``TokenCache`` is Envoy's ``jwt_cache_config``: a bounded LRU of verified tokens keyed by the raw
token (and the provider that verified it), each entry dropped once the token's ``exp`` (plus clock
skew) has passed. Like Envoy, a cached token stays valid until it expires even if its key has
been rotated out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from pilotfish.limits import loads_json

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[str]]
V = TypeVar("V")

# kty → how PyJWT builds a verification key from the JWK (RFC 7518 §6, RFC 8037).
_KEY_READERS: Mapping[str, Callable[[str], Any]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "oct": HMACAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}


@dataclass(frozen=True, slots=True)
class Jwk:
    """One usable verification key. ``key`` is the prepared PyJWT/cryptography key object."""

    kty: str
    kid: str = ""
    alg: str = ""
    crv: str = ""
    use: str = ""
    key: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[Jwk, ...]

    def kids(self) -> frozenset[str]:
        return frozenset(k.kid for k in self.keys if k.kid)


def parse_jwks(text: str) -> KeySet:
    """A JWKS document (``{"keys": [...]}``, or one bare JWK, as Istio's ``jwk.Parse`` accepts).
    Keys that cannot be used are skipped (jwt_verify_lib ``jwks.cc`` skips unsupported keys);
    raises ``ValueError`` when the text is not a JWKS or holds no usable key."""
    try:
        data = loads_json(text, "the JWKS")
    except ValueError as exc:
        raise ValueError(f"JWKS is not JSON: {exc}") from None
    raw = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(raw, list):
        raise ValueError('JWKS "keys" must be a list')
    keys = tuple(k for k in (_read_key(item) for item in raw) if k is not None)
    if not keys:
        raise ValueError("JWKS has no usable key")
    return KeySet(keys)


def _read_key(item: object) -> Jwk | None:
    if not isinstance(item, dict) or not isinstance(item.get("kty"), str):
        return None
    reader = _KEY_READERS.get(item["kty"])
    if reader is None:
        return None
    if item["kty"] == "EC" and "crv" not in item:
        item = _ec_curve_from_alg(item)
        if item is None:
            return None
    try:
        key = reader(json.dumps(item))
    except Exception:  # PyJWT raises several types for a malformed key  # noqa: BLE001
        log.info("skipping a JWK that cannot be read (kid=%r)", item.get("kid"))
        return None
    text = {name: item.get(name) for name in ("kid", "alg", "crv", "use")}
    return Jwk(item["kty"], **{k: v if isinstance(v, str) else "" for k, v in text.items()}, key=key)


# jwt_verify_lib ``jwks.cc`` ``extractJwkFromJwkEC``: an EC key without ``crv`` takes the curve of
# its ``alg``, or P-256 when it names no alg; another alg makes the key unusable.
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def _ec_curve_from_alg(item: dict[str, Any]) -> dict[str, Any] | None:
    alg = item.get("alg")
    if alg is None:
        return {**item, "crv": "P-256"}
    curve = _EC_CURVES.get(alg) if isinstance(alg, str) else None
    return {**item, "crv": curve} if curve else None


# ---- the JWKS cache -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    keys: KeySet | None = None  # the last good set
    fetched_at: float | None = None  # last success
    failed_at: float | None = None  # last failure since the last success
    kid_refetch_at: float | None = None  # last refetch forced by an unknown kid


class JwksCache:
    """Keys per JWKS URI. Not thread-safe; one per event loop."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float = 1200.0,
        retry_after: float = 60.0,
        kid_refetch_interval: float = 30.0,
    ) -> None:
        self._fetch = fetch
        self.ttl, self.retry_after, self.kid_refetch_interval = ttl, retry_after, kid_refetch_interval
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self.generation = 0  # bumped whenever some URI's keys are replaced (decision caches key on it)

    def current(self, uri: str) -> KeySet | None:
        """The last good keys for ``uri`` without fetching."""
        entry = self._entries.get(uri)
        return entry.keys if entry else None

    def is_due(self, uri: str, now: float) -> bool:
        """Whether ``uri`` should be fetched now: never fetched, or stale, and not in retry backoff."""
        entry = self._entries.get(uri)
        if entry is None:
            return True
        if entry.failed_at is not None and now - entry.failed_at < self.retry_after:
            return False
        return entry.fetched_at is None or now - entry.fetched_at >= self.ttl

    async def keys(self, uri: str, now: float) -> KeySet | None:
        """The keys for ``uri``, fetching first when due; the last good keys when the fetch fails."""
        if self.is_due(uri, now):
            await self._fetch_once(uri, now)
        return self.current(uri)

    async def refetch_for_unknown_kid(self, uri: str, now: float) -> bool:
        """Refetch because a token named a ``kid`` the set lacks; at most once per
        ``kid_refetch_interval`` per URI. True when a fetch was made."""
        entry = self._entries.setdefault(uri, _Entry())
        last = entry.kid_refetch_at
        if last is not None and now - last < self.kid_refetch_interval:
            return False
        entry.kid_refetch_at = now
        await self._fetch_once(uri, now)
        return True

    def due(self, now: float) -> tuple[str, ...]:
        return tuple(uri for uri in self._entries if self.is_due(uri, now))

    async def refresh(self, now: float) -> None:
        """Background refresh: fetch every known URI that is due. The caller runs this periodically."""
        await asyncio.gather(*(self._fetch_once(uri, now) for uri in self.due(now)))

    async def _fetch_once(self, uri: str, now: float) -> None:
        """Single flight: concurrent callers for one URI share one fetch."""
        task = self._inflight.get(uri)
        if task is None:
            task = asyncio.ensure_future(self._do_fetch(uri, now))
            self._inflight[uri] = task
            task.add_done_callback(lambda _t: self._inflight.pop(uri, None))
        await asyncio.shield(task)

    async def _do_fetch(self, uri: str, now: float) -> None:
        entry = self._entries.setdefault(uri, _Entry())
        try:
            keys = parse_jwks(await self._fetch(uri))
        except Exception as exc:  # the injected I/O edge: any failure keeps the last good keys
            entry.failed_at = now
            log.warning("JWKS fetch from %s failed (%s); serving %s", uri, exc, _serving(entry))
            return
        entry.keys, entry.fetched_at, entry.failed_at = keys, now, None
        self.generation += 1


def _serving(entry: _Entry) -> str:
    return "the last good keys" if entry.keys else "no keys: tokens for this issuer are rejected"


# ---- verified tokens ------------------------------------------------------------------------------


class TokenCache(Generic[V]):
    """A bounded LRU of verified tokens (Envoy ``jwt_cache_config``: 100 entries, tokens up to
    4096 bytes). ``expires_at`` is when the token stops being valid (``exp`` + skew), or ``None``."""

    def __init__(self, max_entries: int = 100, max_token_size: int = 4096) -> None:
        self.max_entries, self.max_token_size = max_entries, max_token_size
        self._items: OrderedDict[tuple[Hashable, str], tuple[V, float | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, scope: Hashable, token: str, now: float) -> V | None:
        item = self._items.get((scope, token))
        if item is None:
            return None
        value, expires_at = item
        if expires_at is not None and now > expires_at:
            del self._items[(scope, token)]
            return None
        self._items.move_to_end((scope, token))
        return value

    def put(self, scope: Hashable, token: str, value: V, expires_at: float | None) -> None:
        if len(token) > self.max_token_size or self.max_entries <= 0:
            return
        self._items[(scope, token)] = (value, expires_at)
        self._items.move_to_end((scope, token))
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def prune(self, now: float) -> None:
        for key, (_value, expires_at) in list(self._items.items()):
            if expires_at is not None and now > expires_at:
                del self._items[key]
